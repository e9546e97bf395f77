package rotate

import (
	"context"
	"fmt"

	// Aliased: the package tests declare a type named model.
	hfmodel "github.com/ohms-project/adaptq/model"
)

// readMatrix reads the weight of a role (layer -1 for the embedding and
// lm_head) as a float32 matrix.
func readMatrix(ctx context.Context, ckpt *hfmodel.Checkpoint, role hfmodel.Role, layer int) (*Matrix, error) {
	t, ok := ckpt.Lookup(role, layer, false)
	if !ok {
		return nil, fmt.Errorf("%s: no %s weight (layer %d)", ckpt.Store.Location(), role, layer)
	}
	v, err := ckpt.ReadFloat32(ctx, t.Name)
	if err != nil {
		return nil, err
	}
	m := &Matrix{Rows: int(t.Rows()), Cols: int(t.Cols()), Data: v}
	if err := checkMatrix(t.Name, m); err != nil {
		return nil, err
	}
	return m, nil
}

// readVector reads a norm weight or a bias; want false gives nil without
// reading.
func readVector(ctx context.Context, ckpt *hfmodel.Checkpoint, role hfmodel.Role, layer int, bias, want bool) ([]float32, error) {
	if !want {
		return nil, nil
	}
	t, ok := ckpt.Lookup(role, layer, bias)
	if !ok {
		return nil, fmt.Errorf("%s: no %s tensor (layer %d, bias %v)", ckpt.Store.Location(), role, layer, bias)
	}
	return ckpt.ReadFloat32(ctx, t.Name)
}

// ReadLayer reads decoder layer l of a checkpoint (F32, F16 or BF16) as
// float32: norms, projections, the q/k/v biases when the config has
// attention_bias and the q/k norms when it has qk_norm. The result is
// unrotated; pass it to [RotateLayer].
func ReadLayer(ctx context.Context, ckpt *hfmodel.Checkpoint, l int) (*Layer, error) {
	cfg := ckpt.Config
	if l < 0 || l >= cfg.NumLayers {
		return nil, fmt.Errorf("rotate: read layer %d: the model has %d layers", l, cfg.NumLayers)
	}
	var L Layer
	var err error
	for _, c := range []struct {
		dst  **Matrix
		role hfmodel.Role
	}{
		{&L.Q, hfmodel.RoleQ}, {&L.K, hfmodel.RoleK}, {&L.V, hfmodel.RoleV}, {&L.O, hfmodel.RoleO},
		{&L.Gate, hfmodel.RoleGate}, {&L.Up, hfmodel.RoleUp}, {&L.Down, hfmodel.RoleDown},
	} {
		if *c.dst, err = readMatrix(ctx, ckpt, c.role, l); err != nil {
			return nil, fmt.Errorf("rotate: read layer %d: %w", l, err)
		}
	}
	for _, c := range []struct {
		dst  *[]float32
		role hfmodel.Role
		bias bool
		want bool
	}{
		{&L.AttnNorm, hfmodel.RoleAttnNorm, false, true},
		{&L.MLPNorm, hfmodel.RoleMLPNorm, false, true},
		{&L.QBias, hfmodel.RoleQ, true, cfg.AttentionBias},
		{&L.KBias, hfmodel.RoleK, true, cfg.AttentionBias},
		{&L.VBias, hfmodel.RoleV, true, cfg.AttentionBias},
		{&L.QNorm, hfmodel.RoleQNorm, false, cfg.QKNorm},
		{&L.KNorm, hfmodel.RoleKNorm, false, cfg.QKNorm},
	} {
		if *c.dst, err = readVector(ctx, ckpt, c.role, l, c.bias, c.want); err != nil {
			return nil, fmt.Errorf("rotate: read layer %d: %w", l, err)
		}
	}
	if _, err := L.validate(Options{}); err != nil {
		return nil, fmt.Errorf("rotate: read layer %d of %s: %w", l, ckpt.Store.Location(), err)
	}
	return &L, nil
}

// ReadModel reads every weight of a checkpoint as float32 into a Model.
// With tied embeddings LMHead is the same *Matrix as Embed. The result is
// unrotated; pass it to [RotateModel]. It holds the whole model in memory
// as float32 (4 bytes per parameter); a distributed pipeline reads one
// layer at a time with [ReadLayer] instead.
func ReadModel(ctx context.Context, ckpt *hfmodel.Checkpoint) (*Model, error) {
	cfg := ckpt.Config
	m := &Model{Layers: make([]Layer, cfg.NumLayers), NumHeads: cfg.NumHeads, NumKVHeads: cfg.NumKVHeads}
	var err error
	if m.Embed, err = readMatrix(ctx, ckpt, hfmodel.RoleEmbed, -1); err != nil {
		return nil, fmt.Errorf("rotate: read model: %w", err)
	}
	if t, ok := ckpt.Lookup(hfmodel.RoleLMHead, -1, false); ok && t.Role == hfmodel.RoleEmbed {
		m.LMHead = m.Embed
	} else if m.LMHead, err = readMatrix(ctx, ckpt, hfmodel.RoleLMHead, -1); err != nil {
		return nil, fmt.Errorf("rotate: read model: %w", err)
	}
	if m.FinalNorm, err = readVector(ctx, ckpt, hfmodel.RoleFinalNorm, -1, false, true); err != nil {
		return nil, fmt.Errorf("rotate: read model: %w", err)
	}
	for l := range m.Layers {
		L, err := ReadLayer(ctx, ckpt, l)
		if err != nil {
			return nil, err
		}
		m.Layers[l] = *L
	}
	if err := m.validate(Options{}); err != nil {
		return nil, fmt.Errorf("rotate: read model %s: %w", ckpt.Store.Location(), err)
	}
	return m, nil
}
