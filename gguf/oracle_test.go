package gguf

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/internal/llamacpp"
)

// Reference results of the stories260k fixture (testdata/PROVENANCE.md).
const (
	fixtureGreedy    = " Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted"
	fixtureGreedyLen = 47
	fixturePPL       = 6.2132 // llama-perplexity, ctx 256, F32 GGUF
)

func readFixtureIDs(t testing.TB) (string, []int) {
	t.Helper()
	txt, err := os.ReadFile("../testdata/text/tinystories-valid-sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n)
	}
	return string(txt), ids
}

// TestLlamaCppOracle loads our F32 and F16 exports of the fixture in real
// llama.cpp: greedy text from BOS, llama-perplexity's protocol at ctx 256
// and tokenization must match the fixture's references.
func TestLlamaCppOracle(t *testing.T) {
	o := llamacpp.Require(t)
	ckpt := openFixture(t)
	text, ids := readFixtureIDs(t)
	lines := strings.Split(text, "\n")
	windows, from := llamacpp.PerplexityWindows(ids, 256, 1)
	tests := []struct {
		typ    uint32
		pplTol float64
	}{
		{TypeF32, 0.001},
		{TypeF16, 0.01}, // F16 rounding moves the perplexity a little
	}
	for _, tc := range tests {
		t.Run(TypeName(tc.typ), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "stories260k-"+TypeName(tc.typ)+".gguf")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := WriteFloatModel(context.Background(), ckpt, f, tc.typ, LlamaOptions{Name: "stories260k"}); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			resp, err := o.Run(ctx, &llamacpp.Request{
				Model:       path,
				ContextSize: 256,
				Generate:    &llamacpp.Generate{Tokens: fixtureGreedyLen},
				Score:       &llamacpp.Score{Windows: windows, From: from},
				Tokenize:    append([]string{text}, lines[0], "Once upon a time, there was a little girl named Lily."),
			})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Model.BOS == nil || *resp.Model.BOS != 1 || !resp.Model.AddBOS {
				t.Errorf("llama.cpp sees BOS %v, add BOS %v; want 1, true", resp.Model.BOS, resp.Model.AddBOS)
			}

			g := resp.Generate
			if len(g.Tokens) != fixtureGreedyLen || strings.Join(g.Pieces, "") != fixtureGreedy || g.Text != fixtureGreedy {
				t.Errorf("greedy decoding from BOS:\n got %q (%d tokens)\nwant %q", g.Text, len(g.Tokens), fixtureGreedy)
			}

			ppl, err := llamacpp.Perplexity(resp.Score)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("llama.cpp perplexity, ctx 256, %d chunks: %.4f", len(windows), ppl)
			if math.Abs(ppl-fixturePPL) > tc.pplTol {
				t.Errorf("perplexity %.5f, want %.4f ± %g", ppl, fixturePPL, tc.pplTol)
			}

			// The whole text tokenizes to the fixture's (Hugging Face) ids;
			// its first line, which starts the text, to a prefix of them.
			if got := resp.Tokenize[0]; !slices.Equal(got, ids) {
				i := 0
				for i < min(len(got), len(ids)) && got[i] == ids[i] {
					i++
				}
				t.Errorf("tokenization of the sample text: %d tokens, want %d; first difference at token %d", len(got), len(ids), i)
			}
			if got := resp.Tokenize[1]; len(got) == 0 || !slices.Equal(got, ids[:len(got)]) {
				t.Errorf("tokenization of the first line is not a prefix of the fixture ids: %v", got[:min(len(got), 20)])
			}
			if got := resp.Tokenize[2]; !slices.Equal(got, g.Tokens[:len(got)]) {
				t.Errorf("tokenization of the greedy sentence %v differs from the generated tokens %v", got, g.Tokens[:len(got)])
			}
		})
	}
}

// TestLlamaCppScoreChoice shows why token scores are minus merge ranks:
// with them llama.cpp tokenizes the sample text exactly as Hugging Face
// did; with llama.cpp's converter's choice for tokenizer.json-only Llama
// vocabularies (-1000 for every token) it merges left to right and does not.
func TestLlamaCppScoreChoice(t *testing.T) {
	o := llamacpp.Require(t)
	ckpt := openFixture(t)
	text, ids := readFixtureIDs(t)
	var buf bytes.Buffer
	if _, err := WriteFloatModel(context.Background(), ckpt, &buf, TypeF32, LlamaOptions{}); err != nil {
		t.Fatal(err)
	}
	src := bytes.NewReader(buf.Bytes())
	f, err := Read(src, int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		score func(ours float32) float32
		equal bool
	}{
		{"minus merge rank", func(s float32) float32 { return s }, true},
		{"converter's -1000", func(float32) float32 { return -1000 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := slices.Clone(f.Metadata)
			v, _ := md.Get("tokenizer.ggml.scores")
			scores := slices.Clone(v.([]float32))
			for i := range scores {
				scores[i] = tc.score(scores[i])
			}
			md.Set("tokenizer.ggml.scores", scores)
			path := filepath.Join(t.TempDir(), "model.gguf")
			out, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(out, &Plan{Metadata: md, Tensors: f.Tensors, Alignment: f.Alignment})
			if err != nil {
				t.Fatal(err)
			}
			for _, ti := range f.Tensors {
				r, err := f.TensorReader(src, ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.BeginTensor(ti.Name); err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(w, r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
			resp, err := o.Run(context.Background(), &llamacpp.Request{Model: path, Tokenize: []string{text}})
			if err != nil {
				t.Fatal(err)
			}
			got := resp.Tokenize[0]
			t.Logf("%d tokens (Hugging Face: %d)", len(got), len(ids))
			if slices.Equal(got, ids) != tc.equal {
				t.Errorf("tokenization equal to Hugging Face's: %v, want %v", !tc.equal, tc.equal)
			}
		})
	}
}
