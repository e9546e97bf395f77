package shards

import (
	"bytes"
	"context"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

// TestStreamedEqualsWhole: quantizing a tensor streamed in small row blocks
// gives the same bytes and errors as quantizing it whole, for plain,
// rotated, BitNet and optimised recipes (q/k permutation included).
func TestStreamedEqualsWhole(t *testing.T) {
	ctx := context.Background()
	s, _ := store.NewLocal("../testdata/models/stories260k")
	ck, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	p := MakePlan(ck)
	for _, name := range []string{"q4_0", "q8_0", "bitnet", "tq1_0"} {
		for _, rot := range []bool{false, true} {
			r, _ := NamedRecipe(name)
			if rot {
				r.Rotation = Rotation{Kind: "hadamard", Seed: 3}
			}
			r.Optimized = name == "q4_0"
			for _, sh := range []Shard{p.Shards[0], p.Shards[2], p.Shards[len(p.Shards)-1]} {
				jobs, err := shardJobs(ck, sh, r)
				if err != nil {
					t.Fatal(err)
				}
				for _, j := range jobs {
					if !j.rowLocal(r) {
						continue
					}
					a, _, da, err := j.run(ctx, ck, r, nil, 1, false) // one row group per block
					if err != nil {
						t.Fatal(err)
					}
					b, _, db, err := j.run(ctx, ck, r, nil, 0, true)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(da, db) || a.RMSE != b.RMSE && abs(a.RMSE-b.RMSE) > 1e-12*b.RMSE || a.ZeroFrac != b.ZeroFrac {
						t.Fatalf("%s rot=%v %s: streamed differs from whole (rmse %g vs %g)", name, rot, j.name, a.RMSE, b.RMSE)
					}
				}
			}
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
