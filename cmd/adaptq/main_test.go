package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestInspectFixture(t *testing.T) {
	code, out, errs := runCLI("inspect", "../../testdata/models/stories260k-bf16-sharded")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"llama", "260032", "BF16", "2 file(s)", "model.layers.4.mlp.down_proj.weight", "down", "0 NaN/Inf"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runCLI("inspect", "--json", "../../testdata/models/stories260k")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		Params  int64 `json:"parameters"`
		Tensors []struct {
			Name  string  `json:"name"`
			Role  string  `json:"role"`
			Layer int     `json:"layer"`
			Shape []int64 `json:"shape"`
			DType string  `json:"dtype"`
			Bytes int64   `json:"bytes"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Params != 260032 || len(rep.Tensors) != 47 {
		t.Fatalf("params %d tensors %d", rep.Params, len(rep.Tensors))
	}
	if tt := rep.Tensors[0]; tt.Name != "model.embed_tokens.weight" || tt.Role != "embed" || tt.Layer != -1 || tt.DType != "F32" || tt.Bytes != 512*64*4 {
		t.Fatalf("first tensor %+v", tt)
	}
}

func TestInspectErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect"}, 2, "want one model location"},
		{[]string{"inspect", "../../testdata/bad/offsets-overlap"}, 1, "overlap"},
		{[]string{"inspect", "../../testdata/bad/index-path-escape"}, 1, "leaves the model's location"},
		{[]string{"inspect", "/nonexistent/model"}, 1, "config.json: object not found"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"synth", "--shape", "llama-2-7b"}, 2, "--out are required"},
		{[]string{"synth", "--shape", "nope", "--out", "/tmp/x"}, 1, "unknown shape"},
		{[]string{"synth", "--shape", "llama-2-7b", "--dtype", "q4", "--out", "/tmp/x"}, 2, "--dtype"},
	} {
		code, _, errs := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

func TestSynthThenInspect(t *testing.T) {
	dir := t.TempDir()
	shape := `{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":256,"tie_word_embeddings":true}`
	code, out, errs := runCLI("synth", "--shape", shape, "--layers", "2", "--dtype", "f16", "--out", dir)
	if code != 0 {
		t.Fatalf("synth: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "qwen2, 2 layers") {
		t.Fatalf("synth output %q", out)
	}
	code, out, errs = runCLI("inspect", dir)
	if code != 0 || !strings.Contains(out, "F16") || !strings.Contains(out, "attention bias true") || !strings.Contains(out, "q (bias)") {
		t.Fatalf("inspect: exit %d %s\n%s", code, errs, out)
	}
}

// TestQueueNames: the workflows schedule evaluation on the queue the eval
// role of the workers polls.
func TestQueueNames(t *testing.T) {
	if workflows.EvalQueueSuffix != workers.EvalQueueSuffix || workflows.TaskQueue != workers.DefaultTaskQueue {
		t.Fatalf("workflows queue %q+%q, workers %q+%q", workflows.TaskQueue, workflows.EvalQueueSuffix, workers.DefaultTaskQueue, workers.EvalQueueSuffix)
	}
}

// TestInspectManifest exports the fixture and reads its manifest back.
func TestInspectManifest(t *testing.T) {
	out := t.TempDir()
	if code, _, errs := runCLI("export", "--model", "../../testdata/models/stories260k", "--type", "q8_0", "--out", out); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	code, stdout, errs := runCLI("inspect", out+"/manifest.parquet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"gguf_sha256", "blk.4.ffn_down.weight", "F16", "Q8_0", "47 tensors", "bits per weight"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("manifest listing lacks %q", want)
		}
	}
	code, stdout, _ = runCLI("inspect", "--json", out+"/manifest.parquet")
	if code != 0 || !strings.Contains(stdout, "\"rows\"") {
		t.Fatalf("json: exit %d", code)
	}
}
