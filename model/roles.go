package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Role is what a tensor does in a Llama-family model.
type Role uint8

// Tensor roles. Biases (Qwen2) share the role of their weight and are told
// apart by Tensor.Bias.
const (
	RoleUnknown   Role = iota
	RoleEmbed          // token embeddings [vocab, hidden]
	RoleAttnNorm       // RMSNorm before attention [hidden]
	RoleQ              // query projection [heads·head_dim, hidden]
	RoleK              // key projection [kv_heads·head_dim, hidden]
	RoleV              // value projection [kv_heads·head_dim, hidden]
	RoleO              // attention output projection [hidden, heads·head_dim]
	RoleQNorm          // Qwen3 per-head query RMSNorm [head_dim]
	RoleKNorm          // Qwen3 per-head key RMSNorm [head_dim]
	RoleMLPNorm        // RMSNorm before the MLP [hidden]
	RoleGate           // MLP gate projection [intermediate, hidden]
	RoleUp             // MLP up projection [intermediate, hidden]
	RoleDown           // MLP down projection [hidden, intermediate]
	RoleFinalNorm      // final RMSNorm [hidden]
	RoleLMHead         // output projection [vocab, hidden]
)

var roleNames = [...]string{
	RoleUnknown: "unknown", RoleEmbed: "embed", RoleAttnNorm: "attn_norm",
	RoleQ: "q", RoleK: "k", RoleV: "v", RoleO: "o", RoleQNorm: "q_norm", RoleKNorm: "k_norm",
	RoleMLPNorm: "mlp_norm", RoleGate: "gate", RoleUp: "up", RoleDown: "down",
	RoleFinalNorm: "final_norm", RoleLMHead: "lm_head",
}

// String returns the role's name ("q", "mlp_norm", ...).
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// ParseRole maps a role name back to a Role.
func ParseRole(s string) (Role, error) {
	if i := slices.Index(roleNames[:], s); i > 0 {
		return Role(i), nil
	}
	return RoleUnknown, fmt.Errorf("unknown tensor role %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// IsNorm reports whether the role is an RMSNorm weight.
func (r Role) IsNorm() bool {
	return r == RoleAttnNorm || r == RoleMLPNorm || r == RoleFinalNorm || r == RoleQNorm || r == RoleKNorm
}

// IsLinear reports whether the role is a matrix multiplied with activations
// (the tensors worth quantizing; the embedding is a lookup table).
func (r Role) IsLinear() bool {
	switch r {
	case RoleQ, RoleK, RoleV, RoleO, RoleGate, RoleUp, RoleDown, RoleLMHead:
		return true
	}
	return false
}

var layerSuffixes = map[string]Role{
	"input_layernorm":          RoleAttnNorm,
	"self_attn.q_proj":         RoleQ,
	"self_attn.k_proj":         RoleK,
	"self_attn.v_proj":         RoleV,
	"self_attn.o_proj":         RoleO,
	"self_attn.q_norm":         RoleQNorm,
	"self_attn.k_norm":         RoleKNorm,
	"post_attention_layernorm": RoleMLPNorm,
	"mlp.gate_proj":            RoleGate,
	"mlp.up_proj":              RoleUp,
	"mlp.down_proj":            RoleDown,
}

// Classify maps a Hugging Face tensor name of the Llama family (llama,
// mistral, qwen2, qwen3 share the naming) to its role and layer index. layer
// is -1 for tensors outside the decoder layers; bias is true for ".bias"
// tensors. Unknown names give RoleUnknown.
func Classify(name string) (role Role, layer int, bias bool) {
	base, ok := strings.CutSuffix(name, ".weight")
	if !ok {
		if base, ok = strings.CutSuffix(name, ".bias"); !ok {
			return RoleUnknown, -1, false
		}
		bias = true
	}
	switch base {
	case "model.embed_tokens":
		return RoleEmbed, -1, bias
	case "model.norm":
		return RoleFinalNorm, -1, bias
	case "lm_head":
		return RoleLMHead, -1, bias
	}
	rest, ok := strings.CutPrefix(base, "model.layers.")
	if !ok {
		return RoleUnknown, -1, bias
	}
	idx, suffix, ok := strings.Cut(rest, ".")
	if !ok {
		return RoleUnknown, -1, bias
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 || strconv.Itoa(n) != idx {
		return RoleUnknown, -1, bias
	}
	r, ok := layerSuffixes[suffix]
	if !ok {
		return RoleUnknown, n, bias
	}
	return r, n, bias
}

// TensorName returns the Hugging Face name of a role's weight (or bias) in a
// layer (layer is ignored for embed, final_norm and lm_head).
func TensorName(role Role, layer int, bias bool) string {
	suffix := ".weight"
	if bias {
		suffix = ".bias"
	}
	switch role {
	case RoleEmbed:
		return "model.embed_tokens" + suffix
	case RoleFinalNorm:
		return "model.norm" + suffix
	case RoleLMHead:
		return "lm_head" + suffix
	}
	for s, r := range layerSuffixes {
		if r == role {
			return "model.layers." + strconv.Itoa(layer) + "." + s + suffix
		}
	}
	return ""
}

// ExpectedShape is the shape config c implies for a role's weight or bias.
func (c *Config) ExpectedShape(role Role, bias bool) []int64 {
	h, q, kv, in, v := int64(c.HiddenSize), int64(c.QDim()), int64(c.KVDim()), int64(c.IntermediateSize), int64(c.VocabSize)
	var w []int64
	switch role {
	case RoleEmbed, RoleLMHead:
		w = []int64{v, h}
	case RoleAttnNorm, RoleMLPNorm, RoleFinalNorm:
		w = []int64{h}
	case RoleQNorm, RoleKNorm:
		w = []int64{int64(c.HeadDim)}
	case RoleQ:
		w = []int64{q, h}
	case RoleK, RoleV:
		w = []int64{kv, h}
	case RoleO:
		w = []int64{h, q}
	case RoleGate, RoleUp:
		w = []int64{in, h}
	case RoleDown:
		w = []int64{h, in}
	default:
		return nil
	}
	if bias {
		return w[:1]
	}
	return w
}

// ExpectedTensors lists the (role, layer, bias) triples a checkpoint of
// config c must hold, in model order.
func (c *Config) ExpectedTensors() []TensorRef {
	refs := []TensorRef{{RoleEmbed, -1, false}}
	for l := 0; l < c.NumLayers; l++ {
		refs = append(refs, TensorRef{RoleAttnNorm, l, false})
		for _, r := range []Role{RoleQ, RoleK, RoleV} {
			refs = append(refs, TensorRef{r, l, false})
			if c.AttentionBias {
				refs = append(refs, TensorRef{r, l, true})
			}
		}
		if c.QKNorm {
			refs = append(refs, TensorRef{RoleQNorm, l, false}, TensorRef{RoleKNorm, l, false})
		}
		refs = append(refs, TensorRef{RoleO, l, false}, TensorRef{RoleMLPNorm, l, false},
			TensorRef{RoleGate, l, false}, TensorRef{RoleUp, l, false}, TensorRef{RoleDown, l, false})
	}
	refs = append(refs, TensorRef{RoleFinalNorm, -1, false})
	if !c.TieWordEmbeddings {
		refs = append(refs, TensorRef{RoleLMHead, -1, false})
	}
	return refs
}

// TensorRef names a tensor by role, layer and bias flag.
type TensorRef struct {
	Role  Role
	Layer int
	Bias  bool
}

// Name is the Hugging Face tensor name of the reference.
func (r TensorRef) Name() string { return TensorName(r.Role, r.Layer, r.Bias) }
