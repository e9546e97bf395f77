package shards

import "github.com/ohms-project/adaptq/quant"

// WithType returns the recipe with every quantized tensor set to type t,
// as an operator asks for one shard (`retry-shard` with a type): the
// preset is dropped (its per-tensor rules would win), and the linear,
// embedding and output types and every role override become t (a
// budget's per-tensor types are dropped);
// norms and biases stay F32; BitNet stays on only when t is ternary. The
// recipe is part of a shard's key, so the shard quantized this way gets a
// key of its own and never reuses the object of the first attempt.
func (r Recipe) WithType(t quant.Type) Recipe {
	// A preset's per-tensor choices would override the three types.
	r.Preset = ""
	r.Linear, r.Embed, r.Output = t, t, t
	r.Tensors = nil // a budget's per-tensor types give way too
	if len(r.Roles) > 0 {
		roles := make(map[string]quant.Type, len(r.Roles))
		for role := range r.Roles {
			roles[role] = t
		}
		r.Roles = roles
	}
	if t != quant.TQ1_0 && t != quant.TQ2_0 {
		r.BitNet = false
	}
	return r
}
