package export_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/store"
)

// TestLogProbsMatchLlamaCpp compares token log-probabilities with
// llama.cpp's on the same GGUF file: the fixture is exported as F32, F16,
// Q8_0, Q4_0, Q4_K, Q2_K and TQ2_0, llama.cpp (node-llama-cpp's prebuilt
// CPU build, one thread) gives log p of every next token of two 256-token
// windows (BOS + 255 ids each, from the start of the sample text), and ours
// is the float64 log-softmax of infer.LoadGGUF + Forward's logits at each
// position.
//
// llama.cpp runs with an F32 key/value cache and flash attention off: its
// defaults (F16 cache, flash attention "auto") round keys, values and
// queries to F16 and alone move F32 log-probs by up to 0.029 (mean 1.3e-3).
// So configured, F32 agrees to float32 rounding: max |Δ log p| 1.9e-5.
//
// Ours runs in its default (integer) mode, which computes every dot
// product as llama.cpp's CPU backend does: activations converted to the
// weight type's vec_dot_type (Q8_0 for Q8_0/Q4_0, Q8_K for the K-quants
// and TQ2_0, F16 for F16) and integer (or F16) dot products. The kernels'
// activation bytes equal ggml's and each dot product equals its vec_dot
// to float32 rounding (kernels.TestDotMatchesLlamaCpp). That brought
// Q8_0's mean from 0.019 (float32 activations) to 0.013, but the files
// still differ by far more than F32 does: llama.cpp's graph multiplies
// somewhere else than through vec_dot on the same values (its repacked
// and tinyBLAS paths for batches), and where exactly is not located. The
// bounds below are the measured maxima and means (docs/EVALUATION.md)
// with a margin. On the fixture Q4_K writes the same file as Q8_0 and
// Q2_K the same as TQ2_0 (rows of 64 and 172 values fall back), so those
// pairs measure the same numbers.
func TestLogProbsMatchLlamaCpp(t *testing.T) {
	o := llamacpp.Require(t)
	ctx := context.Background()
	ck := fixture(t)
	ids, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	const ctxLen, bos, nWindows = 256, 1, 2
	windows := make([][]int32, nWindows)
	oracleWindows := make([][]int, nWindows)
	for w := range windows {
		win := append([]int32{bos}, ids[w*(ctxLen-1):(w+1)*(ctxLen-1)]...)
		windows[w] = win
		for _, id := range win {
			oracleWindows[w] = append(oracleWindows[w], int(id))
		}
	}
	noFlash := false
	for _, tc := range []struct {
		recipe  string
		maxDiff float64 // bound on max |Δ log p|
		meanMax float64 // bound on mean |Δ log p|
	}{
		{"f32", 1e-4, 1e-5},
		{"f16", 0.01, 1e-3},
		{"q8_0", 0.25, 0.018},
		{"uniform-q4_0", 0.23, 0.018},
		{"uniform-q4_k", 0.25, 0.018},
		{"uniform-q2_k", 0.15, 0.018},
		{"tq2_0", 0.15, 0.018},
	} {
		t.Run(tc.recipe, func(t *testing.T) {
			dir := t.TempDir()
			out, err := store.NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := export.Run(ctx, ck, out, recipe(t, tc.recipe, false), export.Events{}); err != nil {
				t.Fatalf("export %s: %v", tc.recipe, err)
			}
			resp, err := o.Run(ctx, &llamacpp.Request{
				Model: filepath.Join(dir, export.GGUFKey), ContextSize: ctxLen, Threads: 1,
				KVCacheType: "F32", FlashAttention: &noFlash,
				Score: &llamacpp.Score{Windows: oracleWindows, From: 0},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Score) != nWindows {
				t.Fatalf("llama.cpp scored %d windows, want %d", len(resp.Score), nWindows)
			}
			m, err := infer.LoadGGUF(ctx, out, export.GGUFKey, infer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			maxD, sumD, n, worst := 0.0, 0.0, 0, ""
			for w, win := range windows {
				ours, err := tokenLogProbs(ctx, m, win)
				if err != nil {
					t.Fatal(err)
				}
				theirs := resp.Score[w].LogProbs
				if len(theirs) != len(ours) {
					t.Fatalf("window %d: llama.cpp gave %d log-probs, we %d", w, len(theirs), len(ours))
				}
				for p, lp := range theirs {
					if lp == nil {
						t.Fatalf("window %d position %d: llama.cpp gives probability 0 (ours log p %.4f)", w, p, ours[p])
					}
					d := math.Abs(*lp - ours[p])
					sumD += d
					n++
					if d > maxD {
						maxD = d
						worst = fmt.Sprintf("window %d position %d: llama.cpp %.6f, ours %.6f", w, p, *lp, ours[p])
					}
				}
			}
			mean := sumD / float64(n)
			t.Logf("%-5s %d positions: max |Δ log p| %.3g (%s), mean %.3g", tc.recipe, n, maxD, worst, mean)
			if maxD > tc.maxDiff {
				t.Errorf("%s: max |Δ log p| %.3g exceeds %.3g at %s", tc.recipe, maxD, tc.maxDiff, worst)
			}
			if mean > tc.meanMax {
				t.Errorf("%s: mean |Δ log p| %.3g exceeds %.3g", tc.recipe, mean, tc.meanMax)
			}
		})
	}
}

// tokenLogProbs runs one window through m and returns, for each position p
// < len(win)-1, log p(win[p+1]) from the float64 log-softmax of the logits
// at p.
func tokenLogProbs(ctx context.Context, m *infer.Model, win []int32) ([]float64, error) {
	logits, err := m.Forward(ctx, win)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	V := len(logits) / len(win)
	out := make([]float64, len(win)-1)
	for p := range out {
		row := logits[p*V : (p+1)*V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, float64(v))
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v) - mx)
		}
		out[p] = float64(row[win[p+1]]) - mx - math.Log(s)
	}
	return out, nil
}
