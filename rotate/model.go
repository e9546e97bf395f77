package rotate

import (
	"fmt"
	"slices"
)

// Model holds every weight of a Llama-family model that the rotation plan
// reads or changes, as float32 matrices in Hugging Face layout.
//
// LMHead may be the same *Matrix as Embed (tied embeddings, as read from a
// checkpoint with tie_word_embeddings); [RotateModel] unties it. NumHeads
// and NumKVHeads are the attention head counts, needed by the per-head
// value rotation.
type Model struct {
	Embed                *Matrix   // embed_tokens [vocab, d]
	Layers               []Layer   // decoder layers in order
	FinalNorm            []float32 // model.norm [d]
	LMHead               *Matrix   // lm_head [vocab, d]
	NumHeads, NumKVHeads int
}

// Tied reports whether lm_head shares the embedding's matrix or storage.
func (m *Model) Tied() bool {
	if m.LMHead == m.Embed {
		return true
	}
	if m.LMHead == nil || m.Embed == nil || len(m.LMHead.Data) == 0 || len(m.Embed.Data) == 0 {
		return false
	}
	return &m.LMHead.Data[0] == &m.Embed.Data[0]
}

// RotateModel applies the whole rotation plan to m in place with one seed:
// every layer is folded and rotated ([RotateLayer]), the embedding becomes
// E·Q ([RotateEmbedding]) and lm_head absorbs the final norm and becomes
// W·Q ([RotateHead]); FinalNorm is set to ones. A tied lm_head is first
// replaced by a copy of the embedding, because the head absorbs the final
// norm and so no longer equals the rotated embedding.
//
// opts.NumHeads and opts.NumKVHeads default to m's when zero. Every shape
// is checked before anything is modified, so on error m is unchanged. The
// function computed by the model (logits for any tokens) is unchanged up
// to float32 rounding.
func RotateModel(m *Model, seed uint64, opts Options) error {
	if m == nil {
		return fmt.Errorf("rotate: rotate model: nil model")
	}
	if opts.NumHeads == 0 && opts.NumKVHeads == 0 {
		opts.NumHeads, opts.NumKVHeads = m.NumHeads, m.NumKVHeads
	}
	if err := m.validate(opts); err != nil {
		return fmt.Errorf("rotate: rotate model: %w", err)
	}
	if m.Tied() {
		m.LMHead = m.Embed.Clone()
	}
	for i := range m.Layers {
		if err := RotateLayer(&m.Layers[i], seed, opts); err != nil {
			return fmt.Errorf("rotate: rotate model: layer %d: %w", i, err) // ruled out by validate
		}
	}
	if err := RotateEmbedding(m.Embed, seed); err != nil {
		return fmt.Errorf("rotate: rotate model: %w", err)
	}
	if err := RotateHead(m.LMHead, m.FinalNorm, seed); err != nil {
		return fmt.Errorf("rotate: rotate model: %w", err)
	}
	return nil
}

// validate checks every shape of m that RotateModel relies on.
func (m *Model) validate(opts Options) error {
	if len(m.Layers) == 0 {
		return fmt.Errorf("no layers")
	}
	d := len(m.FinalNorm)
	if d == 0 {
		return fmt.Errorf("norm: empty weight")
	}
	if err := checkInput("embed_tokens", m.Embed, d); err != nil {
		return err
	}
	if err := checkInput("lm_head", m.LMHead, d); err != nil {
		return err
	}
	if m.LMHead.Rows != m.Embed.Rows {
		return fmt.Errorf("lm_head: shape [%d %d], want %d rows like embed_tokens", m.LMHead.Rows, m.LMHead.Cols, m.Embed.Rows)
	}
	for i := range m.Layers {
		dm, err := m.Layers[i].validate(opts)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if dm.d != d {
			return fmt.Errorf("layer %d: hidden size %d, the final norm has %d", i, dm.d, d)
		}
	}
	return nil
}

// Clone returns a deep copy of m; a tied lm_head stays tied in the copy.
func (m *Model) Clone() *Model {
	c := &Model{
		Embed: m.Embed.Clone(), FinalNorm: slices.Clone(m.FinalNorm),
		NumHeads: m.NumHeads, NumKVHeads: m.NumKVHeads,
		Layers: make([]Layer, len(m.Layers)),
	}
	if m.Tied() {
		c.LMHead = c.Embed
	} else {
		c.LMHead = m.LMHead.Clone()
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		c.Layers[i] = Layer{
			AttnNorm: slices.Clone(l.AttnNorm), MLPNorm: slices.Clone(l.MLPNorm),
			Q: l.Q.Clone(), K: l.K.Clone(), V: l.V.Clone(), O: l.O.Clone(),
			Gate: l.Gate.Clone(), Up: l.Up.Clone(), Down: l.Down.Clone(),
			QBias: slices.Clone(l.QBias), KBias: slices.Clone(l.KBias), VBias: slices.Clone(l.VBias),
			QNorm: slices.Clone(l.QNorm), KNorm: slices.Clone(l.KNorm),
		}
	}
	return c
}
