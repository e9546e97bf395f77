package shards

import (
	"fmt"
	"math"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
)

// IMatrixRef names the importance matrix a recipe quantizes with: where
// it is and the SHA-256 of its bytes. The checksum, not the location, is
// part of a shard's key (Plan.Key), so a new matrix never reuses a shard
// quantized with another and a copied one reuses them all.
type IMatrixRef struct {
	Location string `json:"location"`
	SHA256   string `json:"sha256"`
}

// KeyIMatrixRotation is the imatrix metadata key saying in which basis the
// activations were collected: Rotation.ID of the model they ran through
// ("none", or the rotation and its seed). llama.cpp's files lack it: they
// are collected on the unrotated model.
const KeyIMatrixRotation = "adaptq.rotation"

// ID names the rotation in keys and in an imatrix's metadata: "none" or
// "hadamard seed=S heads=B".
func (r Rotation) ID() string {
	if !r.Enabled() {
		return "none"
	}
	return fmt.Sprintf("hadamard seed=%d heads=%v", r.Seed, r.Heads)
}

// Importance maps a GGUF weight name to the per-column importance
// llama-quantize hands ggml for it (gguf.IMatrixEntry.Importance: Σx² /
// tokens). A weight without an entry is quantized unweighted.
type Importance map[string][]float32

// ImportanceOf is the importance of every entry of an importance matrix
// (dense weights only: one matrix per entry).
func ImportanceOf(im *gguf.IMatrix) (Importance, error) {
	imp := Importance{}
	for _, name := range im.Names() {
		e := im.Entries[name]
		if e.Mats != 1 {
			return nil, fmt.Errorf("imatrix entry %q: %d matrices (a mixture of experts); adaptq quantizes dense weights only", name, e.Mats)
		}
		imp[name] = e.Importance()
	}
	return imp, nil
}

// IMatrixWeights lists what an importance matrix of the model may hold
// under the recipe: every weight an entry may describe by GGUF name, with
// its input column count, and the weights that must have one (every linear
// layer: q, k, v, o, gate, up, down). lm_head ("output.weight") may have
// one, also when the head is tied (its input is collected all the same);
// the token embedding has none (it is a lookup, not a product).
func (p *Plan) IMatrixWeights(ck *model.Checkpoint, r Recipe) (cols map[string]int, required []string, err error) {
	cols = map[string]int{"output.weight": ck.Config.HiddenSize}
	for _, s := range p.Shards {
		jobs, err := shardJobs(ck, s, r)
		if err != nil {
			return nil, nil, err
		}
		for _, j := range jobs {
			if j.bias || j.role.IsNorm() || j.role == model.RoleEmbed || j.role == model.RoleUnknown {
				continue
			}
			name, err := gguf.TensorName(j.role, j.layer, false)
			if err != nil {
				return nil, nil, err
			}
			cols[name] = int(j.cols)
			if j.role != model.RoleLMHead {
				required = append(required, name)
			}
		}
	}
	return cols, required, nil
}

// CheckIMatrix validates an importance matrix against the model and the
// recipe before any shard is quantized: every linear weight has an entry,
// every entry names a weight of the model and has its column count, the
// sums are finite, Σx² non-negative and every count positive; and the
// basis matches: a rotated recipe needs a matrix collected on the same
// rotation (KeyIMatrixRotation equal to Rotation.ID), an unrotated one
// refuses a matrix collected on a rotated model. Errors name the entry.
func (p *Plan) CheckIMatrix(ck *model.Checkpoint, r Recipe, im *gguf.IMatrix) error {
	got := "none"
	if kv, ok := im.Extra.Get(KeyIMatrixRotation); ok {
		s, isStr := kv.(string)
		if !isStr {
			return fmt.Errorf("imatrix metadata %s is %T, not a string", KeyIMatrixRotation, kv)
		}
		got = s
	}
	if want := r.Rotation.ID(); got != want {
		if r.Rotation.Enabled() {
			return fmt.Errorf("collected on the rotation %q, but the recipe rotates with %q: an importance computed in another basis is wrong for these weights", got, want)
		}
		return fmt.Errorf("collected on a rotated model (%s), but the recipe does not rotate (calibrate the unrotated model, or quantize with that rotation)", got)
	}
	cols, required, err := p.IMatrixWeights(ck, r)
	if err != nil {
		return err
	}
	if err := im.Check(cols, required); err != nil {
		return err
	}
	imp, err := ImportanceOf(im)
	if err != nil {
		return err
	}
	for _, name := range im.Names() {
		for i, v := range imp[name] {
			if math.IsInf(float64(v), 0) {
				return fmt.Errorf("imatrix entry %q: the importance of column %d overflows (Σx² / count = %v)", name, i, v)
			}
		}
	}
	return nil
}
