package shards_test

import (
	"context"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

func fixture(t testing.TB) *model.Checkpoint {
	s, _ := store.NewLocal("../testdata/models/stories260k")
	ck, err := model.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func TestPlanAndKeys(t *testing.T) {
	ck := fixture(t)
	p := shards.MakePlan(ck)
	if len(p.Shards) != 7 || p.Shards[0].Name != "embed" || p.Shards[6].Name != "head" || p.Shards[3].Name != "layer-002" {
		t.Fatalf("plan %+v", p.Shards)
	}
	total := 0
	for _, s := range p.Shards {
		total += len(s.Tensors)
	}
	if total != len(ck.Tensors) {
		t.Fatalf("plan covers %d of %d tensors", total, len(ck.Tensors))
	}
	r, _ := shards.NamedRecipe("q4_k_m")
	r2 := r
	r2.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
	k1, k2 := p.Key(p.Shards[1], r), p.Key(p.Shards[1], r2)
	if k1 == k2 || k1 != p.Key(p.Shards[1], r) || p.Key(p.Shards[2], r) == k1 {
		t.Fatalf("keys not derived from their inputs: %s %s", k1, k2)
	}
}

// TestQuantizeFixture runs every shard of the fixture through the pipeline
// and checks the fallbacks, the measured sizes and errors, and the objects.
func TestQuantizeFixture(t *testing.T) {
	ck := fixture(t)
	p := shards.MakePlan(ck)
	for _, tc := range []struct {
		recipe string
		rot    bool
		maxRel float64
		// output types expected for a 64-column matrix, the 172-column
		// down_proj, the embedding and lm_head (a tied embedding is the
		// head: the rotation unties it)
		t64, t172, emb, head string
	}{
		{"q8_0", false, 0.01, "Q8_0", "F16", "Q8_0", "Q8_0"},
		{"uniform-q4_k", false, 0.12, "Q5_0", "F16", "Q8_0", "Q8_0"},
		{"uniform-q4_k", true, 0.12, "Q5_0", "F16", "Q5_0", "Q8_0"},
		{"uniform-q4_0", true, 0.2, "Q4_0", "F16", "Q4_0", "Q4_0"},
		{"f32", true, 0, "F32", "F32", "F32", "F32"},
	} {
		r, err := shards.NamedRecipe(tc.recipe)
		if err != nil {
			t.Fatal(err)
		}
		if tc.rot {
			r.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
		}
		var outputs int
		for _, s := range p.Shards {
			out, err := shards.Quantize(context.Background(), ck, s, r, nil)
			if err != nil {
				t.Fatalf("%s rot=%v %s: %v", tc.recipe, tc.rot, s.Name, err)
			}
			back, err := shards.Decode(out.Object.Bytes())
			if err != nil || len(back) != len(out.Tensors) {
				t.Fatalf("%s: decode: %v", s.Name, err)
			}
			for i, res := range out.Tensors {
				outputs++
				if int64(len(back[i].Data)) != res.Bytes || back[i].Name != res.GGUFName {
					t.Fatalf("%s: entry %d: %s %d bytes vs %+v", s.Name, i, back[i].Name, len(back[i].Data), res)
				}
				if res.RelError > tc.maxRel {
					t.Errorf("%s rot=%v %s: relative error %.4f > %.4f", tc.recipe, tc.rot, res.Tensor, res.RelError, tc.maxRel)
				}
				want := ""
				switch {
				case res.Role == "down":
					want = tc.t172
				case res.Role == "embed":
					want = tc.emb
				case res.Role == "lm_head":
					want = tc.head
				case res.Role == "q" || res.Role == "k" || res.Role == "v" || res.Role == "o" || res.Role == "gate" || res.Role == "up":
					want = tc.t64
				default:
					want = "F32" // norms
				}
				if res.OutputType != want {
					t.Errorf("%s rot=%v %s: type %s, want %s (requested %s)", tc.recipe, tc.rot, res.Tensor, res.OutputType, want, res.RequestedType)
				}
				if res.Role == "attn_norm" && tc.rot && res.RMSE != 0 {
					t.Errorf("folded norm not exactly ones: rmse %g", res.RMSE)
				}
			}
		}
		want := len(ck.Tensors)
		if tc.rot {
			want++ // the untied lm_head
		}
		if outputs != want {
			t.Errorf("%s rot=%v: %d output tensors, want %d", tc.recipe, tc.rot, outputs, want)
		}
	}
}
