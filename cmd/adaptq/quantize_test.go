package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ohms-project/adaptq/workers"
)

// TestQuantizeEmbedded runs the main job on the embedded default: an
// in-process Temporal server and worker quantize the fixture, stitch the
// GGUF and evaluate it on a slice of the text.
func TestQuantizeEmbedded(t *testing.T) {
	full, err := os.ReadFile(fixtureText)
	if err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, full[:6000], 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, stdout, stderr := runCLI("quantize", "--model", fixtureF32, "--out", out, "--recipe", "q8_0", "--text", text, "--dev-port", "-1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	t.Log(stdout)
	for _, want := range []string{"bits per weight", "PPL before / after", "top-1 agreement", "model.gguf"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	for _, f := range []string{"model.gguf", "manifest.parquet", "plan.json", "eval/result.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s missing: %v", f, err)
		}
	}
}

// TestQuantizeMissingSearchAttributes: on a cluster without adaptq's
// search attributes, quantize stops before starting a run and says how to
// register them.
func TestQuantizeMissingSearchAttributes(t *testing.T) {
	ctx := context.Background()
	dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: -1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Stop()
	code, _, stderr := runCLI("quantize", "--model", fixtureF32, "--out", t.TempDir(), "--temporal", dev.Address())
	if code != 1 || !strings.Contains(stderr, "lacks the search attributes") || !strings.Contains(stderr, "search-attribute create") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
