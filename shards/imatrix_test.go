package shards_test

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
)

// testIMatrix is an importance matrix for every weight the fixture's plan
// may describe, with uneven per-column values (so the weighting matters)
// collected, as its metadata says, on the given rotation.
func testIMatrix(t *testing.T, ck *model.Checkpoint, r shards.Recipe) *gguf.IMatrix {
	t.Helper()
	p := shards.MakePlan(ck)
	cols, _, err := p.IMatrixWeights(ck, r)
	if err != nil {
		t.Fatal(err)
	}
	im := &gguf.IMatrix{Datasets: []string{"test"}, ChunkCount: 1, ChunkSize: 64, Entries: map[string]*gguf.IMatrixEntry{}}
	for name, n := range cols {
		e := &gguf.IMatrixEntry{Cols: n, Mats: 1, Sum2: make([]float32, n), Counts: []float32{64}}
		for i := range e.Sum2 {
			e.Sum2[i] = float32(1 + (i*7919+len(name))%29*(i%5))
		}
		im.Entries[name] = e
	}
	if r.Rotation.Enabled() {
		im.Extra = gguf.Metadata{{Key: shards.KeyIMatrixRotation, Value: r.Rotation.ID()}}
	}
	return im
}

// TestIMatrixKey: the shard key follows the importance matrix's checksum,
// not its location.
func TestIMatrixKey(t *testing.T) {
	ck := fixture(t)
	p := shards.MakePlan(ck)
	r, _ := shards.NamedRecipe("q4_k_m")
	s := p.Shards[1]
	a, b, c := r, r, r
	a.Imatrix = &shards.IMatrixRef{Location: "/x/imatrix.gguf", SHA256: "aa"}
	b.Imatrix = &shards.IMatrixRef{Location: "s3://other/copy.gguf", SHA256: "aa"}
	c.Imatrix = &shards.IMatrixRef{Location: "/x/imatrix.gguf", SHA256: "bb"}
	none, ka, kb, kc := p.Key(s, r), p.Key(s, a), p.Key(s, b), p.Key(s, c)
	if ka == none || kc == ka {
		t.Errorf("key does not follow the imatrix: none %s, sha aa %s, sha bb %s", none, ka, kc)
	}
	if ka != kb {
		t.Errorf("key depends on the imatrix's location: %s vs %s", ka, kb)
	}
	if a.Imatrix.Location != "/x/imatrix.gguf" {
		t.Errorf("Key changed the recipe's reference: %+v", a.Imatrix)
	}
}

// TestCheckIMatrix: a matching matrix passes; every kind of mismatch is
// refused with an error naming the entry (or the rotation).
func TestCheckIMatrix(t *testing.T) {
	ck := fixture(t)
	p := shards.MakePlan(ck)
	plain, _ := shards.NamedRecipe("q4_k_m")
	rot := plain
	rot.Rotation = shards.Rotation{Kind: "hadamard", Seed: 3}
	if err := p.CheckIMatrix(ck, plain, testIMatrix(t, ck, plain)); err != nil {
		t.Fatalf("unrotated: %v", err)
	}
	if err := p.CheckIMatrix(ck, rot, testIMatrix(t, ck, rot)); err != nil {
		t.Fatalf("rotated: %v", err)
	}
	const q = "blk.0.attn_q.weight"
	for _, tc := range []struct {
		name   string
		recipe shards.Recipe
		edit   func(im *gguf.IMatrix)
		want   string
	}{
		{"missing weight", plain, func(im *gguf.IMatrix) { delete(im.Entries, q) }, `no entry for weight "blk.0.attn_q.weight"`},
		{"unknown weight", plain, func(im *gguf.IMatrix) { im.Entries["blk.9.attn_q.weight"] = im.Entries[q] }, `"blk.9.attn_q.weight": the model has no such weight`},
		{"token_embd", plain, func(im *gguf.IMatrix) { im.Entries["token_embd.weight"] = im.Entries[q] }, `"token_embd.weight": the model has no such weight`},
		{"columns", plain, func(im *gguf.IMatrix) {
			e := *im.Entries[q]
			e.Cols, e.Sum2 = e.Cols-1, e.Sum2[1:]
			im.Entries[q] = &e
		}, `"blk.0.attn_q.weight": 63 columns, the model's weight has 64`},
		{"NaN", plain, func(im *gguf.IMatrix) { im.Entries[q].Sum2[5] = float32(math.NaN()) }, `"blk.0.attn_q.weight": Σx² of column 5 is NaN`},
		{"negative", plain, func(im *gguf.IMatrix) { im.Entries[q].Sum2[7] = -1 }, `"blk.0.attn_q.weight": Σx² of column 7 is -1`},
		{"zero count", plain, func(im *gguf.IMatrix) { im.Entries[q].Counts[0] = 0 }, `"blk.0.attn_q.weight": token count of matrix 0 is 0`},
		{"overflow", plain, func(im *gguf.IMatrix) {
			im.Entries[q].Sum2[2], im.Entries[q].Counts[0] = math.MaxFloat32, 1e-30
		}, `"blk.0.attn_q.weight": the importance of column 2 overflows`},
		{"experts", plain, func(im *gguf.IMatrix) {
			e := *im.Entries[q]
			e.Mats, e.Sum2, e.Counts = 2, append(append([]float32{}, e.Sum2...), e.Sum2...), []float32{1, 1}
			im.Entries[q] = &e
		}, `"blk.0.attn_q.weight": 2 matrices`},
		{"rotated matrix, plain recipe", plain, func(im *gguf.IMatrix) {
			im.Extra = gguf.Metadata{{Key: shards.KeyIMatrixRotation, Value: rot.Rotation.ID()}}
		}, "collected on a rotated model (hadamard seed=3 heads=false), but the recipe does not rotate"},
		{"plain matrix, rotated recipe", rot, func(im *gguf.IMatrix) { im.Extra = nil }, `collected on the rotation "none", but the recipe rotates with "hadamard seed=3 heads=false"`},
		{"other seed", rot, func(im *gguf.IMatrix) {
			im.Extra = gguf.Metadata{{Key: shards.KeyIMatrixRotation, Value: "hadamard seed=4 heads=false"}}
		}, `collected on the rotation "hadamard seed=4 heads=false"`},
		{"rotation not a string", rot, func(im *gguf.IMatrix) { im.Extra = gguf.Metadata{{Key: shards.KeyIMatrixRotation, Value: uint32(3)}} }, "is uint32, not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := testIMatrix(t, ck, tc.recipe)
			tc.edit(im)
			err := p.CheckIMatrix(ck, tc.recipe, im)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestQuantizeWeighted: with an importance matrix every linear weight is
// the weighted reference quantizer's bytes of the same values (checked
// directly on o_proj, which no permutation or rotation touches), differs
// from the unweighted bytes, and the rest is unchanged; a recipe and an
// importance must come together.
func TestQuantizeWeighted(t *testing.T) {
	ctx := context.Background()
	ck := fixture(t)
	p := shards.MakePlan(ck)
	r, err := shards.NamedRecipe("uniform-q4_0")
	if err != nil {
		t.Fatal(err)
	}
	im := testIMatrix(t, ck, r)
	imp, err := shards.ImportanceOf(im)
	if err != nil {
		t.Fatal(err)
	}
	rw := r
	rw.Imatrix = &shards.IMatrixRef{Location: "mem", SHA256: "test"}
	if _, err := shards.QuantizeWeighted(ctx, ck, p.Shards[1], rw, nil, nil); err == nil {
		t.Error("a recipe naming an imatrix quantized without importance")
	}
	if _, err := shards.QuantizeWeighted(ctx, ck, p.Shards[1], r, imp, nil); err == nil {
		t.Error("importance given to a recipe that names no imatrix")
	}
	differ := 0
	for _, s := range p.Shards {
		plain, err := shards.Quantize(ctx, ck, s, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		weighted, err := shards.QuantizeWeighted(ctx, ck, s, rw, imp, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := shards.Decode(plain.Object.Bytes())
		b, _ := shards.Decode(weighted.Object.Bytes())
		for i, res := range weighted.Tensors {
			_, has := imp[res.GGUFName]
			same := bytes.Equal(a[i].Data, b[i].Data)
			weighs := has && res.OutputType == "Q4_0"
			if weighs && same {
				t.Errorf("%s: weighted bytes equal the unweighted ones", res.GGUFName)
			}
			if !weighs && !same {
				t.Errorf("%s (%s, importance %v): bytes changed", res.GGUFName, res.OutputType, has)
			}
			if weighs {
				differ++
			}
			if res.GGUFName == "blk.0.attn_output.weight" {
				vals, err := ck.ReadFloat32(ctx, res.Tensor)
				if err != nil {
					t.Fatal(err)
				}
				want := make([]byte, len(b[i].Data))
				if err := quant.QuantizeRefWeighted(quant.Q4_0, want, vals, int(res.Shape[1]), imp[res.GGUFName]); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(want, b[i].Data) {
					t.Errorf("%s: not quant.QuantizeRefWeighted's bytes", res.GGUFName)
				}
			}
		}
	}
	// q, k, v, o, gate, up of 5 layers are Q4_0; down (172 columns) is F16.
	if differ != 6*ck.Config.NumLayers {
		t.Errorf("%d weighted tensors, want %d", differ, 6*ck.Config.NumLayers)
	}
}
