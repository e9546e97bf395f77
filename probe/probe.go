// Package probe measures what quantizing one tensor costs a model, the
// inputs of a budgeted allocation (package budget):
//
//   - Errors: the importance-weighted relative squared error of a tensor at
//     every candidate type, err = Σ_j imp_j Σ_i (w_ij − ŵ_ij)² /
//     Σ_j imp_j Σ_i w_ij² (columns j, rows i; imp = 1 without an
//     importance matrix), and its size in bytes;
//   - Prober.KLD: the mean KL divergence of the model's next-token
//     distribution from the original's when that tensor alone is replaced
//     by its dequantized values, measured by the forward pass on a text.
//
// Both work on one tensor at a time, so a fleet can spread them; the
// results are plain values that package budget fits and allocates.
package probe

import (
	"context"
	"fmt"
	"slices"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// DefaultTypes are the candidate types of a budget, from the fewest bits
// to the most: the K-quants, the legacy types and IQ4_NL, then Q8_0 and
// F16. A tensor's candidates are those whose blocks hold its rows.
var DefaultTypes = []quant.Type{
	quant.Q2_K, quant.Q3_K, quant.Q4_0, quant.IQ4_NL, quant.Q4_K, quant.Q4_1,
	quant.Q5_0, quant.Q5_K, quant.Q5_1, quant.Q6_K, quant.Q8_0, quant.F16,
}

// Point is one candidate type of a tensor, measured.
type Point struct {
	Type  quant.Type `json:"type"`
	Bytes int64      `json:"bytes"`
	// Err is the importance-weighted relative squared error (see the
	// package comment); 0 for a lossless type.
	Err float64 `json:"err"`
}

// Errors quantizes a tensor (rows × cols values, row-major) to every type
// of types whose blocks hold a row of cols values and measures each. imp
// is the importance of each column (nil: uniform); the weighted quantizers
// use it as llama-quantize does (quant.QuantizeRefWeighted, or
// quant.Quantize when optimized).
func Errors(vals []float32, rows, cols int, imp []float32, types []quant.Type, optimized bool) ([]Point, error) {
	if rows*cols != len(vals) || cols <= 0 {
		return nil, fmt.Errorf("probe: %d values are not %d rows of %d", len(vals), rows, cols)
	}
	if imp != nil && len(imp) != cols {
		return nil, fmt.Errorf("probe: importance has %d columns, the tensor %d", len(imp), cols)
	}
	var ref float64 // Σ imp_j w²
	for i, v := range vals {
		w := 1.0
		if imp != nil {
			w = float64(imp[i%cols])
		}
		ref += w * float64(v) * float64(v)
	}
	var out []Point
	back := make([]float32, len(vals))
	for _, t := range types {
		if t.BlockSize() > 1 && cols%t.BlockSize() != 0 {
			continue
		}
		rs, err := t.RowSize(cols)
		if err != nil {
			continue
		}
		dst := make([]byte, rs*rows)
		switch {
		case optimized:
			err = quant.Quantize(t, dst, vals, cols, imp)
		case imp != nil && t.BlockSize() > 1:
			err = quant.QuantizeRefWeighted(t, dst, vals, cols, imp)
		default:
			err = quant.QuantizeRef(t, dst, vals, cols)
		}
		if err != nil {
			return nil, fmt.Errorf("probe: quantize to %s: %w", t, err)
		}
		if err := quant.Dequantize(t, back, dst, cols); err != nil {
			return nil, fmt.Errorf("probe: dequantize %s: %w", t, err)
		}
		var se float64
		for i, v := range vals {
			d := float64(back[i]) - float64(v)
			w := 1.0
			if imp != nil {
				w = float64(imp[i%cols])
			}
			se += w * d * d
		}
		p := Point{Type: t, Bytes: int64(len(dst))}
		if ref > 0 {
			p.Err = se / ref
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("probe: no candidate type holds rows of %d values", cols)
	}
	return out, nil
}

// Dequantized returns vals quantized to t and decoded, as the forward pass
// of the quantized model sees them.
func Dequantized(t quant.Type, vals []float32, cols int, imp []float32, optimized bool) ([]float32, error) {
	rs, err := t.RowSize(cols)
	if err != nil {
		return nil, err
	}
	dst := make([]byte, rs*(len(vals)/cols))
	switch {
	case optimized:
		err = quant.Quantize(t, dst, vals, cols, imp)
	case imp != nil && t.BlockSize() > 1:
		err = quant.QuantizeRefWeighted(t, dst, vals, cols, imp)
	default:
		err = quant.QuantizeRef(t, dst, vals, cols)
	}
	if err != nil {
		return nil, fmt.Errorf("probe: quantize to %s: %w", t, err)
	}
	back := make([]float32, len(vals))
	if err := quant.Dequantize(t, back, dst, cols); err != nil {
		return nil, fmt.Errorf("probe: dequantize %s: %w", t, err)
	}
	return back, nil
}

// Target is one quantizable tensor of a model's weights.
type Target struct {
	// Name is the llama.cpp tensor name ("blk.0.attn_q.weight"); a tied
	// embedding is "token_embd.weight" and stands for lm_head as well.
	Name       string
	Rows, Cols int
	// Values are the original weights, row-major (shared, do not modify).
	Values []float32
	// Index is the target's position in Targets' list (Options.AlphaEvery
	// counts by it, so a subset probes the same tensors as the whole).
	Index int
	set   func(w *infer.Weights, l infer.Linear)
}

// Targets lists the quantizable tensors of dense weights (infer.LoadModel's):
// the embedding, every projection of every layer and an untied lm_head.
func Targets(w *infer.Weights) ([]Target, error) {
	var out []Target
	add := func(role model.Role, layer int, l infer.Linear, set func(w *infer.Weights, l infer.Linear)) error {
		name, err := gguf.TensorName(role, layer, false)
		if err != nil {
			return err
		}
		d, ok := l.(*infer.Dense)
		if !ok {
			return fmt.Errorf("probe: tensor %s is not dense (%T); probe the original checkpoint", name, l)
		}
		out = append(out, Target{Name: name, Rows: d.Rows(), Cols: d.Cols(), Values: d.Data(), Index: len(out), set: set})
		return nil
	}
	tied := w.LMHead == w.Embed
	if err := add(model.RoleEmbed, -1, w.Embed, func(w *infer.Weights, l infer.Linear) {
		w.Embed = l
		if tied {
			w.LMHead = l
		}
	}); err != nil {
		return nil, err
	}
	for i := range w.Layers {
		L := &w.Layers[i]
		for _, p := range []struct {
			role model.Role
			lin  infer.Linear
			set  func(L *infer.Layer, l infer.Linear)
		}{
			{model.RoleQ, L.Q, func(L *infer.Layer, l infer.Linear) { L.Q = l }},
			{model.RoleK, L.K, func(L *infer.Layer, l infer.Linear) { L.K = l }},
			{model.RoleV, L.V, func(L *infer.Layer, l infer.Linear) { L.V = l }},
			{model.RoleO, L.O, func(L *infer.Layer, l infer.Linear) { L.O = l }},
			{model.RoleGate, L.Gate, func(L *infer.Layer, l infer.Linear) { L.Gate = l }},
			{model.RoleUp, L.Up, func(L *infer.Layer, l infer.Linear) { L.Up = l }},
			{model.RoleDown, L.Down, func(L *infer.Layer, l infer.Linear) { L.Down = l }},
		} {
			set := p.set
			if err := add(p.role, i, p.lin, func(w *infer.Weights, l infer.Linear) { set(&w.Layers[i], l) }); err != nil {
				return nil, err
			}
		}
	}
	if !tied {
		if err := add(model.RoleLMHead, -1, w.LMHead, func(w *infer.Weights, l infer.Linear) { w.LMHead = l }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Prober measures the KL divergence a replaced tensor causes on a fixed
// set of windows, against the original model's distributions (computed
// once, exact: the full log-softmax).
type Prober struct {
	m       *infer.Model
	windows []infer.Window
	ref     savedRef
}

// savedRef is a reference computed once.
type savedRef map[int][]infer.RefToken

// Window returns the saved distributions of window w.
func (s savedRef) Window(_ context.Context, w infer.Window) ([]infer.RefToken, error) {
	r, ok := s[w.Index]
	if !ok {
		return nil, fmt.Errorf("probe: no reference for window %d", w.Index)
	}
	return r, nil
}

// NewProber runs the original model m over windows once.
func NewProber(ctx context.Context, m *infer.Model, windows []infer.Window) (*Prober, error) {
	if len(windows) == 0 {
		return nil, fmt.Errorf("probe: no windows")
	}
	p := &Prober{m: m, windows: windows, ref: savedRef{}}
	for _, w := range windows {
		r, err := infer.ModelReference{Model: m}.Window(ctx, w)
		if err != nil {
			return nil, err
		}
		p.ref[w.Index] = r
	}
	return p, nil
}

// Tokens is the number of scored positions of a probe.
func (p *Prober) Tokens() int {
	n := 0
	for _, w := range p.windows {
		n += w.Scored()
	}
	return n
}

// KLD returns the mean KL divergence (nats per scored token) of the model
// with target t's values replaced by vals from the original model.
func (p *Prober) KLD(ctx context.Context, t Target, vals []float32) (float64, error) {
	d, err := infer.NewDense(t.Rows, t.Cols, vals)
	if err != nil {
		return 0, fmt.Errorf("probe: tensor %s: %w", t.Name, err)
	}
	base := p.m.Weights()
	w := *base
	w.Layers = slices.Clone(base.Layers)
	t.set(&w, d)
	m, err := infer.NewModel(p.m.Config(), &w, p.m.Options())
	if err != nil {
		return 0, fmt.Errorf("probe: tensor %s: %w", t.Name, err)
	}
	s, err := infer.Evaluate(ctx, m, p.windows, infer.EvalOptions{Reference: p.ref})
	if err != nil {
		return 0, fmt.Errorf("probe: tensor %s: %w", t.Name, err)
	}
	return s.Result().KLMean, nil
}

// Accounting returns the bytes of a file's tensors that are not targets
// (norms and biases, written as F32) and the number of weights of every
// tensor the file holds (a tied lm_head counted once, as the file holds
// it once), for checkpoint ck whose targets are named by targets.
func Accounting(ck *model.Checkpoint, targets []string) (fixedBytes, weights int64, err error) {
	in := map[string]bool{}
	for _, n := range targets {
		in[n] = true
	}
	found := 0
	for _, t := range ck.Tensors {
		if t.Role == model.RoleUnknown || t.Role == model.RoleLMHead && ck.Config.TieWordEmbeddings {
			continue
		}
		name, err := gguf.TensorName(t.Role, t.Layer, t.Bias)
		if err != nil {
			continue
		}
		if in[name] {
			found++
			weights += t.NumElements()
			continue
		}
		weights += t.NumElements()
		fixedBytes += 4 * t.NumElements()
	}
	if found != len(in) {
		return 0, 0, fmt.Errorf("probe: %d of %d targets are tensors of %s", found, len(in), ck.Store.Location())
	}
	return fixedBytes, weights, nil
}
