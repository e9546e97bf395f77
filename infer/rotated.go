package infer

import (
	"context"
	"fmt"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/rotate"
)

// WeightsFromRotate wraps the matrices of a rotate.Model (rotated or not)
// as dense Weights, without copying: the Weights share m's storage. A tied
// lm_head stays shared with the embedding.
func WeightsFromRotate(m *rotate.Model) (*Weights, error) {
	if m == nil {
		return nil, fmt.Errorf("infer: weights from rotate: nil model")
	}
	dense := func(name string, x *rotate.Matrix) (Linear, error) {
		if x == nil {
			return nil, fmt.Errorf("infer: weights from rotate: %s is missing", name)
		}
		d, err := NewDense(x.Rows, x.Cols, x.Data)
		if err != nil {
			return nil, fmt.Errorf("infer: weights from rotate: %s: %w", name, err)
		}
		return d, nil
	}
	w := &Weights{FinalNorm: m.FinalNorm, Layers: make([]Layer, len(m.Layers))}
	var err error
	if w.Embed, err = dense("embed", m.Embed); err != nil {
		return nil, err
	}
	if m.LMHead == m.Embed {
		w.LMHead = w.Embed
	} else if w.LMHead, err = dense("lm_head", m.LMHead); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		src, dst := &m.Layers[i], &w.Layers[i]
		*dst = Layer{
			AttnNorm: src.AttnNorm, MLPNorm: src.MLPNorm,
			QBias: src.QBias, KBias: src.KBias, VBias: src.VBias,
			QNorm: src.QNorm, KNorm: src.KNorm,
		}
		for _, c := range []struct {
			name string
			dst  *Linear
			src  *rotate.Matrix
		}{
			{"q", &dst.Q, src.Q}, {"k", &dst.K, src.K}, {"v", &dst.V, src.V}, {"o", &dst.O, src.O},
			{"gate", &dst.Gate, src.Gate}, {"up", &dst.Up, src.Up}, {"down", &dst.Down, src.Down},
		} {
			if *c.dst, err = dense(fmt.Sprintf("layer %d %s", i, c.name), c.src); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// RotatedWeights reads every weight of ckpt, applies the rotation plan that
// precedes quantization (rotate.RotateModel: RMSNorm weights folded into
// the following linear layers, residual stream rotated with seed, a tied
// lm_head untied, and with opts.HeadRotation the per-head value/output
// rotation; head counts default to the config's) and returns the result
// as dense Weights for NewModel(ckpt.Config, w, ...). The rotated model
// computes the same logits as the original up to float32 rounding.
func RotatedWeights(ctx context.Context, ckpt *model.Checkpoint, seed uint64, opts rotate.Options) (*Weights, error) {
	rm, err := rotate.ReadModel(ctx, ckpt)
	if err != nil {
		return nil, fmt.Errorf("infer: rotated weights: %w", err)
	}
	if err := rotate.RotateModel(rm, seed, opts); err != nil {
		return nil, fmt.Errorf("infer: rotated weights of %s: %w", ckpt.Store.Location(), err)
	}
	return WeightsFromRotate(rm)
}
