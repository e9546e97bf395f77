package importer_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// TestOriginals measures what docs/QUALITY.md "The originals" reports, for
// each real model (ADAPTQ_REAL_MODELS; not part of `make test`: set
// ADAPTQ_ORIGINALS=1):
//
//   - llama.cpp's log-probabilities on the original GGUF against our
//     float32 forward pass on its F32 import, on two windows of ctx 512
//     (BOS + 511 ids from the start of testdata/text/go-eval.txt; llama.cpp
//     with an F32 key/value cache and flash attention off): max and mean
//     |Δ log p| over the 1022 predictions;
//   - llama.cpp's perplexity (llama-perplexity's protocol, ctx 512, every
//     chunk of go-eval.txt, llama.cpp's default settings) of the original
//     GGUF and of `adaptq export --type f16` of the import, which must be
//     within 0.5 %.
//
// The 1.5B model's F32 import takes about 7 GB of memory in our forward
// pass: run it alone, under nice.
func TestOriginals(t *testing.T) {
	if os.Getenv("ADAPTQ_ORIGINALS") == "" {
		t.Skip("set ADAPTQ_ORIGINALS=1 to measure the originals (minutes per model)")
	}
	o := llamacpp.Require(t)
	ctx := context.Background()
	eval, err := os.ReadFile("../testdata/text/go-eval.txt")
	if err != nil {
		t.Fatal(err)
	}
	noFlash := false
	for _, name := range realModels() {
		t.Run(name, func(t *testing.T) {
			path := testenv.RealModel(t, name)
			ck, sum := importFile(t, path, importer.Options{DType: safetensors.F32})
			t.Logf("%s: F32 import: %d tensors, %d parameters, %d bytes in %.1fs", name, sum.Tensors, sum.Params, sum.Bytes, sum.Seconds)
			tok, err := tokenizer.Load(filepath.Join(ck.Store.(*store.Local).Root(), model.TokenizerFile))
			if err != nil {
				t.Fatal(err)
			}
			ids := tok.Encode(string(eval), false)
			bos := ck.Config.BOSTokenID[0]

			// Log-probabilities on two windows.
			const ctxLen, nWin = 512, 2
			var wins [][]int
			for w := range nWin {
				wins = append(wins, append([]int{bos}, ids[w*(ctxLen-1):(w+1)*(ctxLen-1)]...))
			}
			resp, err := o.Run(ctx, &llamacpp.Request{Model: path, ContextSize: ctxLen, Threads: 2,
				KVCacheType: "F32", FlashAttention: &noFlash, Score: &llamacpp.Score{Windows: wins}})
			if err != nil {
				t.Fatal(err)
			}
			m, err := infer.LoadModel(ctx, ck)
			if err != nil {
				t.Fatal(err)
			}
			maxD, sumD, n := 0.0, 0.0, 0
			for w, win := range wins {
				w32 := make([]int32, len(win))
				for i, id := range win {
					w32[i] = int32(id)
				}
				ours, err := infer.ModelReference{Model: m}.Window(ctx, infer.Window{Index: w, Input: w32, End: len(w32) - 1})
				if err != nil {
					t.Fatal(err)
				}
				for p, lp := range resp.Score[w].LogProbs {
					if lp == nil {
						t.Fatalf("window %d position %d: llama.cpp gives probability 0", w, p)
					}
					d := math.Abs(*lp - float64(ours[p].TargetLogProb))
					maxD = max(maxD, d)
					sumD += d
					n++
				}
			}
			m = nil
			runtime.GC()
			t.Logf("%s: log p, %d predictions in %d windows of %d: max |Δ| %.4g, mean |Δ| %.4g", name, n, nWin, ctxLen, maxD, sumD/float64(n))

			// Perplexity of the original and of the F16 export.
			exported := quantizedGGUF(t, ck, "f16")
			windows, from := llamacpp.PerplexityWindows(ids, ctxLen, bos)
			var ppl [2]float64
			for i, file := range []string{path, exported} {
				resp, err := o.Run(ctx, &llamacpp.Request{Model: file, ContextSize: ctxLen, Threads: 2,
					Score: &llamacpp.Score{Windows: windows, From: from}})
				if err != nil {
					t.Fatal(err)
				}
				if ppl[i], err = llamacpp.Perplexity(resp.Score); err != nil {
					t.Fatal(err)
				}
			}
			rel := ppl[1]/ppl[0] - 1
			t.Logf("%s: llama.cpp PPL, ctx %d, %d chunks (%d tokens scored): original GGUF %.4f, F16 export of the import %.4f (%+.3f %%)",
				name, ctxLen, len(windows), len(windows)*(ctxLen-1-from), ppl[0], ppl[1], 100*rel)
			if math.Abs(rel) > 0.005 {
				t.Errorf("%s: PPL of the F16 export differs by %.3f %% from the original's", name, 100*rel)
			}
		})
	}
}
