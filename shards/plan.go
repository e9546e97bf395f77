package shards

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// CodecVersion changes whenever the bytes a recipe produces for the same
// input change; it is part of every shard key, so old shards are never
// reused for new code.
const CodecVersion = "adaptq-codec-3"

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

// Recipe says which type each tensor is quantized to. A requested type that
// does not fit a tensor's row length falls back along quant.Fallbacks; the
// manifest records both. RMSNorm weights and biases are always F32.
type Recipe struct {
	Name string `json:"name"`
	// Linear is the type of the attention and MLP projections.
	Linear quant.Type `json:"linear"`
	// Embed is the type of the token embedding table.
	Embed quant.Type `json:"embed"`
	// Output is the type of lm_head (also of a tied head when a rotation
	// unties it).
	Output quant.Type `json:"output"`
	// Roles overrides the type by role name (model.Role.String()).
	Roles map[string]quant.Type `json:"roles,omitempty"`
	// Optimized uses the error-minimising quantizers (same byte layouts).
	Optimized bool `json:"optimized,omitempty"`
	// BitNet quantizes the linear layers as BitNet b1.58 does: one absmean
	// scale per tensor and weights in {-1, 0, 1} (Linear must be TQ1_0 or
	// TQ2_0).
	BitNet   bool     `json:"bitnet,omitempty"`
	Rotation Rotation `json:"rotation"`
	// Compress stores shard payloads zstd-compressed.
	Compress bool `json:"compress,omitempty"`
}

// NamedRecipe returns a built-in recipe: f32, f16, bf16, q8_0, q4_0, q2_k,
// q3_k, q4_k, q5_k, q6_k, tq1_0, tq2_0 or bitnet. K-quant and ternary
// recipes keep lm_head at Q6_K and ternary ones the embedding at Q4_K, as
// llama.cpp's own presets do, because those two tensors dominate the error.
func NamedRecipe(name string) (Recipe, error) {
	n := strings.ToLower(name)
	r := Recipe{Name: n}
	switch n {
	case "bitnet":
		r.Linear, r.Embed, r.Output, r.BitNet = quant.TQ2_0, quant.Q4_K, quant.Q6_K, true
		return r, nil
	}
	t, err := quant.ParseType(n)
	if err != nil {
		return Recipe{}, fmt.Errorf("unknown recipe %q (f32, f16, bf16, q8_0, q4_0, q2_k, q3_k, q4_k, q5_k, q6_k, tq1_0, tq2_0, bitnet)", name)
	}
	r.Linear, r.Embed, r.Output = t, t, t
	switch t {
	case quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K:
		r.Output = quant.Q6_K
	case quant.TQ1_0, quant.TQ2_0:
		r.Embed, r.Output = quant.Q4_K, quant.Q6_K
	}
	return r, nil
}

// TypeFor is the type a recipe requests for a tensor (before fallbacks).
// tiedHead says that the embedding also serves as lm_head (a tied model
// without rotation); it then gets the Output type, as in llama.cpp, since
// its error reaches the logits directly.
func (r Recipe) TypeFor(role model.Role, bias, tiedHead bool) quant.Type {
	if bias || role.IsNorm() {
		return quant.F32
	}
	if t, ok := r.Roles[role.String()]; ok {
		return t
	}
	switch role {
	case model.RoleEmbed:
		if tiedHead {
			return r.Output
		}
		return r.Embed
	case model.RoleLMHead:
		return r.Output
	}
	return r.Linear
}

// Validate checks the recipe's types.
func (r Recipe) Validate() error {
	for _, t := range []quant.Type{r.Linear, r.Embed, r.Output} {
		if !t.Valid() {
			return fmt.Errorf("recipe %q: invalid type %d", r.Name, uint32(t))
		}
	}
	if r.BitNet && r.Linear != quant.TQ1_0 && r.Linear != quant.TQ2_0 {
		return fmt.Errorf("recipe %q: bitnet needs TQ1_0 or TQ2_0 linear layers, has %s", r.Name, r.Linear)
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
// recipe, the rotation seed, the codec version), so writing it twice is
// harmless and a retry can reuse a finished shard.
func (p *Plan) Key(s Shard, r Recipe) string {
	h := sha256.New()
	rj, _ := json.Marshal(r)
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", CodecVersion, p.SourceID, rj, s.Name)
	for _, t := range s.Tensors {
		fmt.Fprintf(h, "%s\n", t)
	}
	return fmt.Sprintf("shards/%s-%s.adqs", s.Name, hex.EncodeToString(h.Sum(nil))[:24])
}
