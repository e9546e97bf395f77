package synth_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// TestNamedShapes: every named architecture parses and has the tensor
// shapes of the real model (parameter counts of the published checkpoints).
func TestNamedShapes(t *testing.T) {
	want := map[string]int64{
		"llama-2-7b":   6738415616,
		"llama-3-8b":   8030261248,
		"llama-3.1-8b": 8030261248,
		"llama-3-70b":  70553706496,
		"qwen2.5-0.5b": 494032768,
	}
	for _, name := range synth.Shapes() {
		_, cfg, err := synth.ShapeConfig(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, ref := range cfg.ExpectedTensors() {
			e := int64(1)
			for _, d := range cfg.ExpectedShape(ref.Role, ref.Bias) {
				e *= d
			}
			n += e
		}
		if n != want[name] {
			t.Errorf("%s: %d parameters, want %d", name, n, want[name])
		}
	}
	if _, _, err := synth.ShapeConfig("gpt-5", 0); err == nil {
		t.Error("unknown shape accepted")
	}
}

const tinyShape = `{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":300}`

// TestWriteDeterministicSharded: the same seed gives the same bytes, the
// checkpoint opens, splits into shards, and the values look as documented.
func TestWriteDeterministicSharded(t *testing.T) {
	ctx := context.Background()
	write := func(seed uint64) (*model.Checkpoint, store.Store) {
		raw, cfg, err := synth.ShapeConfig(tinyShape, 3)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := store.NewLocal(t.TempDir())
		if err := synth.Write(ctx, s, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: seed, MaxShardBytes: 40000}); err != nil {
			t.Fatal(err)
		}
		ck, err := model.Open(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return ck, s
	}
	a, sa := write(7)
	_, sb := write(7)
	c, _ := write(8)
	if len(a.Files) < 2 || a.Config.NumLayers != 3 {
		t.Fatalf("files %d, layers %d", len(a.Files), a.Config.NumLayers)
	}
	for _, f := range a.Files {
		x, _ := store.ReadAll(ctx, sa, f.Name)
		y, _ := store.ReadAll(ctx, sb, f.Name)
		if !bytes.Equal(x, y) {
			t.Fatalf("%s differs between two runs with one seed", f.Name)
		}
	}
	q := "model.layers.1.self_attn.q_proj.weight"
	va, _ := a.ReadFloat32(ctx, q)
	vc, _ := c.ReadFloat32(ctx, q)
	if slices.Equal(va, vc) {
		t.Fatal("different seeds gave the same weights")
	}
	st, err := a.ScanStats(ctx, "model.layers.0.mlp.up_proj.weight")
	if err != nil || st.NaN+st.Inf != 0 || st.RMS < 0.015 || st.RMS > 0.05 {
		t.Fatalf("up_proj stats %+v %v", st, err)
	}
	n, _ := a.ScanStats(ctx, "model.norm.weight")
	if n.AbsMean < 0.8 || n.AbsMean > 1.2 {
		t.Fatalf("norm stats %+v", n)
	}
}
