package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerate checks greedy continuations of the fixture. From BOS alone
// the 47 tokens are the story of testdata/PROVENANCE.md; its leading space
// is the first token's "▁", which tokenizer.json's decoder strips.
func TestGenerate(t *testing.T) {
	const story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted"
	for _, tc := range []struct {
		name   string
		args   []string
		want   string
		stderr string
	}{
		{"from BOS", []string{"-n", "47"}, story + "\n", "generated 47 tokens after a 1-token prompt"},
		{"prompt", []string{"--prompt", "Once upon a time", "-n", "8"}, "Once upon a time, there was a little girl\n", "after a 5-token prompt"},
		{"zero tokens", []string{"--prompt", "Lily", "-n", "0"}, "Lily\n", "generated 0 tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(append([]string{"generate", "--model", fixtureF32}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if out != tc.want {
				t.Errorf("output %q, want %q", out, tc.want)
			}
			if !strings.Contains(errs, tc.stderr) || !strings.Contains(errs, "tokens/s") {
				t.Errorf("stderr %q lacks %q and tokens/s", errs, tc.stderr)
			}
		})
	}
}

// TestGenerateErrors checks bad invocations.
func TestGenerateErrors(t *testing.T) {
	noTok := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(fixtureF32, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noTok, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no model", []string{"generate"}, 2, "--model is required"},
		{"negative n", []string{"generate", "--model", fixtureF32, "-n", "-1"}, 2, "-n -1"},
		{"missing gguf", []string{"generate", "--model", "m.gguf"}, 1, "m.gguf: object not found"},
		{"no tokenizer", []string{"generate", "--model", noTok}, 1, "no tokenizer.json; generate needs it"},
		{"too long", []string{"generate", "--model", fixtureF32, "-n", "600"}, 1, "max_position_embeddings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errs, tc.code, tc.want)
			}
		})
	}
}
