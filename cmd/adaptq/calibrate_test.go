package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCalibrateThenExport: `adaptq calibrate` on the embedded default
// writes imatrix.gguf and its summary; `export --imatrix` quantizes with
// it, and refuses it for a rotated recipe (exit 2, naming the file).
func TestCalibrateThenExport(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI("calibrate", "--model", fixtureF32, "--text", fixtureText, "--ctx", "64", "--chunks", "10",
		"--out", out, "--dev-port", "-1", "--ui-port", "-1")
	if code != 0 {
		t.Fatalf("calibrate: exit %d\n%s", code, stderr)
	}
	t.Log(stdout)
	file := filepath.Join(out, "imatrix.gguf")
	for _, want := range []string{"windows   10 of 64 tokens", "tokens    640 ", "entries   35 weights", "tokens/s", "file      " + file} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	code, stdout, stderr = runCLI("export", "--model", fixtureF32, "--type", "q4_k_m", "--imatrix", file, "--out", t.TempDir())
	if code != 0 || !strings.Contains(stdout, "imatrix      "+file+" (35 entries, 10 chunks of 64 tokens") {
		t.Fatalf("export --imatrix: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI("export", "--model", fixtureF32, "--type", "q4_k_m", "--rotate", "hadamard", "--imatrix", file, "--out", t.TempDir())
	if code != 2 || !strings.Contains(stderr, file+`: does not fit the model: collected on the rotation "none", but the recipe rotates with "hadamard seed=1 heads=false"`) {
		t.Fatalf("rotated export with an unrotated imatrix: exit %d, %s", code, stderr)
	}
	short := filepath.Join(t.TempDir(), "short.txt")
	os.WriteFile(short, []byte("Once upon a time."), 0o644)
	code, _, stderr = runCLI("calibrate", "--model", fixtureF32, "--text", short, "--out", t.TempDir(), "--dev-port", "-1", "--ui-port", "-1")
	if code != 2 || !strings.Contains(stderr, short+": 5 tokens, less than one window of 512 (protocol llama.cpp needs 511); give a longer text or a smaller --ctx") {
		t.Fatalf("short text: exit %d, %s", code, stderr)
	}
}
