package infer

import (
	"context"
	"fmt"
	"runtime"

	"github.com/ohms-project/adaptq/hadamard"
	"github.com/ohms-project/adaptq/model"
)

// Layer holds the weights of one decoder layer. Vectors that the
// architecture does not have (biases without attention_bias, QNorm/KNorm
// without qk_norm) are nil.
type Layer struct {
	AttnNorm            []float32 // [hidden]
	Q, K, V, O          Linear    // [q_dim, hidden], [kv_dim, hidden] ×2, [hidden, q_dim]
	QBias, KBias, VBias []float32 // Qwen2: [q_dim], [kv_dim], [kv_dim]
	QNorm, KNorm        []float32 // Qwen3: [head_dim] each
	MLPNorm             []float32 // [hidden]
	Gate, Up, Down      Linear    // [inter, hidden] ×2, [hidden, inter]
}

// Weights are the tensors of a Llama-family model as the forward pass uses
// them. Linear layers may be dense or quantized; the embedding is read one
// row per token through the same interface.
type Weights struct {
	Embed     Linear // [vocab, hidden]
	Layers    []Layer
	FinalNorm []float32 // [hidden]
	LMHead    Linear    // [vocab, hidden]; the same value as Embed when tied
}

// ActQuant configures simulated activation quantization: the input of every
// linear layer of the decoder (q, k, v, o, gate, up, down; not lm_head) is
// quantized per token with a symmetric absmax scale and round-to-nearest.
type ActQuant struct {
	// Bits is 0 (off), 8 or 4. Values are rounded to integers in
	// [-(2^(Bits-1)-1), 2^(Bits-1)-1] with scale absmax/(2^(Bits-1)-1).
	Bits int
	// Hadamard rotates every linear input x by an orthogonal randomised
	// Hadamard matrix Q before quantization and uses the rotated weight
	// W·Qᵀ, so that without quantization the function is unchanged. For a
	// width that is not a power of two, Q is block-diagonal with blocks of
	// the largest power of two dividing the width (see hadamard.New).
	Hadamard bool
	// HadamardSeed seeds the random signs of Q (hadamard.Signs).
	HadamardSeed uint64
}

// Options configure a Model.
type Options struct {
	// Workers is the number of goroutines of the forward pass; 0 means
	// runtime.GOMAXPROCS(0). Results do not depend on it.
	Workers int
	// Act is the simulated activation quantization (off by default).
	Act ActQuant
	// Exact keeps float32 semantics: every linear layer expands its
	// weight rows to float32 and rounds each product to float32 (the
	// results of adaptq before the integer kernels). Without it (the
	// default) quantized weights are multiplied as llama.cpp's CPU backend
	// does: activations quantized per block (Q8_0, Q8_1 or Q8_K) and
	// integer dot products, F16/BF16 weights against activations rounded
	// to that type, fused multiply-adds for float32. Both modes are
	// deterministic; they give different numbers.
	Exact bool
}

// Model is a Llama-family decoder ready to run: its config, weights and
// options. A Model is immutable and safe for concurrent use.
type Model struct {
	cfg  *model.Config
	base *Weights // the weights as given
	w    *Weights // the weights used: base, or rotated copies for Hadamard
	opts Options
	rope *ropeTable
	// rot holds the Hadamard rotations by input width when opts.Act.Hadamard.
	rot map[int]*hadamard.Rotation
}

// Config returns the model's config (shared, do not modify).
func (m *Model) Config() *model.Config { return m.cfg }

// Weights returns the model's weights as given to NewModel, before any
// Hadamard rotation (shared, do not modify).
func (m *Model) Weights() *Weights { return m.base }

// Options returns the model's options.
func (m *Model) Options() Options { return m.opts }

// workers is the effective number of goroutines.
func (m *Model) workers() int {
	if m.opts.Workers > 0 {
		return m.opts.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// LoadModel reads every tensor of ckpt into dense float32 weights (F32, F16
// and BF16 checkpoints) and returns the model with default options. A tied
// lm_head shares the embedding's memory.
func LoadModel(ctx context.Context, ckpt *model.Checkpoint) (*Model, error) {
	cfg := ckpt.Config
	vec := func(role model.Role, layer int, bias bool) ([]float32, error) {
		t, ok := ckpt.Lookup(role, layer, bias)
		if !ok {
			return nil, fmt.Errorf("load model: %s: no %s tensor (layer %d, bias %v)", ckpt.Store.Location(), role, layer, bias)
		}
		v, err := ckpt.ReadFloat32(ctx, t.Name)
		if err != nil {
			return nil, fmt.Errorf("load model: %w", err)
		}
		return v, nil
	}
	lin := func(role model.Role, layer int) (Linear, error) {
		t, ok := ckpt.Lookup(role, layer, false)
		if !ok {
			return nil, fmt.Errorf("load model: %s: no %s weight (layer %d)", ckpt.Store.Location(), role, layer)
		}
		v, err := ckpt.ReadFloat32(ctx, t.Name)
		if err != nil {
			return nil, fmt.Errorf("load model: %w", err)
		}
		d, err := NewDense(int(t.Rows()), int(t.Cols()), v)
		if err != nil {
			return nil, fmt.Errorf("load model: tensor %q: %w", t.Name, err)
		}
		return d, nil
	}
	w := &Weights{Layers: make([]Layer, cfg.NumLayers)}
	var err error
	if w.Embed, err = lin(model.RoleEmbed, -1); err != nil {
		return nil, err
	}
	if w.FinalNorm, err = vec(model.RoleFinalNorm, -1, false); err != nil {
		return nil, err
	}
	if t, ok := ckpt.Lookup(model.RoleLMHead, -1, false); ok && t.Role == model.RoleEmbed {
		w.LMHead = w.Embed
	} else if w.LMHead, err = lin(model.RoleLMHead, -1); err != nil {
		return nil, err
	}
	for l := range w.Layers {
		L := &w.Layers[l]
		vecs := []struct {
			dst  *[]float32
			role model.Role
			bias bool
			want bool
		}{
			{&L.AttnNorm, model.RoleAttnNorm, false, true},
			{&L.MLPNorm, model.RoleMLPNorm, false, true},
			{&L.QBias, model.RoleQ, true, cfg.AttentionBias},
			{&L.KBias, model.RoleK, true, cfg.AttentionBias},
			{&L.VBias, model.RoleV, true, cfg.AttentionBias},
			{&L.QNorm, model.RoleQNorm, false, cfg.QKNorm},
			{&L.KNorm, model.RoleKNorm, false, cfg.QKNorm},
		}
		for _, v := range vecs {
			if !v.want {
				continue
			}
			if *v.dst, err = vec(v.role, l, v.bias); err != nil {
				return nil, err
			}
		}
		lins := []struct {
			dst  *Linear
			role model.Role
		}{
			{&L.Q, model.RoleQ}, {&L.K, model.RoleK}, {&L.V, model.RoleV}, {&L.O, model.RoleO},
			{&L.Gate, model.RoleGate}, {&L.Up, model.RoleUp}, {&L.Down, model.RoleDown},
		}
		for _, li := range lins {
			if *li.dst, err = lin(li.role, l); err != nil {
				return nil, err
			}
		}
	}
	m, err := NewModel(cfg, w, Options{})
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", ckpt.Store.Location(), err)
	}
	return m, nil
}

// NewModel checks the shapes of w against cfg and returns the model. The
// weights are used as they are, not copied.
func NewModel(cfg *model.Config, w *Weights, opts Options) (*Model, error) {
	if err := checkWeights(cfg, w); err != nil {
		return nil, err
	}
	if cfg.RopeScaling != nil && cfg.RopeScaling.Type != "llama3" {
		return nil, fmt.Errorf("infer: rope_scaling type %q is not implemented (only llama3)", cfg.RopeScaling.Type)
	}
	m := &Model{cfg: cfg, base: w, w: w, rope: newRopeTable(cfg)}
	return m.With(opts)
}

// With returns a model sharing m's weights with other options (they
// replace m's options entirely). With Act.Hadamard, the decoder's linear
// weights are replaced by rotated copies (dense weights) or by views that
// rotate each row block as it is read (other Linear implementations); m
// itself is unchanged.
func (m *Model) With(opts Options) (*Model, error) {
	switch opts.Act.Bits {
	case 0, 4, 8:
	default:
		return nil, fmt.Errorf("infer: activation bits %d not supported (0, 4 or 8)", opts.Act.Bits)
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("infer: negative worker count %d", opts.Workers)
	}
	n := &Model{cfg: m.cfg, base: m.base, w: m.base, opts: opts, rope: m.rope}
	if opts.Act.Hadamard {
		w, rot, err := rotateWeights(m.base, opts.Act.HadamardSeed, n.workers())
		if err != nil {
			return nil, err
		}
		n.w, n.rot = w, rot
	}
	return n, nil
}

// checkWeights verifies that every tensor the config needs is present with
// the right shape.
func checkWeights(cfg *model.Config, w *Weights) error {
	h, q, kv, in, v := cfg.HiddenSize, cfg.QDim(), cfg.KVDim(), cfg.IntermediateSize, cfg.VocabSize
	checkLin := func(name string, l Linear, rows, cols int) error {
		if l == nil {
			return fmt.Errorf("infer: weight %s is missing", name)
		}
		if l.Rows() != rows || l.Cols() != cols {
			return fmt.Errorf("infer: weight %s has shape [%d %d], config implies [%d %d]", name, l.Rows(), l.Cols(), rows, cols)
		}
		return nil
	}
	checkVec := func(name string, x []float32, n int, want bool) error {
		if !want {
			if x != nil {
				return fmt.Errorf("infer: vector %s is present but the config does not use it", name)
			}
			return nil
		}
		if len(x) != n {
			return fmt.Errorf("infer: vector %s has %d values, config implies %d", name, len(x), n)
		}
		return nil
	}
	if w == nil {
		return fmt.Errorf("infer: no weights")
	}
	if err := checkLin("embed", w.Embed, v, h); err != nil {
		return err
	}
	if err := checkLin("lm_head", w.LMHead, v, h); err != nil {
		return err
	}
	if err := checkVec("final_norm", w.FinalNorm, h, true); err != nil {
		return err
	}
	if len(w.Layers) != cfg.NumLayers {
		return fmt.Errorf("infer: %d layers, config has %d", len(w.Layers), cfg.NumLayers)
	}
	for l := range w.Layers {
		L := &w.Layers[l]
		p := fmt.Sprintf("layer %d ", l)
		for _, c := range []struct {
			name       string
			lin        Linear
			rows, cols int
		}{
			{"q", L.Q, q, h}, {"k", L.K, kv, h}, {"v", L.V, kv, h}, {"o", L.O, h, q},
			{"gate", L.Gate, in, h}, {"up", L.Up, in, h}, {"down", L.Down, h, in},
		} {
			if err := checkLin(p+c.name, c.lin, c.rows, c.cols); err != nil {
				return err
			}
		}
		for _, c := range []struct {
			name string
			x    []float32
			n    int
			want bool
		}{
			{"attn_norm", L.AttnNorm, h, true}, {"mlp_norm", L.MLPNorm, h, true},
			{"q bias", L.QBias, q, cfg.AttentionBias}, {"k bias", L.KBias, kv, cfg.AttentionBias}, {"v bias", L.VBias, kv, cfg.AttentionBias},
			{"q_norm", L.QNorm, cfg.HeadDim, cfg.QKNorm}, {"k_norm", L.KNorm, cfg.HeadDim, cfg.QKNorm},
		} {
			if err := checkVec(p+c.name, c.x, c.n, c.want); err != nil {
				return err
			}
		}
	}
	return nil
}
