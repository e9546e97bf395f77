package shards

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// CodecVersion changes whenever the bytes a recipe produces for the same
// input change; it is part of every shard key, so old shards are never
// reused for new code.
const CodecVersion = "adaptq-codec-4"

// Rotation says how the residual stream is rotated before quantization.
type Rotation struct {
	// Kind is "none" or "hadamard" (randomized Hadamard, fused into the
	// weights; see package rotate).
	Kind string `json:"kind"`
	Seed uint64 `json:"seed"`
	// Heads also rotates each attention head's value/output pair.
	Heads bool `json:"heads,omitempty"`
}

// Enabled reports whether the rotation changes the weights.
func (r Rotation) Enabled() bool { return r.Kind == "hadamard" }

// Recipe says which type each tensor is quantized to: a llama.cpp preset
// (Preset set: the type llama-quantize chooses for each tensor) or one type
// for every linear layer (Linear, Embed, Output). A requested type that
// does not fit a tensor's row length falls back along quant.Fallbacks; the
// manifest records both. RMSNorm weights and biases are always F32.
type Recipe struct {
	Name string `json:"name"`
	// Preset is llama-quantize's name of the mixture ("q4_k_m"; see
	// Preset); Linear, Embed and Output are then unused.
	Preset string `json:"preset,omitempty"`
	// Linear is the type of the attention and MLP projections.
	Linear quant.Type `json:"linear,omitempty"`
	// Embed is the type of the token embedding table.
	Embed quant.Type `json:"embed,omitempty"`
	// Output is the type of lm_head (also of a tied head when a rotation
	// unties it).
	Output quant.Type `json:"output,omitempty"`
	// Roles overrides the type by role name (model.Role.String()), over a
	// preset too.
	Roles map[string]quant.Type `json:"roles,omitempty"`
	// Tensors overrides the type by llama.cpp tensor name ("blk.3.attn_v.weight",
	// "token_embd.weight"), over Roles and a preset: a budget's allocation
	// (package budget). A shard's key includes only its own tensors' entries.
	Tensors map[string]quant.Type `json:"tensors,omitempty"`
	// Optimized uses the error-minimising quantizers (same byte layouts).
	Optimized bool `json:"optimized,omitempty"`
	// BitNet quantizes the ternary tensors as BitNet b1.58 does: one
	// absmean scale per tensor and weights in {-1, 0, 1} (the recipe's
	// linear type must be TQ1_0 or TQ2_0).
	BitNet   bool     `json:"bitnet,omitempty"`
	Rotation Rotation `json:"rotation"`
	// Compress stores shard payloads zstd-compressed.
	Compress bool `json:"compress,omitempty"`
	// Imatrix is the importance matrix the quantizers weight each column's
	// error with (nil: none). With one, the presets choose their types as
	// llama-quantize does with --imatrix (has_imatrix).
	Imatrix *IMatrixRef `json:"imatrix,omitempty"`
}

// uniformPrefix names the one-type recipes: "uniform-q4_k".
const uniformPrefix = "uniform-"

// NamedRecipe returns a built-in recipe:
//   - a llama-quantize preset by its name (see Presets: q8_0, q6_k,
//     q5_k_m, q4_k_m, q3_k_m, q2_k, q4_0, tq2_0, f16, ...; the aliases
//     q3_k, q4_k and q5_k are the _m mixtures, as in llama-quantize):
//     every tensor gets the type llama.cpp gives it;
//   - "uniform-<type>" (uniform-q4_k, uniform-q2_k, ...): that type for
//     every linear layer and the embedding, except that Q2_K … Q5_K and
//     the ternary and 256-block i-quant types keep lm_head (and a tied
//     embedding) at Q6_K, ternary ones the embedding at Q4_K and IQ2_XXS,
//     IQ2_XS and IQ1_S (which need an importance the embedding never
//     has) at Q2_K, because those two tensors dominate the error;
//   - "bitnet": the tq2_0 preset's types with BitNet b1.58's ternary
//     quantization of the linear layers.
//
// The name is kept as given (in lower case) in the recipe's Name.
func NamedRecipe(name string) (Recipe, error) {
	n := strings.ToLower(name)
	r := Recipe{Name: n}
	switch {
	case n == "bitnet":
		r.Preset, r.BitNet = "tq2_0", true
		return r, nil
	case strings.HasPrefix(n, uniformPrefix):
		t, err := quant.ParseType(strings.TrimPrefix(n, uniformPrefix))
		if err != nil {
			return Recipe{}, fmt.Errorf("recipe %q: %w", name, err)
		}
		r.Linear, r.Embed, r.Output = t, t, t
		switch t {
		case quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K,
			quant.IQ4_XS, quant.IQ3_S, quant.IQ3_XXS, quant.IQ2_S, quant.IQ1_M:
			r.Output = quant.Q6_K
		case quant.TQ1_0, quant.TQ2_0:
			r.Embed, r.Output = quant.Q4_K, quant.Q6_K
		case quant.IQ2_XXS, quant.IQ2_XS, quant.IQ1_S:
			// ggml quantizes these only with an importance, which the
			// embedding never has: Q2_K, as llama.cpp's iq2_xxs,
			// iq2_xs and iq1_s presets do.
			r.Embed, r.Output = quant.Q2_K, quant.Q6_K
		}
		return r, nil
	}
	p, err := LookupPreset(n)
	if err != nil {
		return Recipe{}, fmt.Errorf("unknown recipe %q: %v (presets: %s; uniform-<type>; bitnet)", name, err, PresetNames())
	}
	r.Preset = p.Name
	return r, nil
}

// TypeFor is the type a recipe requests for a tensor of a model with config
// cfg (before fallbacks; see OutputType).
func (r Recipe) TypeFor(cfg *model.Config, s Slot) quant.Type {
	return r.typeFor(cfg, s, r.Imatrix != nil)
}

// typeFor is TypeFor with llama.cpp's has_imatrix: whether an importance
// matrix is given, which changes some presets' choice.
func (r Recipe) typeFor(cfg *model.Config, s Slot, imatrix bool) quant.Type {
	if s.Bias || s.Role.IsNorm() {
		return quant.F32
	}
	if len(r.Tensors) > 0 {
		if name, err := gguf.TensorName(s.Role, s.Layer, s.Bias); err == nil {
			if t, ok := r.Tensors[name]; ok {
				return t
			}
		}
	}
	if t, ok := r.Roles[s.Role.String()]; ok {
		return t
	}
	if r.Preset != "" {
		p, err := LookupPreset(r.Preset)
		if err != nil {
			return r.Linear // Validate rejects the recipe
		}
		return p.Type(cfg, s, imatrix)
	}
	switch s.Role {
	case model.RoleEmbed:
		if s.Tied {
			return r.Output
		}
		return r.Embed
	case model.RoleLMHead:
		return r.Output
	}
	return r.Linear
}

// OutputType is the type the tensor is written in: TypeFor, or the first
// fallback whose blocks hold the row (quant.FitType).
func (r Recipe) OutputType(cfg *model.Config, s Slot) (quant.Type, error) {
	return quant.FitType(r.TypeFor(cfg, s), s.Cols)
}

// FileType is the recipe's llama_ftype (general.file_type): its preset's,
// or for a uniform recipe the "mostly" file type of its linear type (the
// _S mixture of a K-quant); false when llama.cpp has none.
func (r Recipe) FileType() (gguf.FileType, bool) {
	if r.Preset != "" {
		p, err := LookupPreset(r.Preset)
		return p.FileType, err == nil
	}
	name := strings.ToLower(r.Linear.String())
	for _, p := range presets {
		if p.Base == r.Linear && (p.Name == name || p.Name == name+"_s") {
			return p.FileType, true
		}
	}
	return 0, false
}

// linearType is the type the recipe gives a dense model's projections.
func (r Recipe) linearType() quant.Type {
	if r.Preset == "" {
		return r.Linear
	}
	p, _ := LookupPreset(r.Preset)
	return p.Base
}

// Validate checks the recipe's types.
func (r Recipe) Validate() error {
	if r.Preset != "" {
		if _, err := LookupPreset(r.Preset); err != nil {
			return fmt.Errorf("recipe %q: %w", r.Name, err)
		}
	} else {
		for _, t := range []quant.Type{r.Linear, r.Embed, r.Output} {
			if !t.Valid() {
				return fmt.Errorf("recipe %q: invalid type %d", r.Name, uint32(t))
			}
		}
	}
	for name, t := range r.Tensors {
		if !t.Valid() {
			return fmt.Errorf("recipe %q: tensor %s: invalid type %d", r.Name, name, uint32(t))
		}
	}
	for role, t := range r.Roles {
		if _, err := model.ParseRole(role); err != nil {
			return fmt.Errorf("recipe %q: %w", r.Name, err)
		}
		if !t.Valid() {
			return fmt.Errorf("recipe %q: role %s: invalid type %d", r.Name, role, uint32(t))
		}
	}
	if lt := r.linearType(); r.BitNet && lt != quant.TQ1_0 && lt != quant.TQ2_0 {
		return fmt.Errorf("recipe %q: bitnet needs TQ1_0 or TQ2_0 linear layers, has %s", r.Name, lt)
	}
	if k := r.Rotation.Kind; k != "" && k != "none" && k != "hadamard" {
		return fmt.Errorf("recipe %q: rotation kind %q (none or hadamard)", r.Name, k)
	}
	return nil
}

// Shard is one unit of work: the tensors of one layer, or the embedding, or
// the model's head.
type Shard struct {
	Index int    `json:"index"`
	Name  string `json:"name"` // "embed", "layer-007", "head"
	Layer int    `json:"layer"`
	// Tensors are the checkpoint tensors the shard reads, in order.
	Tensors []string `json:"tensors"`
}

// Plan is the split of a checkpoint into shards.
type Plan struct {
	Model  string        `json:"model"`
	Config *model.Config `json:"config"`
	// SourceID fingerprints the checkpoint's files (names, sizes, ETags).
	SourceID string  `json:"source_id"`
	Shards   []Shard `json:"shards"`
}

// MakePlan splits a checkpoint into one shard per decoder layer, plus
// "embed" (the token embedding) and "head" (final norm and lm_head; for a
// tied model it reads the embedding, which a rotation unties).
func MakePlan(ck *model.Checkpoint) *Plan {
	p := &Plan{Model: ck.Store.Location(), Config: ck.Config, SourceID: sourceID(ck)}
	byLayer := map[int][]string{}
	var head []string
	for _, t := range ck.Tensors {
		switch {
		case t.Role == model.RoleUnknown:
		case t.Layer >= 0:
			byLayer[t.Layer] = append(byLayer[t.Layer], t.Name)
		case t.Role == model.RoleFinalNorm || t.Role == model.RoleLMHead:
			head = append(head, t.Name)
		}
	}
	embed := model.TensorName(model.RoleEmbed, -1, false)
	p.Shards = append(p.Shards, Shard{Name: "embed", Layer: -1, Tensors: []string{embed}})
	for l := 0; l < ck.Config.NumLayers; l++ {
		p.Shards = append(p.Shards, Shard{Name: fmt.Sprintf("layer-%03d", l), Layer: l, Tensors: byLayer[l]})
	}
	sort.Strings(head) // lm_head.weight before model.norm.weight
	p.Shards = append(p.Shards, Shard{Name: "head", Layer: -1, Tensors: head})
	for i := range p.Shards {
		p.Shards[i].Index = i
	}
	return p
}

func sourceID(ck *model.Checkpoint) string {
	h := sha256.New()
	for _, f := range ck.Files {
		fmt.Fprintf(h, "%s\x00%d\x00%s\n", f.Name, f.Size, f.ETag)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Key is the object key of a shard's output. It is derived from everything
// that determines the bytes (source fingerprint, the shard's tensors, the
// recipe, the rotation seed, the importance matrix's SHA-256 but not its
// location, the codec version), so writing it twice is harmless and a
// retry can reuse a finished shard.
func (p *Plan) Key(s Shard, r Recipe) string {
	h := sha256.New()
	r.Tensors = shardTensors(s, r.Tensors)
	if r.Imatrix != nil {
		r.Imatrix = &IMatrixRef{SHA256: r.Imatrix.SHA256}
	}
	rj, _ := json.Marshal(r)
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", CodecVersion, p.SourceID, rj, s.Name)
	for _, t := range s.Tensors {
		fmt.Fprintf(h, "%s\n", t)
	}
	return fmt.Sprintf("shards/%s-%s.adqs", s.Name, hex.EncodeToString(h.Sum(nil))[:24])
}

// shardTensors keeps the per-tensor types of the tensors shard s writes,
// so that changing one tensor's type changes only its own shard's key.
func shardTensors(s Shard, types map[string]quant.Type) map[string]quant.Type {
	if len(types) == 0 {
		return nil
	}
	out := map[string]quant.Type{}
	for name, t := range types {
		if s.Writes(name) {
			out[name] = t
		}
	}
	return out
}

// Writes reports whether the shard writes the tensor of this llama.cpp
// name, by the layer in the name: "blk.N." for layer N, token_embd for
// "embed", output and output_norm for "head".
func (s Shard) Writes(ggufName string) bool {
	switch {
	case s.Layer >= 0:
		return strings.HasPrefix(ggufName, fmt.Sprintf("blk.%d.", s.Layer))
	case s.Name == "embed":
		return strings.HasPrefix(ggufName, "token_embd.")
	}
	return strings.HasPrefix(ggufName, "output.") || strings.HasPrefix(ggufName, "output_norm.")
}

// ForShard returns the recipe with only shard s's per-tensor types: what a
// shard's activity needs, and what its key is derived from.
func (r Recipe) ForShard(s Shard) Recipe {
	r.Tensors = shardTensors(s, r.Tensors)
	return r
}
