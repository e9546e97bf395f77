package shards_test

import (
	"context"
	"math"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// synthCheckpoint writes a one-layer synthetic Llama whose rows are 256 or
// 512 long (every type fits) into a temporary local store.
func synthCheckpoint(t *testing.T) *model.Checkpoint {
	t.Helper()
	ctx := context.Background()
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":256,"intermediate_size":512,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":300}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, s, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// TestBitNetRecipe runs the bitnet recipe on the synthetic checkpoint: the
// linear layers come out as TQ2_0 with one scale per tensor (every decoded
// value is 0 or ±d with the same d), and their zero fraction and trit
// entropy are reported and plausible; the embedding and head keep their
// K-quant types and report no trit statistics.
func TestBitNetRecipe(t *testing.T) {
	ck := synthCheckpoint(t)
	p := shards.MakePlan(ck)
	for _, rot := range []bool{false, true} {
		r, err := shards.NamedRecipe("bitnet")
		if err != nil {
			t.Fatal(err)
		}
		if rot {
			r.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
		}
		var ternary int
		for _, s := range p.Shards {
			out, err := shards.Quantize(context.Background(), ck, s, r, nil)
			if err != nil {
				t.Fatalf("rot=%v %s: %v", rot, s.Name, err)
			}
			back, err := shards.Decode(out.Object.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			for i, res := range out.Tensors {
				role, _ := model.ParseRole(res.Role)
				if !role.IsLinear() || role == model.RoleLMHead {
					if res.ZeroFrac != 0 || res.TritEntropy != 0 {
						t.Errorf("rot=%v %s (%s): trit statistics on a non-ternary tensor", rot, res.Tensor, res.OutputType)
					}
					continue
				}
				ternary++
				if res.OutputType != "TQ2_0" {
					t.Errorf("rot=%v %s: output type %s, want TQ2_0 (shape %v)", rot, res.Tensor, res.OutputType, res.Shape)
					continue
				}
				if res.ZeroFrac < 0.2 || res.ZeroFrac > 0.45 || res.TritEntropy < 1.3 || res.TritEntropy > math.Log2(3) {
					t.Errorf("rot=%v %s: zero fraction %.3f, entropy %.3f bits", rot, res.Tensor, res.ZeroFrac, res.TritEntropy)
				}
				cols := int(res.Shape[len(res.Shape)-1])
				vals := make([]float32, len(back[i].Data)/66*256)
				if err := quant.Dequantize(quant.TQ2_0, vals, back[i].Data, cols); err != nil {
					t.Fatal(err)
				}
				var d float32
				var zeros int
				for _, v := range vals {
					a := float32(math.Abs(float64(v)))
					switch {
					case a == 0:
						zeros++
					case d == 0:
						d = a
					case a != d:
						t.Fatalf("rot=%v %s: decoded magnitudes %g and %g: not one scale per tensor", rot, res.Tensor, d, a)
					}
				}
				if zf := float64(zeros) / float64(len(vals)); math.Abs(zf-res.ZeroFrac) > 1e-9 {
					t.Errorf("rot=%v %s: %.4f zeros decoded, %.4f reported", rot, res.Tensor, zf, res.ZeroFrac)
				}
				t.Logf("rot=%v %-40s %s zeros %.3f entropy %.3f bits rel.err %.3f", rot, res.Tensor, res.OutputType, res.ZeroFrac, res.TritEntropy, res.RelError)
			}
		}
		if ternary != 7 {
			t.Errorf("rot=%v: %d ternary tensors, want 7", rot, ternary)
		}
	}
}

// TestOptimizedRecipe quantizes the fixture with and without Optimized:
// every tensor's error is at most the reference's, and lower in total.
func TestOptimizedRecipe(t *testing.T) {
	ck := fixture(t)
	p := shards.MakePlan(ck)
	for _, name := range []string{"q4_k", "q4_0", "tq2_0"} {
		for _, rot := range []bool{false, true} {
			r, err := shards.NamedRecipe(name)
			if err != nil {
				t.Fatal(err)
			}
			if rot {
				r.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
			}
			ro := r
			ro.Optimized = true
			var seRef, seOpt float64
			for _, s := range p.Shards {
				a, err := shards.Quantize(context.Background(), ck, s, r, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, err := shards.Quantize(context.Background(), ck, s, ro, nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := range a.Tensors {
					ra, rb := a.Tensors[i], b.Tensors[i]
					if ra.OutputType != rb.OutputType || ra.Bytes != rb.Bytes {
						t.Fatalf("%s: optimized changed the type or size: %+v vs %+v", ra.Tensor, ra, rb)
					}
					if rb.RMSE > ra.RMSE*(1+1e-9) {
						t.Errorf("%s rot=%v %s: optimized RMSE %.6g above the reference's %.6g", name, rot, ra.Tensor, rb.RMSE, ra.RMSE)
					}
					if (ra.OutputType == "TQ2_0") != (rb.TritEntropy > 0) {
						t.Errorf("%s rot=%v %s: trit statistics %+v", name, rot, ra.Tensor, rb)
					}
					n := float64(ra.Shape[0])
					if len(ra.Shape) == 2 {
						n *= float64(ra.Shape[1])
					}
					seRef += ra.RMSE * ra.RMSE * n
					seOpt += rb.RMSE * rb.RMSE * n
				}
			}
			if !(seOpt < seRef) {
				t.Errorf("%s rot=%v: optimized total squared error %.6g not below %.6g", name, rot, seOpt, seRef)
			}
			t.Logf("%s rot=%v: total squared error %.6g → %.6g", name, rot, seRef, seOpt)
		}
	}
}
