package importer_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/tokenizer"
)

// realModels are the real models a test runs on: SmolLM2-135M in
// `make test`, every model of testdata/models/REAL.md with
// ADAPTQ_REAL_MODELS=all (or a comma-separated list of names).
func realModels() []string {
	switch v := os.Getenv("ADAPTQ_REAL_MODELS"); v {
	case "":
		return []string{"smollm2-135m"}
	case "all":
		return []string{"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
	default:
		return strings.Split(v, ",")
	}
}

// readHeader reads a GGUF file's header.
func readHeader(t testing.TB, path string) *gguf.File {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mixedText is English, code, numbers, non-ASCII scripts, CJK, emoji, runs
// of spaces, tabs and newlines, a CRLF and a user-defined token's text.
func mixedText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../testdata/text/tokenizer-mixed.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRealTokenizerMatchesLlamaCpp: the tokenizer.json rebuilt from a real
// model's GGUF metadata gives exactly llama.cpp's token ids on the mixed
// text, as a whole and line by line, and on the evaluation text.
func TestRealTokenizerMatchesLlamaCpp(t *testing.T) {
	o := llamacpp.Require(t)
	text := mixedText(t)
	eval, err := os.ReadFile("../testdata/text/go-eval.txt")
	if err != nil {
		t.Fatal(err)
	}
	// The mixed text whole and line by line, and the evaluation text.
	texts := append([]string{text}, strings.SplitAfter(text, "\n")...)
	texts = append(texts, string(eval))
	for _, name := range realModels() {
		t.Run(name, func(t *testing.T) {
			path := testenv.RealModel(t, name)
			f := readHeader(t, path)
			tj, _, err := gguf.TokenizerFiles(f.Metadata, 0)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := tokenizer.Parse(tj)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := o.Run(context.Background(), &llamacpp.Request{Model: path, ContextSize: 64, Tokenize: texts})
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, s := range texts {
				ours := tok.Encode(s, false)
				if !slices.Equal(ours, resp.Tokenize[i]) {
					bad++
					if bad <= 5 {
						t.Errorf("text %d %q:\n ours      %v\n llama.cpp %v", i, s, ours, resp.Tokenize[i])
					}
				}
			}
			t.Logf("%s: %d texts, %d ids for the mixed text, %d for go-eval.txt, %d differ", name, len(texts), len(resp.Tokenize[0]), len(resp.Tokenize[len(texts)-1]), bad)
		})
	}
}

// tokenizerKeys are the tokenizer metadata keys a round trip must keep.
func tokenizerKeys(md gguf.Metadata) map[string]any {
	out := map[string]any{}
	for _, kv := range md {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			out[kv.Key] = kv.Value
		}
	}
	return out
}

// compareTokenizerMetadata reports every tokenizer.* key whose value
// differs between two GGUF metadata lists, or that only one has. extra
// lists keys the second may add (with the value llama.cpp assumes when
// the key is absent).
func compareTokenizerMetadata(t *testing.T, orig, back gguf.Metadata, extra map[string]any) {
	t.Helper()
	a, b := tokenizerKeys(orig), tokenizerKeys(back)
	for k, v := range a {
		w, ok := b[k]
		switch {
		case !ok:
			t.Errorf("%s is missing after the round trip", k)
		case !reflect.DeepEqual(v, w):
			t.Errorf("%s differs after the round trip: %s", k, describeDiff(v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; ok {
			continue
		}
		if v, ok := extra[k]; !ok || !reflect.DeepEqual(v, w) {
			t.Errorf("%s = %v appears after the round trip", k, w)
		}
	}
}

func describeDiff(a, b any) string {
	switch x := a.(type) {
	case []string:
		y, _ := b.([]string)
		for i := range min(len(x), len(y)) {
			if x[i] != y[i] {
				return fmt.Sprintf("%d vs %d entries, first difference at %d: %q vs %q", len(x), len(y), i, x[i], y[i])
			}
		}
		return fmt.Sprintf("%d vs %d entries", len(x), len(y))
	case []int32:
		y, _ := b.([]int32)
		for i := range min(len(x), len(y)) {
			if x[i] != y[i] {
				return fmt.Sprintf("%d vs %d entries, first difference at %d: %d vs %d", len(x), len(y), i, x[i], y[i])
			}
		}
		return fmt.Sprintf("%d vs %d entries", len(x), len(y))
	}
	return fmt.Sprintf("%v (%T) vs %v (%T)", a, a, b, b)
}

// TestRealTokenizerMetadataRoundTrip: the tokenizer files rebuilt from a
// real model's GGUF, written back as GGUF metadata by the export's
// gguf.LlamaMetadata with the rebuilt config, give every tokenizer key of
// the original again (tokens, token types, merges, pre, special ids,
// flags, chat template), and every hyperparameter of the architecture.
func TestRealTokenizerMetadataRoundTrip(t *testing.T) {
	for _, name := range realModels() {
		t.Run(name, func(t *testing.T) {
			path := testenv.RealModel(t, name)
			f := readHeader(t, path)
			fh, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			cfg, err := gguf.LlamaConfig(f, fh)
			if err != nil {
				t.Fatal(err)
			}
			tj, tc, err := gguf.TokenizerFiles(f.Metadata, cfg.MaxPositionEmbeddings)
			if err != nil {
				t.Fatal(err)
			}
			md, err := gguf.LlamaMetadata(cfg, gguf.LlamaOptions{Tokenizer: tj, TokenizerConfig: tc})
			if err != nil {
				t.Fatal(err)
			}
			compareTokenizerMetadata(t, f.Metadata, md, map[string]any{"tokenizer.ggml.add_eos_token": false, "tokenizer.ggml.add_space_prefix": false})
			// The hyperparameters written back are the original's.
			arch, _ := f.Metadata.GetString("general.architecture")
			for _, kv := range f.Metadata {
				if !strings.HasPrefix(kv.Key, arch+".") {
					continue
				}
				if v, ok := md.Get(kv.Key); !ok || !reflect.DeepEqual(v, kv.Value) {
					t.Errorf("%s = %v (%T) after the round trip, was %v (%T)", kv.Key, v, v, kv.Value, kv.Value)
				}
			}
		})
	}
}
