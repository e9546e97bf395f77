package rotate

import (
	"context"
	"slices"
	"testing"

	hfmodel "github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

// mtOpen opens a fixture checkpoint directory.
func mtOpen(t *testing.T, dir string) *hfmodel.Checkpoint {
	t.Helper()
	s, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := hfmodel.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// mtEqual reports whether two models hold the same values.
func mtEqual(a, b *Model) bool {
	mat := func(x, y *Matrix) bool {
		return x.Rows == y.Rows && x.Cols == y.Cols && slices.Equal(x.Data, y.Data)
	}
	if !mat(a.Embed, b.Embed) || !mat(a.LMHead, b.LMHead) || !slices.Equal(a.FinalNorm, b.FinalNorm) || len(a.Layers) != len(b.Layers) {
		return false
	}
	for i := range a.Layers {
		x, y := &a.Layers[i], &b.Layers[i]
		if !slices.Equal(x.AttnNorm, y.AttnNorm) || !slices.Equal(x.MLPNorm, y.MLPNorm) {
			return false
		}
		for j, m := range []*Matrix{x.Q, x.K, x.V, x.O, x.Gate, x.Up, x.Down} {
			if !mat(m, []*Matrix{y.Q, y.K, y.V, y.O, y.Gate, y.Up, y.Down}[j]) {
				return false
			}
		}
	}
	return true
}

// TestReadModelFixture reads both fixture copies (F32 and sharded BF16).
func TestReadModelFixture(t *testing.T) {
	ctx := context.Background()
	for _, dir := range []string{"../testdata/models/stories260k", "../testdata/models/stories260k-bf16-sharded"} {
		ck := mtOpen(t, dir)
		m, err := ReadModel(ctx, ck)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Tied() || len(m.Layers) != 5 || m.Embed.Rows != 512 || m.Embed.Cols != 64 ||
			m.Layers[4].Down.Rows != 64 || m.Layers[4].Down.Cols != 172 || m.NumHeads != 8 || m.NumKVHeads != 4 {
			t.Errorf("%s: unexpected model: tied %v, %d layers, embed [%d %d]", dir, m.Tied(), len(m.Layers), m.Embed.Rows, m.Embed.Cols)
		}
		if _, err := ReadLayer(ctx, ck, 5); err == nil {
			t.Errorf("%s: reading layer 5 of 5 succeeded", dir)
		}
	}
}

// TestRotateModel checks untying, folding and that invalid models are
// refused without being modified.
func TestRotateModel(t *testing.T) {
	base, err := ReadModel(context.Background(), mtOpen(t, "../testdata/models/stories260k"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		mutate  func(m *Model)
		opts    Options
		wantErr bool
	}{
		{"tied", func(*Model) {}, Options{}, false},
		{"tied heads", func(*Model) {}, Options{HeadRotation: true}, false},
		{"untied", func(m *Model) { m.LMHead = m.Embed.Clone() }, Options{}, false},
		{"lm_head width", func(m *Model) { m.LMHead = NewMatrix(512, 32) }, Options{}, true},
		{"layer width", func(m *Model) { m.Layers[3].Up = NewMatrix(172, 32) }, Options{}, true},
		{"bad heads", func(*Model) {}, Options{HeadRotation: true, NumHeads: 8, NumKVHeads: 3}, true},
		{"no layers", func(m *Model) { m.Layers = nil }, Options{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base.Clone()
			if !m.Tied() {
				t.Fatal("Clone untied the head")
			}
			c.mutate(m)
			before := m.Clone()
			err := RotateModel(m, 1, c.opts)
			if c.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if !mtEqual(m, before) {
					t.Error("model modified on error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Tied() {
				t.Error("lm_head still tied after rotation")
			}
			for _, g := range [][]float32{m.FinalNorm, m.Layers[0].AttnNorm, m.Layers[4].MLPNorm} {
				if slices.ContainsFunc(g, func(v float32) bool { return v != 1 }) {
					t.Error("a norm weight is not 1 after folding")
				}
			}
			// The embedding alone is E·Q: RotateEmbedding of the original.
			e := base.Embed.Clone()
			if err := RotateEmbedding(e, 1); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(e.Data, m.Embed.Data) {
				t.Error("embedding differs from RotateEmbedding's")
			}
		})
	}
}
