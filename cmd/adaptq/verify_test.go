package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fixtureF32  = "../../testdata/models/stories260k"
	fixtureBF16 = "../../testdata/models/stories260k-bf16-sharded"
	fixtureText = "../../testdata/text/tinystories-valid-sample.txt"
	fixtureIDs  = "../../testdata/text/tinystories-valid-sample.ids"
)

// verifyJSON runs `adaptq verify --json` and decodes its report.
func verifyJSON(t *testing.T, args ...string) verifyReport {
	t.Helper()
	code, out, errs := runCLI(append([]string{"verify", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("verify %v: exit %d: %s", args, code, errs)
	}
	var rep verifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("verify %v: %v\n%s", args, err, out)
	}
	return rep
}

// TestVerifyFixturePPL checks the fixture's reference perplexities through
// the CLI, from the text (tokenized with tokenizer.json) and from the ids.
func TestVerifyFixturePPL(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		windows  int
		tokens   int64
		want     float64
		tol      float64
		protocol string
	}{
		{"full from text", []string{"--text", fixtureText, "--protocol", "full"}, 60, 15300, 6.8144, 0.0005, "full"},
		{"llama.cpp from text", []string{"--text", fixtureText, "--protocol", "llama.cpp"}, 60, 7620, 6.2132, 0.001, "llama.cpp"},
		{"full from ids, 5 windows", []string{"--ids", fixtureIDs, "--limit", "5"}, 5, 5 * 255, 0, 0, "full"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := verifyJSON(t, append([]string{"--model", fixtureF32, "--ctx", "256"}, c.args...)...)
			t.Logf("PPL %.5f, %d windows, %d tokens, %.0f tokens/s", rep.PPL, rep.Windows, rep.Tokens, rep.TokensPerSecond)
			if rep.InputTokens != 15554 || rep.Windows != c.windows || rep.Tokens != c.tokens || rep.Protocol != c.protocol {
				t.Errorf("input %d tokens, %d windows, %d scored, protocol %s; want 15554, %d, %d, %s",
					rep.InputTokens, rep.Windows, rep.Tokens, rep.Protocol, c.windows, c.tokens, c.protocol)
			}
			if c.want != 0 && math.Abs(rep.PPL-c.want) > c.tol {
				t.Errorf("PPL %.5f, want %.4f ± %g", rep.PPL, c.want, c.tol)
			}
			if rep.Reference || rep.TokensPerSecond <= 0 || rep.ForwardTokens != int64(c.windows)*256 {
				t.Errorf("reference %v, %.0f tokens/s over %d forward tokens", rep.Reference, rep.TokensPerSecond, rep.ForwardTokens)
			}
		})
	}
}

// TestVerifyReference compares the BF16 copy with the F32 model, live and
// through saved log-probabilities, and the F32 model with itself.
func TestVerifyReference(t *testing.T) {
	saved := filepath.Join(t.TempDir(), "f32.aqlp")
	base := verifyJSON(t, "--model", fixtureF32, "--ids", fixtureIDs, "--limit", "12", "--save-logprobs", saved, "--topk", "32")
	if st, err := os.Stat(saved); err != nil || st.Size() != 16+12*(20+255*(8+8*32)) {
		t.Fatalf("saved log-probs: %v (size %v)", err, st)
	}
	cases := []struct {
		name          string
		args          []string
		klMin, klMax  float64
		top1Min, top1 float64 // top-1 in [top1Min, top1]
	}{
		{"bf16 vs f32 live", []string{"--model", fixtureBF16, "--reference", fixtureF32}, 1e-6, 1e-3, 0.95, 0.9999},
		{"bf16 vs f32 saved", []string{"--model", fixtureBF16, "--reference-logprobs", saved}, 1e-6, 1e-3, 0.95, 0.9999},
		{"f32 vs itself saved", []string{"--model", fixtureF32, "--reference-logprobs", saved}, 0, 0, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := verifyJSON(t, append([]string{"--ids", fixtureIDs, "--limit", "12"}, c.args...)...)
			t.Logf("PPL %.5f ref %.5f ratio %.6f KL mean %.3g median %.3g p99 %.3g top-1 %.4f",
				rep.PPL, rep.RefPPL, rep.PPLRatio, rep.KLMean, rep.KLMedian, rep.KLP99, rep.Top1)
			if !rep.Reference || rep.KLMean < c.klMin || rep.KLMean > c.klMax || rep.Top1 < c.top1Min || rep.Top1 > c.top1 {
				t.Errorf("reference %v, KL mean %g (want [%g, %g]), top-1 %g (want [%g, %g])",
					rep.Reference, rep.KLMean, c.klMin, c.klMax, rep.Top1, c.top1Min, c.top1)
			}
			if math.Abs(rep.RefPPL/base.PPL-1) > 1e-6 {
				t.Errorf("reference PPL %.6f, the F32 model's is %.6f", rep.RefPPL, base.PPL)
			}
		})
	}
}

// TestVerifyText checks the human-readable report.
func TestVerifyText(t *testing.T) {
	code, out, errs := runCLI("verify", "--model", fixtureBF16, "--reference", fixtureF32, "--ids", fixtureIDs,
		"--limit", "2", "--act-bits", "8", "--hadamard", "--workers", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"PPL ", "2 windows, 510 tokens scored", "8-bit activations after a Hadamard rotation", "ratio", "KL          mean", "median", "p99", "top-1", "tokens/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "verify") || !strings.Contains(errs, "2/2") {
		t.Errorf("no progress on stderr: %q", errs)
	}
}

// TestVerifyErrors checks that bad invocations and inputs are explained.
func TestVerifyErrors(t *testing.T) {
	dir := t.TempDir()
	// A checkpoint without tokenizer.json.
	noTok := filepath.Join(dir, "no-tokenizer")
	if err := os.Mkdir(noTok, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(fixtureF32, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noTok, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	short := filepath.Join(dir, "short.txt")
	if err := os.WriteFile(short, []byte("Once upon a time, there was a cat."), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Checkpoints whose tokenizer.json is not BPE.
	tokDirs := map[string]string{}
	for typ, model := range map[string]string{
		"WordPiece": `{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0,"a":1}}`,
		"Unigram":   `{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["a",-1.5]]}`,
	} {
		d := filepath.Join(dir, "tokenizer-"+typ)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"config.json", "model.safetensors"} {
			b, err := os.ReadFile(filepath.Join(fixtureF32, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, "tokenizer.json"), []byte(`{"version":"1.0","model":`+model+`}`), 0o644); err != nil {
			t.Fatal(err)
		}
		tokDirs[typ] = d
	}
	badIDs := filepath.Join(dir, "bad.ids")
	if err := os.WriteFile(badIDs, []byte(strings.Repeat("5 ", 300)+"9999"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no model", []string{"--text", fixtureText}, 2, "--model is required"},
		{"no input", []string{"--model", fixtureF32}, 2, "exactly one of --text and --ids"},
		{"two inputs", []string{"--model", fixtureF32, "--text", fixtureText, "--ids", fixtureIDs}, 2, "exactly one of --text and --ids"},
		{"two references", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--reference", fixtureF32, "--reference-logprobs", "x"}, 2, "at most one"},
		{"protocol", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--protocol", "half"}, 2, "--protocol"},
		{"act bits", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--act-bits", "3"}, 2, "--act-bits 3"},
		{"missing gguf", []string{"--model", "/models/x.Q4_K_M.gguf", "--ids", fixtureIDs}, 1, "object not found"},
		{"missing gguf reference", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--reference", "y.gguf"}, 1, "y.gguf"},
		{"no tokenizer", []string{"--model", noTok, "--text", fixtureText}, 1, "no tokenizer.json; give token ids with --ids"},
		{"short text", []string{"--model", fixtureF32, "--text", short}, 1, short + ": 11 tokens is shorter than one window"},
		{"short text, llama.cpp protocol", []string{"--model", fixtureF32, "--text", short, "--protocol", "llama.cpp"}, 1, short + ": 11 tokens is shorter than one window (protocol llama.cpp"},
		{"empty text", []string{"--model", fixtureF32, "--text", empty}, 1, empty + ": 0 tokens is shorter than one window"},
		{"empty ids", []string{"--model", fixtureF32, "--ids", empty}, 1, empty + ": 0 tokens is shorter than one window"},
		{"config and tensors disagree", []string{"--model", "../../testdata/bad/shape-config-mismatch", "--ids", fixtureIDs}, 1,
			`shape-config-mismatch/model.safetensors: tensor "model.layers.0.mlp.gate_proj.weight": shape [16 8], config.json implies [32 8]`},
		{"tensor missing", []string{"--model", "../../testdata/bad/missing-tensor", "--ids", fixtureIDs}, 1, `missing-tensor: tensor "lm_head.weight" (lm_head) is missing`},
		{"config and tensors disagree, reference", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--reference", "../../testdata/bad/shape-config-mismatch"}, 1,
			`shape-config-mismatch/model.safetensors: tensor "model.layers.0.mlp.gate_proj.weight"`},
		{"WordPiece tokenizer", []string{"--model", tokDirs["WordPiece"], "--text", fixtureText}, 1,
			filepath.Join(tokDirs["WordPiece"], "tokenizer.json") + `: tokenizer model type not supported: "WordPiece"`},
		{"Unigram tokenizer", []string{"--model", tokDirs["Unigram"], "--text", fixtureText}, 1,
			filepath.Join(tokDirs["Unigram"], "tokenizer.json") + `: tokenizer model type not supported: "Unigram"`},
		{"ctx beyond model", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--ctx", "1024"}, 1, "max_position_embeddings 512"},
		{"id outside vocab", []string{"--model", fixtureF32, "--ids", badIDs}, 1, "outside the model's vocabulary of 512"},
		{"missing text", []string{"--model", fixtureF32, "--text", filepath.Join(dir, "nope.txt")}, 1, "no such file"},
		{"missing saved reference", []string{"--model", fixtureF32, "--ids", fixtureIDs, "--reference-logprobs", filepath.Join(dir, "nope")}, 1, "--reference-logprobs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(append([]string{"verify"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errs, tc.code, tc.want)
			}
		})
	}
	// Without a usable tokenizer.json, --ids works (BOS from config.json).
	for _, d := range []string{noTok, tokDirs["Unigram"]} {
		rep := verifyJSON(t, "--model", d, "--ids", fixtureIDs, "--limit", "1")
		if rep.Windows != 1 || rep.PPL <= 1 {
			t.Errorf("%s: ids without tokenizer: %+v", d, rep)
		}
	}
}

// TestVerifyExportedGGUF exports the fixture and evaluates the GGUF file
// against the original: F32 gives the reference perplexity, Q8_0 a small KL.
func TestVerifyExportedGGUF(t *testing.T) {
	for _, tc := range []struct {
		recipe string
		maxKL  float64
	}{{"f32", 1e-6}, {"q8_0", 0.003}} {
		out := t.TempDir()
		if code, _, errs := runCLI("export", "--model", fixtureF32, "--type", tc.recipe, "--out", out); code != 0 {
			t.Fatalf("export: %s", errs)
		}
		rep := verifyJSON(t, "--model", filepath.Join(out, "model.gguf"), "--reference", fixtureF32, "--text", fixtureText, "--limit", "10")
		t.Logf("%s: PPL %.4f, KL %.3g, top-1 %.2f%%", tc.recipe, rep.PPL, rep.KLMean, 100*rep.Top1)
		if rep.KLMean > tc.maxKL || (tc.recipe == "f32" && rep.Top1 != 1) {
			t.Errorf("%s: KL %.3g (max %.3g), top-1 %.4f", tc.recipe, rep.KLMean, tc.maxKL, rep.Top1)
		}
	}
}
