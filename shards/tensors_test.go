package shards_test

import (
	"context"
	"testing"

	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
)

// A per-tensor type overrides the preset for that tensor only, is what
// Quantize writes, and changes the key of that tensor's shard only.
func TestRecipeTensorTypes(t *testing.T) {
	ck := fixture(t)
	p := shards.MakePlan(ck)
	base, _ := shards.NamedRecipe("q8_0")
	r := base
	r.Tensors = map[string]quant.Type{"blk.1.attn_v.weight": quant.Q4_0, "token_embd.weight": quant.Q5_0}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	types, err := p.Types(ck, r)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, tt := range types {
		want := quant.Q8_0
		if w, ok := r.Tensors[tt.GGUFName]; ok {
			want, seen = w, seen+1
		}
		if tt.Requested.BlockSize() > 1 && tt.Requested != want {
			t.Errorf("%s: requested %s, want %s", tt.GGUFName, tt.Requested, want)
		}
	}
	if seen != 2 {
		t.Fatalf("saw %d of the 2 overridden tensors", seen)
	}
	for _, s := range p.Shards {
		changed := p.Key(s, r) != p.Key(s, base)
		if want := s.Name == "embed" || s.Name == "layer-001"; changed != want {
			t.Errorf("shard %s: key changed %v, want %v", s.Name, changed, want)
		}
	}
	out, err := shards.Quantize(context.Background(), ck, p.Shards[2], r, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range out.Tensors {
		if res.GGUFName == "blk.1.attn_v.weight" && res.OutputType != "Q4_0" {
			t.Fatalf("%s written as %s, want Q4_0", res.GGUFName, res.OutputType)
		}
	}
	bad := base
	bad.Tensors = map[string]quant.Type{"blk.0.attn_q.weight": quant.Type(9999)}
	if bad.Validate() == nil {
		t.Fatal("invalid per-tensor type accepted")
	}
}
