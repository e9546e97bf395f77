package infer

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/kernels"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// quantizedWeights returns w with every linear layer (and lm_head, not the
// embedding) quantized to typ with the reference quantizer.
func quantizedWeights(tb testing.TB, w *Weights, typ quant.Type) *Weights {
	tb.Helper()
	q := func(l Linear) Linear {
		d := l.(*Dense)
		rb, err := typ.RowSize(d.cols)
		if err != nil {
			tb.Fatal(err)
		}
		b := make([]byte, d.rows*rb)
		if err := quant.QuantizeRef(typ, b, d.data, d.cols); err != nil {
			tb.Fatal(err)
		}
		ql, err := NewQuantized(typ, d.rows, d.cols, b)
		if err != nil {
			tb.Fatal(err)
		}
		return ql
	}
	out := *w
	out.Layers = slices.Clone(w.Layers)
	for l := range out.Layers {
		L := &out.Layers[l]
		for _, p := range []*Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			*p = q(*p)
		}
	}
	out.LMHead = q(w.LMHead)
	return &out
}

// intConfig is a small model whose every width is a multiple of 256, so
// that every integer kernel applies.
func intConfig() *model.Config {
	return &model.Config{
		ModelType: "llama", HiddenSize: 256, IntermediateSize: 512, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 64, VocabSize: 96,
		RMSNormEps: 1e-5, RopeTheta: 10000,
	}
}

// TestIntegerModeDeterministic checks, for every weight type with an
// integer kernel that the quant package can write and for F16, that the
// default (integer) mode gives bit-identical logits for 1, 2 and 3 workers
// and token by token through the key/value cache, and that it stays close
// to the exact float32 mode.
func TestIntegerModeDeterministic(t *testing.T) {
	cfg := intConfig()
	dense := synthWeights(cfg, 3)
	toks := []int32{1, 7, 30, 2, 95, 44, 0, 3, 12, 61, 5}
	ctx := context.Background()
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.TQ2_0, quant.F16, quant.BF16} {
		if _, ok := kernels.ActFor(typ); !ok && typ != quant.F16 && typ != quant.BF16 {
			t.Fatalf("%s has no integer kernel", typ)
		}
		w := quantizedWeights(t, dense, typ)
		var first []float32
		for _, workers := range []int{1, 2, 3} {
			m, err := NewModel(cfg, w, Options{Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Forward(ctx, toks)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = got
				continue
			}
			if !slices.Equal(first, got) {
				t.Errorf("%s: logits with %d workers differ from 1 worker", typ, workers)
			}
		}
		// Token by token through the cache: the last row of each step must
		// equal Forward's row for that position.
		m, err := NewModel(cfg, w, Options{Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		cache := newKVCache(cfg.NumLayers, cfg.KVDim())
		V := cfg.VocabSize
		for i, tok := range toks {
			row, err := m.forward(ctx, []int32{tok}, cache, true)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(row, first[i*V:(i+1)*V]) {
				t.Fatalf("%s: cached step %d differs from Forward", typ, i)
			}
		}
		ex, err := NewModel(cfg, w, Options{Exact: true})
		if err != nil {
			t.Fatal(err)
		}
		exact, err := ex.Forward(ctx, toks)
		if err != nil {
			t.Fatal(err)
		}
		var worst, scale float64
		for i := range exact {
			worst = max(worst, math.Abs(float64(exact[i]-first[i])))
			scale = max(scale, math.Abs(float64(exact[i])))
		}
		t.Logf("%s: max |Δlogit| integer vs exact %.3g (max |logit| %.3g)", typ, worst, scale)
		if worst == 0 && typ != quant.F16 && typ != quant.BF16 {
			t.Errorf("%s: integer mode equals exact mode exactly: the integer kernels did not run", typ)
		}
		if worst > 0.05*scale {
			t.Errorf("%s: integer mode differs from exact mode by %g (max |logit| %g)", typ, worst, scale)
		}
	}
}
