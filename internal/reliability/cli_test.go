package reliability

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/workflows"
)

// TestCLIQuantizeFixture is the operator's path: run.json written to disk,
// `temporal workflow start --input-file`, a worker process serving it,
// `temporal workflow result` for the summary; model.gguf and
// manifest.parquet appear in MinIO, the search attributes are set and a
// visibility query finds the run. The run evaluates the result, and the
// aggregated perplexity equals `adaptq verify` on the same GGUF and text.
func TestCLIQuantizeFixture(t *testing.T) {
	s := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	modelLoc := s.model(t, fixtureModel, nil)
	root, _ := testenv.RepoRoot()
	textPath := filepath.Join(root, "testdata", "text", "tinystories-valid-sample.txt")
	text, err := os.ReadFile(textPath)
	if err != nil {
		t.Fatal(err)
	}
	texts := bucket(t, s.minio, "texts", "")
	if _, err := texts.Put(ctx, "tinystories.txt", strings.NewReader(string(text)), int64(len(text))); err != nil {
		t.Fatal(err)
	}
	queue := uniqueName(t, "q")
	id := uniqueName(t, "wf")
	outPrefix := "cli/" + id
	outStore := bucket(t, s.minio, "out", outPrefix)
	in := workflows.QuantizeInput{Model: modelLoc, Output: "s3://out/" + outPrefix, Recipe: "q4_k",
		Evaluation:  &workflows.EvalSpec{Text: "s3://texts/tinystories.txt", Ctx: 256, Protocol: "full", Chunk: 16, Parallel: 2},
		Concurrency: 4, HeartbeatSeconds: 30}
	runJSON := filepath.Join(t.TempDir(), "run.json")
	b, _ := json.Marshal(in)
	if err := os.WriteFile(runJSON, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Two worker processes share the run.
	s.startWorker(t, workerOpts{Name: "cli-worker", Queue: queue, MaxConcurrent: 2})
	s.startWorker(t, workerOpts{Name: "cli-worker-2", Queue: queue, MaxConcurrent: 2})

	if _, err := s.temporalCLI(t, ctx, "workflow", "start", "--type", "QuantizeModel", "--task-queue", queue,
		"--workflow-id", id, "--input-file", runJSON); err != nil {
		t.Fatal(err)
	}
	out, err := s.temporalCLI(t, ctx, "workflow", "result", "--workflow-id", id, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Status string            `json:"status"`
		Result workflows.Summary `json:"result"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("decode `temporal workflow result`: %v\n%s", err, out)
	}
	sum := res.Result
	if res.Status != "COMPLETED" || sum.Export.GGUFSHA256 == "" || sum.Parameters != 260032 || sum.Evaluation == nil {
		t.Fatalf("result %s", out)
	}
	t.Logf("summary: %d tensors, %.3f bits/weight, GGUF %d bytes sha256 %s, %.1fs (quantize %.1fs, evaluate %.1fs); PPL %.5f (reference %.5f)",
		sum.Export.Tensors, sum.Export.BitsPerWeight, sum.Export.GGUFSize, sum.Export.GGUFSHA256, sum.Seconds,
		sum.QuantizeSecs, sum.EvaluateSecs, sum.Evaluation.PPL, sum.Evaluation.RefPPL)

	// The objects in MinIO.
	if got := objectSHA256(t, outStore, export.GGUFKey); got != sum.Export.GGUFSHA256 {
		t.Errorf("model.gguf in MinIO has sha256 %s, the summary says %s", got, sum.Export.GGUFSHA256)
	}
	mb, err := store.ReadAll(ctx, outStore, export.ManifestKey)
	if err != nil {
		t.Fatalf("manifest.parquet: %v", err)
	}
	m, err := manifest.Read(ctx, mb)
	if err != nil || m.Meta["gguf_sha256"] != sum.Export.GGUFSHA256 {
		t.Fatalf("manifest: %v (meta %v)", err, m.Meta)
	}

	// Search attributes on the execution, and the visibility query.
	out, err = s.temporalCLI(t, ctx, "workflow", "describe", "--workflow-id", id, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	attrs := searchAttributes(t, out)
	want := map[string]string{"AdaptqModel": modelLoc, "AdaptqRecipe": "q4_k", "AdaptqPhase": workflows.PhaseDone}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("search attribute %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
		}
	}
	query := `AdaptqPhase="done" AND AdaptqModel="` + modelLoc + `" AND WorkflowId="` + id + `"`
	found := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !found; time.Sleep(300 * time.Millisecond) {
		out, err = s.temporalCLI(t, ctx, "workflow", "list", "--query", query, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		found = strings.Contains(string(out), id)
	}
	if !found {
		t.Errorf("`temporal workflow list --query '%s'` does not find the run: %s", query, out)
	}

	// The distributed evaluation equals `adaptq verify` on the same GGUF.
	dir := t.TempDir()
	gg, err := store.ReadAll(ctx, outStore, export.GGUFKey)
	if err != nil {
		t.Fatal(err)
	}
	ggPath := filepath.Join(dir, "model.gguf")
	if err := os.WriteFile(ggPath, gg, 0o644); err != nil {
		t.Fatal(err)
	}
	// llama.cpp loads the file the fleet wrote and decodes the fixture's
	// story from BOS.
	o := llamacpp.Require(t)
	resp, err := o.Run(ctx, &llamacpp.Request{Model: ggPath, ContextSize: 256, Threads: 2, Generate: &llamacpp.Generate{Tokens: 47}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Generate.Text, "Once upon a time, there was a little girl named Lily.") {
		t.Errorf("llama.cpp on the pipeline's GGUF: %q", resp.Generate.Text)
	}
	vctx, vcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer vcancel()
	// export copies tokenizer.json beside the GGUF; verify tokenizes with it.
	tok, err := store.ReadAll(ctx, outStore, "tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := exec.CommandContext(vctx, s.bin, "verify", "--json", "--model", ggPath,
		"--reference", filepath.Join(root, "testdata", "models", fixtureModel), "--text", textPath)
	var verr strings.Builder
	verify.Stderr = &verr
	vout, err := verify.Output()
	if err != nil {
		t.Fatalf("adaptq verify: %v\n%s", err, verr.String())
	}
	var vr struct {
		PPL    float64 `json:"ppl"`
		Tokens int64   `json:"tokens"`
	}
	if err := json.Unmarshal(vout, &vr); err != nil {
		t.Fatalf("decode verify --json: %v\n%s", err, vout)
	}
	rel := math.Abs(vr.PPL-sum.Evaluation.PPL) / vr.PPL
	t.Logf("PPL distributed %.12f, adaptq verify %.12f (relative difference %.2g, %d / %d tokens)",
		sum.Evaluation.PPL, vr.PPL, rel, sum.Evaluation.Tokens, vr.Tokens)
	if vr.Tokens != sum.Evaluation.Tokens || !(rel <= 1e-9) {
		t.Errorf("distributed evaluation PPL %.12f over %d tokens, adaptq verify %.12f over %d tokens",
			sum.Evaluation.PPL, sum.Evaluation.Tokens, vr.PPL, vr.Tokens)
	}
}

// searchAttributes decodes the custom search attributes of
// `temporal workflow describe -o json` (payloads with base64 JSON data, or
// already decoded values, depending on the CLI version).
func searchAttributes(t *testing.T, describe []byte) map[string]string {
	t.Helper()
	var d struct {
		ExecutionInfo struct {
			SearchAttributes struct {
				IndexedFields map[string]json.RawMessage `json:"indexedFields"`
			} `json:"searchAttributes"`
		} `json:"workflowExecutionInfo"`
	}
	if err := json.Unmarshal(describe, &d); err != nil {
		t.Fatalf("decode `temporal workflow describe`: %v\n%s", err, describe)
	}
	out := map[string]string{}
	for k, raw := range d.ExecutionInfo.SearchAttributes.IndexedFields {
		var p struct {
			Data []byte `json:"data"`
		}
		var v string
		if json.Unmarshal(raw, &p) == nil && len(p.Data) > 0 && json.Unmarshal(p.Data, &v) == nil {
			out[k] = v
			continue
		}
		if json.Unmarshal(raw, &v) == nil {
			out[k] = v
			continue
		}
		out[k] = string(raw)
	}
	return out
}
