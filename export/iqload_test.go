package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// iqShape is a synthetic Llama whose every row is a multiple of 256, so
// every i-quant recipe writes its own types (no IQ4_NL fallback): 4 layers
// (n/8 = 0: no first-eighth rule applies, which the preset oracle covers),
// GQA 2, untied, and the fixture's 512-token vocabulary and tokenizer.
const iqShape = `{"model_type":"llama","hidden_size":256,"intermediate_size":768,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":512,"tie_word_embeddings":false}`

// iqRecipes are the i-quant presets.
var iqRecipes = []string{"iq4_nl", "iq4_xs", "iq3_m", "iq3_s", "iq3_xs", "iq3_xxs", "iq2_m", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"}

// iqCheckpoint writes the synthetic checkpoint (BF16, the fixture's
// tokenizer) and opens it.
func iqCheckpoint(t *testing.T) *model.Checkpoint {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, cfg, err := synth.ShapeConfig(iqShape, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, st, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join("..", "testdata", "models", "stories260k", model.TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, model.TokenizerFile), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// TestIQRecipesLoadInLlamaCpp exports the synthetic checkpoint with every
// i-quant recipe and an importance matrix our calibration collected on it
// (eight 128-token windows of the sample text, lm_head's input too), has
// llama.cpp (node-llama-cpp's libllama, one thread, F32 cache, no flash
// attention) load each file and score two 128-token windows, and compares
// its log-probabilities with ours on the same file (infer.LoadGGUF).
// Every log-probability must be finite on both sides; the bounds on
// |Δ log p| are the measured maxima (0.55, iq2_m) and means (0.045) with a
// margin: ours multiplies the i-quants but IQ4_NL in float32 on
// dequantized weights, llama.cpp on Q8_K-quantized activations
// (docs/PRESETS.md has the table).
func TestIQRecipesLoadInLlamaCpp(t *testing.T) {
	o := llamacpp.Require(t)
	ctx := context.Background()
	ck := iqCheckpoint(t)
	ids, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	const ctxLen, bos = 128, 1
	wins, err := infer.Windows(ids, infer.ProtocolLlamaCpp, ctxLen, bos)
	if err != nil {
		t.Fatal(err)
	}
	m, err := infer.LoadModel(ctx, ck)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := m.Calibrate(ctx, wins[:8], infer.CalibOptions{Head: true})
	if err != nil {
		t.Fatal(err)
	}
	im, err := sums.IMatrix([]string{"tinystories-valid-sample.txt"}, ctxLen)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := gguf.WriteIMatrix(&buf, im); err != nil {
		t.Fatal(err)
	}
	imPath := filepath.Join(t.TempDir(), "imatrix.gguf")
	if err := os.WriteFile(imPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	ref := &shards.IMatrixRef{Location: imPath, SHA256: hex.EncodeToString(sum[:])}

	// Two scored windows from later in the text than the calibration's.
	scored := [][]int32{wins[8].Input, wins[9].Input}
	oracleWindows := make([][]int, len(scored))
	for w, win := range scored {
		for _, id := range win {
			oracleWindows[w] = append(oracleWindows[w], int(id))
		}
	}
	noFlash := false
	var table []string
	// f16, q8_0 and q4_k_m (which multiply in llama.cpp's integer mode on
	// our side too) measure how far the two engines are apart on this
	// model without an i-quant; q4_k_m again with our float32 products
	// (infer.Options.Exact, as the i-quants but IQ4_NL are multiplied)
	// measures what llama.cpp's Q8_K activations alone move.
	cases := []struct {
		name  string
		exact bool
	}{{"f16", false}, {"q8_0", false}, {"q4_k_m", false}, {"q4_k_m", true}}
	for _, name := range iqRecipes {
		cases = append(cases, struct {
			name  string
			exact bool
		}{name, false})
	}
	for _, tc := range cases {
		name := tc.name
		label := name
		if tc.exact {
			label += " (ours float32)"
		}
		t.Run(label, func(t *testing.T) {
			r := recipe(t, name, false)
			r.Imatrix = ref
			dir := t.TempDir()
			out, err := store.NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			sum, _, err := export.RunWeighted(ctx, ck, out, r, im, export.Events{})
			if err != nil {
				t.Fatalf("export %s: %v", name, err)
			}
			resp, err := o.Run(ctx, &llamacpp.Request{
				Model: filepath.Join(dir, export.GGUFKey), ContextSize: ctxLen, Threads: 1,
				KVCacheType: "F32", FlashAttention: &noFlash,
				Score: &llamacpp.Score{Windows: oracleWindows, From: 0},
			})
			if err != nil {
				t.Fatalf("llama.cpp on %s: %v", name, err)
			}
			if len(resp.Score) != len(scored) {
				t.Fatalf("llama.cpp scored %d windows, want %d", len(resp.Score), len(scored))
			}
			g, err := infer.LoadGGUF(ctx, out, export.GGUFKey, infer.Options{Exact: tc.exact})
			if err != nil {
				t.Fatal(err)
			}
			maxD, sumD, sumOurs, sumTheirs, n := 0.0, 0.0, 0.0, 0.0, 0
			for w, win := range scored {
				ours, err := tokenLogProbs(ctx, g, win)
				if err != nil {
					t.Fatal(err)
				}
				theirs := resp.Score[w].LogProbs
				if len(theirs) != len(ours) {
					t.Fatalf("window %d: llama.cpp gave %d log-probs, we %d", w, len(theirs), len(ours))
				}
				for p, lp := range theirs {
					if lp == nil || math.IsNaN(*lp) || math.IsInf(*lp, 0) || math.IsNaN(ours[p]) || math.IsInf(ours[p], 0) {
						t.Fatalf("window %d position %d: log p not finite (llama.cpp %v, ours %v)", w, p, lp, ours[p])
					}
					d := math.Abs(*lp - ours[p])
					maxD = max(maxD, d)
					sumD += d
					sumOurs += ours[p]
					sumTheirs += *lp
					n++
				}
			}
			mean := sumD / float64(n)
			row := fmt.Sprintf("| %s | %.3f | %d | %.4f | %.4f | %.3g | %.3g |", label, sum.BitsPerWeight, n,
				sumTheirs/float64(n), sumOurs/float64(n), maxD, mean)
			table = append(table, row)
			t.Log(row)
			const maxBound, meanBound = 0.8, 0.07
			if maxD > maxBound || mean > meanBound {
				t.Errorf("%s: |Δ log p| max %.3g mean %.3g, bounds %g and %g", name, maxD, mean, maxBound, meanBound)
			}
		})
	}
	t.Logf("\n| recipe | bits/weight | positions | llama.cpp mean log p | ours | max abs Δ | mean abs Δ |\n| --- | --- | --- | --- | --- | --- | --- |\n%s", strings.Join(table, "\n"))
}
