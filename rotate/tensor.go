package rotate

import (
	"fmt"

	"github.com/ohms-project/adaptq/hadamard"
)

// Kind names the weight matrix given to [RotateTensor].
type Kind int

// The matrices the rotation plan touches.
const (
	KindEmbed Kind = iota
	KindQ
	KindK
	KindV
	KindO
	KindGate
	KindUp
	KindDown
	KindLMHead
)

var kindNames = [...]string{"embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}

// String is the Hugging Face name of the matrix kind.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// RotateTensor applies the rotation plan to one matrix alone, so a worker
// can transform a layer one tensor at a time with one tensor in memory. The
// result is bit-identical to the same matrix after [RotateLayer] (or
// [RotateEmbedding], [RotateHead]) with the same seed and options:
//
//   - q, k, v, gate, up: the norm that feeds them (input_layernorm or
//     post_attention_layernorm) is folded in, then W ← W·Q;
//   - lm_head: the final norm is folded in, then W ← W·Q;
//   - embed_tokens: E ← E·Q (norm must be nil);
//   - o, down: W ← Qᵀ·W (norm must be nil);
//   - with opts.HeadRotation, v's rows (and bias) per kv head become H_g·V_g
//     and o's column blocks per query head O_i·H_gᵀ.
//
// norm is not modified. bias is v's bias (Qwen2), rotated with head
// rotation; other biases are unaffected by the plan and are not passed.
func RotateTensor(kind Kind, m *Matrix, norm, bias []float32, seed uint64, opts Options) error {
	if err := checkMatrix(kind.String(), m); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	folds := kind == KindQ || kind == KindK || kind == KindV || kind == KindGate || kind == KindUp || kind == KindLMHead
	if folds {
		if err := checkInput(kind.String(), m, len(norm)); err != nil {
			return fmt.Errorf("rotate: %s: norm of length %d: %w", kind, len(norm), err)
		}
	} else if norm != nil {
		return fmt.Errorf("rotate: %s reads no norm, got one of length %d", kind, len(norm))
	}
	if bias != nil && (kind != KindV || len(bias) != m.Rows) {
		return fmt.Errorf("rotate: %s: bias of length %d not expected", kind, len(bias))
	}
	d := m.Cols
	if kind == KindO || kind == KindDown {
		d = m.Rows
	}
	q, err := ResidualRotation(seed, d)
	if err != nil {
		return fmt.Errorf("rotate: %s: %w", kind, err)
	}
	var heads []*hadamard.Rotation
	headRot := opts.HeadRotation && (kind == KindV || kind == KindO)
	if headRot {
		if opts.NumHeads <= 0 || opts.NumKVHeads <= 0 || opts.NumHeads%opts.NumKVHeads != 0 {
			return fmt.Errorf("rotate: %s: head rotation needs heads %d divisible by kv heads %d", kind, opts.NumHeads, opts.NumKVHeads)
		}
		var hd int
		if kind == KindV {
			if m.Rows%opts.NumKVHeads != 0 {
				return fmt.Errorf("rotate: v_proj: shape [%d %d] not %d kv heads", m.Rows, m.Cols, opts.NumKVHeads)
			}
			hd = m.Rows / opts.NumKVHeads
		} else {
			if m.Cols%opts.NumHeads != 0 {
				return fmt.Errorf("rotate: o_proj: shape [%d %d] not %d heads", m.Rows, m.Cols, opts.NumHeads)
			}
			hd = m.Cols / opts.NumHeads
		}
		for g := 0; g < opts.NumKVHeads; g++ {
			h, err := HeadRotation(seed, hd, g)
			if err != nil {
				return fmt.Errorf("rotate: %s: %w", kind, err)
			}
			heads = append(heads, h)
		}
	}
	if folds {
		scaleColumns(m, norm)
	}
	switch kind {
	case KindO, KindDown:
		must(q.MulLeftT(m.Data, m.Rows, m.Cols))
	default:
		must(q.MulRight(m.Data, m.Rows, m.Cols))
	}
	if !headRot {
		return nil
	}
	hd := heads[0].N()
	if kind == KindV {
		for g, h := range heads {
			must(h.MulLeft(m.Data[g*hd*m.Cols:(g+1)*hd*m.Cols], hd, m.Cols))
			if bias != nil {
				must(h.Apply(bias[g*hd : (g+1)*hd]))
			}
		}
		return nil
	}
	group := opts.NumHeads / opts.NumKVHeads
	for off := 0; off < len(m.Data); off += m.Cols {
		row := m.Data[off : off+m.Cols]
		for i := 0; i < opts.NumHeads; i++ {
			must(heads[i/group].Apply(row[i*hd : (i+1)*hd]))
		}
	}
	return nil
}

// RotateVBias applies the per-head value rotation to v_proj's bias alone
// (b_g ← H_g·b_g per kv head), as RotateTensor(KindV, ...) does to a bias
// passed with the matrix. Without opts.HeadRotation it does nothing: the
// residual rotation does not touch biases.
func RotateVBias(bias []float32, seed uint64, opts Options) error {
	if !opts.HeadRotation {
		return nil
	}
	if opts.NumKVHeads <= 0 || len(bias)%opts.NumKVHeads != 0 {
		return fmt.Errorf("rotate: v_proj bias of length %d is not %d kv heads", len(bias), opts.NumKVHeads)
	}
	hd := len(bias) / opts.NumKVHeads
	for g := 0; g < opts.NumKVHeads; g++ {
		h, err := HeadRotation(seed, hd, g)
		if err != nil {
			return fmt.Errorf("rotate: v_proj bias: %w", err)
		}
		must(h.Apply(bias[g*hd : (g+1)*hd]))
	}
	return nil
}
