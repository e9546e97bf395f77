package infer_test

import (
	"context"
	"math"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// exportFixture exports the F32 fixture with a recipe into a temp store.
func exportFixture(t *testing.T, recipe string, rot bool) (store.Store, *model.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	src, _ := store.NewLocal("../testdata/models/stories260k")
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := shards.NamedRecipe(recipe)
	if err != nil {
		t.Fatal(err)
	}
	if rot {
		r.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
	}
	out, _ := store.NewLocal(t.TempDir())
	if _, _, err := export.Run(ctx, ck, out, r, export.Events{}); err != nil {
		t.Fatal(err)
	}
	return out, ck
}

// TestGGUFRoundTrip: our own F32 GGUF export (plain and rotated) evaluates
// to the fixture's reference perplexity, and a Q8_0 export stays close with
// a small KL against the original.
func TestGGUFRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates the whole fixture text several times")
	}
	ctx := context.Background()
	ids, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	wins, err := infer.Windows(ids, infer.ProtocolFull, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		recipe   string
		rot      bool
		ppl, tol float64
		maxKL    float64
	}{
		{"f32", false, 6.8144, 0.0005, 1e-6},
		{"f32", true, 6.8144, 0.0005, 1e-5},
		{"q8_0", false, 6.8144, 0.01, 0.002},
		{"q8_0", true, 6.8144, 0.02, 0.002}, // measured 6.8281: the rotation does not help Q8_0 on this 64-wide model
	} {
		out, ck := exportFixture(t, tc.recipe, tc.rot)
		m, err := infer.LoadGGUF(ctx, out, export.GGUFKey, infer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ref, err := infer.LoadModel(ctx, ck)
		if err != nil {
			t.Fatal(err)
		}
		sums, err := infer.Evaluate(ctx, m, wins[:12], infer.EvalOptions{Reference: infer.ModelReference{Model: ref}})
		if err != nil {
			t.Fatal(err)
		}
		res := sums.Result()
		if res.KLMean > tc.maxKL || res.KLMean < 0 {
			t.Errorf("%s rot=%v: KL %.3g > %.3g", tc.recipe, tc.rot, res.KLMean, tc.maxKL)
		}
		full, err := infer.Evaluate(ctx, m, wins, infer.EvalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ppl := full.Result().PPL
		t.Logf("%s rot=%v: PPL %.4f, KL mean %.3g, top-1 %.2f%%", tc.recipe, tc.rot, ppl, res.KLMean, 100*res.Top1)
		if math.Abs(ppl-tc.ppl) > tc.tol {
			t.Errorf("%s rot=%v: PPL %.4f, want %.4f ± %.4f", tc.recipe, tc.rot, ppl, tc.ppl, tc.tol)
		}
	}
}
