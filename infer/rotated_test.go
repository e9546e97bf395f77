package infer

import (
	"context"
	"math"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/rotate"
	"github.com/ohms-project/adaptq/store"
)

// openFixture opens a checkpoint directory without loading it.
func openFixture(tb testing.TB, dir string) *model.Checkpoint {
	tb.Helper()
	s, err := store.NewLocal(dir)
	if err != nil {
		tb.Fatal(err)
	}
	ck, err := model.Open(context.Background(), s)
	if err != nil {
		tb.Fatal(err)
	}
	return ck
}

// windowRelErr is the relative error of one window's logits:
// max_i |got_i − want_i| / max_i |want_i| over every position and vocab
// entry of the window.
func windowRelErr(got, want []float32) float64 {
	var diff, scale float64
	for i, w := range want {
		diff = max(diff, math.Abs(float64(got[i])-float64(w)))
		scale = max(scale, math.Abs(float64(w)))
	}
	return diff / scale
}

// TestRotatedModelInvariance builds the rotated fixture (norms folded,
// residual stream rotated, lm_head untied and rotated, optionally per-head
// V/O rotation) and checks that its logits equal the original's: per
// window, max|Δlogit| / max|logit| ≤ 1e-4. One case also checks that the
// rotated model's perplexity is the fixture's 6.8144.
func TestRotatedModelInvariance(t *testing.T) {
	ck := openFixture(t, fixtureF32)
	orig := loadFixture(t, fixtureF32)
	all := fixtureWindows(t, ProtocolFull, 256)
	probe := []Window{all[0], all[17], all[59]}
	cases := []struct {
		name string
		seed uint64
		opts rotate.Options
		ppl  bool
	}{
		{"residual seed 1", 1, rotate.Options{}, false},
		{"residual+heads seed 1", 1, rotate.Options{HeadRotation: true}, true},
		{"residual+heads seed 7", 7, rotate.Options{HeadRotation: true}, false},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := RotatedWeights(ctx, ck, c.seed, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if w.LMHead == w.Embed {
				t.Fatal("the rotated model's lm_head is still tied to the embedding")
			}
			for i, g := range w.FinalNorm {
				if g != 1 {
					t.Fatalf("final norm[%d] = %g after folding, want 1", i, g)
				}
			}
			m, err := NewModel(ck.Config, w, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, win := range probe {
				want, err := orig.Forward(ctx, win.Input)
				if err != nil {
					t.Fatal(err)
				}
				got, err := m.Forward(ctx, win.Input)
				if err != nil {
					t.Fatal(err)
				}
				rel := windowRelErr(got, want)
				t.Logf("window %d: max|Δ|/max|logit| = %.3g", win.Index, rel)
				if rel > 1e-4 {
					t.Errorf("window %d: relative error %.3g > 1e-4", win.Index, rel)
				}
			}
			if !c.ppl {
				return
			}
			r := evaluate(t, m, all, EvalOptions{Reference: ModelReference{orig}}).Result()
			t.Logf("rotated: PPL %.5f (original %.5f, ratio %.8f), KL mean %.3g max %.3g, top-1 %.5f",
				r.PPL, r.RefPPL, r.PPLRatio, r.KLMean, r.KLMax, r.Top1)
			if math.Abs(r.PPL-6.8144) > 0.0005 || math.Abs(r.PPLRatio-1) > 1e-5 {
				t.Errorf("rotated PPL %.6f (ratio %.8f to the original), want 6.8144 and ratio 1 ± 1e-5", r.PPL, r.PPLRatio)
			}
			if r.KLMax > 1e-6 {
				t.Errorf("KL max %.3g between the rotated and the original model", r.KLMax)
			}
		})
	}
}

// TestWeightsFromRotateUnrotated checks the bridge without rotation: the
// weights read by rotate.ReadModel give exactly LoadModel's logits.
func TestWeightsFromRotateUnrotated(t *testing.T) {
	ctx := context.Background()
	for _, dir := range []string{fixtureF32, fixtureBF16} {
		ck := openFixture(t, dir)
		rm, err := rotate.ReadModel(ctx, ck)
		if err != nil {
			t.Fatal(err)
		}
		w, err := WeightsFromRotate(rm)
		if err != nil {
			t.Fatal(err)
		}
		if w.LMHead != w.Embed {
			t.Errorf("%s: tied lm_head not shared", dir)
		}
		m, err := NewModel(ck.Config, w, Options{})
		if err != nil {
			t.Fatal(err)
		}
		in := fixtureWindows(t, ProtocolFull, 64)[0].Input
		got, err := m.Forward(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		want, err := loadFixture(t, dir).Forward(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if windowRelErr(got, want) != 0 {
			t.Errorf("%s: logits differ from LoadModel's", dir)
		}
	}
	if _, err := WeightsFromRotate(&rotate.Model{}); err == nil {
		t.Error("empty model: no error")
	}
}
