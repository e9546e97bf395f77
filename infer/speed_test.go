package infer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// speedEnv enables TestSpeedVsLlamaCpp; it takes minutes and writes about
// 1.5 GB of temporary files, so `go test ./...` skips it.
const speedEnv = "ADAPTQ_SPEED"

// TestSpeedVsLlamaCpp measures prompt processing in the same run for our
// forward pass and llama.cpp (node-llama-cpp's prebuilt CPU build, its
// default context settings) on the same GGUF files, with 1 and 2 threads:
// tokens/s of one 256-token window (BOS + 255 tokens) evaluated from
// scratch, the best of a few rounds (each round one of ours, then one of
// llama.cpp's). Models: the fixture (F32 and
// Q8_0) and one layer of llama-2-7b's shape with the vocabulary cut to 512
// (synthetic BF16 weights, the fixture's tokenizer; F32, F16, Q8_0 and
// Q4_K). Ours is Forward's wall time (every position's logits) in the
// default mode, and once with --exact for comparison; llama.cpp's is
// measured inside node around the window's evaluation (oracle.mjs "ms",
// no probabilities asked for). It logs a table and asserts nothing about
// the ratio; docs/EVALUATION.md holds the figures.
//
//	ADAPTQ_SPEED=1 go test ./infer -run TestSpeedVsLlamaCpp -v -timeout 30m
func TestSpeedVsLlamaCpp(t *testing.T) {
	if os.Getenv(speedEnv) == "" {
		t.Skipf("set %s=1 to compare speed with llama.cpp (minutes)", speedEnv)
	}
	o := llamacpp.Require(t)
	ctx := context.Background()
	const ctxLen = 256

	fixtureStore, err := store.NewLocal("../testdata/models/stories260k")
	if err != nil {
		t.Fatal(err)
	}
	fixture, err := model.Open(ctx, fixtureStore)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	window := append([]int32{1}, ids[:ctxLen-1]...)

	layer := synthLayer(t, ctx)

	type row struct {
		model, weights           string
		threads                  int
		ours, exact, theirs, bpw float64
	}
	var rows []row
	for _, m := range []struct {
		name    string
		ck      *model.Checkpoint
		recipes []string
		reps    int
	}{
		{"stories260k", fixture, []string{"f32", "q8_0"}, 5},
		{"llama-2-7b, 1 layer, vocab 512", layer, []string{"f32", "f16", "q8_0", "uniform-q4_k"}, 3},
	} {
		for _, rname := range m.recipes {
			r, err := shards.NamedRecipe(rname)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			out, err := store.NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			sum, _, err := export.Run(ctx, m.ck, out, r, export.Events{})
			if err != nil {
				t.Fatalf("%s %s: export: %v", m.name, rname, err)
			}
			path := filepath.Join(dir, export.GGUFKey)
			for _, threads := range []int{1, 2} {
				// Alternate ours and llama.cpp, one repetition each per
				// round, so that both see the same load; keep the best.
				var ours, theirs float64
				for range m.reps {
					o1, err := ourSpeed(ctx, out, window, threads, 1, false)
					if err != nil {
						t.Fatalf("%s %s: %v", m.name, rname, err)
					}
					t1, err := llamaCppSpeed(ctx, o, path, window, threads, 1)
					if err != nil {
						t.Fatalf("%s %s: %v", m.name, rname, err)
					}
					ours, theirs = max(ours, o1), max(theirs, t1)
				}
				exact, err := ourSpeed(ctx, out, window, threads, 1, true)
				if err != nil {
					t.Fatalf("%s %s: %v", m.name, rname, err)
				}
				rows = append(rows, row{m.name, rname, threads, ours, exact, theirs, sum.BitsPerWeight})
				t.Logf("%s %s threads %d: ours %.0f tokens/s (--exact %.0f), llama.cpp %.0f tokens/s", m.name, rname, threads, ours, exact, theirs)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| model | weights (bits/weight) | threads | ours, tokens/s | llama.cpp, tokens/s | ours / llama.cpp | ours --exact, tokens/s |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s (%.2f) | %d | %.0f | %.0f | %.2f | %.0f |\n", r.model, r.weights, r.bpw, r.threads, r.ours, r.theirs, r.ours/r.theirs, r.exact)
	}
	t.Log(b.String())
}

// ourSpeed loads the GGUF with the given number of workers (and mode) and
// returns the best tokens/s of reps forward passes over the window.
func ourSpeed(ctx context.Context, s store.Store, window []int32, workers, reps int, exact bool) (float64, error) {
	m, err := infer.LoadGGUF(ctx, s, export.GGUFKey, infer.Options{Workers: workers, Exact: exact})
	if err != nil {
		return 0, fmt.Errorf("load: %w", err)
	}
	best := time.Duration(1<<63 - 1)
	for range reps {
		start := time.Now()
		if _, err := m.Forward(ctx, window); err != nil {
			return 0, fmt.Errorf("forward: %w", err)
		}
		best = min(best, time.Since(start))
	}
	return float64(len(window)) / best.Seconds(), nil
}

// llamaCppSpeed evaluates the window reps times in llama.cpp (one process,
// the model loaded once, history cleared before each) and returns the best
// tokens/s.
func llamaCppSpeed(ctx context.Context, o *llamacpp.Oracle, path string, window []int32, threads, reps int) (float64, error) {
	w := make([]int, len(window))
	for i, id := range window {
		w[i] = int(id)
	}
	windows := make([][]int, reps)
	for i := range windows {
		windows[i] = w
	}
	resp, err := o.Run(ctx, &llamacpp.Request{
		Model: path, ContextSize: len(w), Threads: threads,
		// No position is scored: the time is llama_decode of the window.
		Score: &llamacpp.Score{Windows: windows, From: len(w) - 1},
	})
	if err != nil {
		return 0, err
	}
	best := 0.0
	for _, s := range resp.Score {
		if s.Ms <= 0 {
			return 0, fmt.Errorf("llama.cpp reported no timing (oracle.mjs without \"ms\"?)")
		}
		if best == 0 || s.Ms < best {
			best = s.Ms
		}
	}
	return float64(len(w)) / (best / 1000), nil
}

// synthLayer writes one layer of llama-2-7b's shape (hidden 4096,
// intermediate 11008, 32 heads) with the vocabulary cut to 512, BF16
// synthetic weights, and the fixture's tokenizer (also 512 tokens, BOS 1,
// EOS 2 as llama-2's config says) so that export can stitch a GGUF.
func synthLayer(t *testing.T, ctx context.Context) *model.Checkpoint {
	t.Helper()
	raw, _, err := synth.ShapeConfig("llama-2-7b", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw["vocab_size"] = 512
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw, cfg, err := synth.ShapeConfig(string(b), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, s, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{model.TokenizerFile, "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join("../testdata/models/stories260k", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}
