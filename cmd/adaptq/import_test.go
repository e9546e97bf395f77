package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

// TestImportCommand imports the fixture's F32 GGUF export with the CLI:
// the summary names the tensors, parameters, bytes and time, the result
// opens as a checkpoint, and bad arguments and inputs fail with a clear
// line and nothing written.
func TestImportCommand(t *testing.T) {
	ctx := context.Background()
	fx, _ := store.NewLocal("../../testdata/models/stories260k")
	ck, err := model.Open(ctx, fx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "stories.gguf")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gguf.WriteFloatModel(ctx, ck, f, gguf.TypeF32, gguf.LlamaOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := filepath.Join(dir, "imported")
	code, stdout, stderr := runCLI("import", src, "--out", out, "--dtype", "bf16", "--max-shard-gib", "0.0002")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"47 (260.0K parameters, BF16", "safetensors file(s)", "llama, 5 layers, hidden 64, 8/4 heads, vocab 512, tied embeddings", "time"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	s, _ := store.NewLocal(out)
	imp, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if imp.NumParams() != ck.NumParams() || len(imp.Files) < 2 || imp.Config.TorchDType != "bfloat16" {
		t.Errorf("import: %d parameters in %d files, torch_dtype %q", imp.NumParams(), len(imp.Files), imp.Config.TorchDType)
	}

	empty := filepath.Join(dir, "empty")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", src}, 2, "one GGUF file and --out are required"},
		{[]string{"import", "--out", empty}, 2, "one GGUF file and --out are required"},
		{[]string{"import", src, "--out", empty, "--dtype", "q4_k"}, 2, `--dtype "q4_k"`},
		{[]string{"import", src, "--out", empty, "--max-shard-gib", "0"}, 2, "--max-shard-gib"},
		{[]string{"import", filepath.Join(dir, "missing.gguf"), "--out", empty}, 1, "missing.gguf"},
		{[]string{"import", filepath.Join(out, model.ConfigFile), "--out", empty}, 1, "not a GGUF file"},
		{[]string{"import", src, "--out", out}, 1, "already holds"},
	} {
		code, _, stderr := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("a refused import created %s", empty)
	}
}
