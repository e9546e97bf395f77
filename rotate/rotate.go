// Package rotate applies the QuaRot/SpinQuant-style rotation plan to the
// weights of a Llama-family transformer so that the residual stream is
// rotated by a randomised Hadamard matrix before quantisation, without
// changing the function the model computes.
//
// # Layout
//
// Matrices are plain float32 row-major [Matrix] values in Hugging Face's
// layout: a Linear weight W has shape [out_features, in_features] and
// computes y = W·x for a column vector x. The embedding table has shape
// [vocab, hidden] and its row t is the hidden vector of token t.
//
// # Convention
//
// Let d be the hidden size and Q = [ResidualRotation](seed, d), an
// orthogonal d×d matrix. Every residual-stream vector x (a column vector)
// is replaced by x' = Qᵀ·x. Therefore:
//
//   - embedding rows e become Qᵀ·e, i.e. the table E becomes E·Q;
//   - weights that read the residual stream (q, k, v, gate, up and lm_head)
//     become W·Q, so that (W·Q)·(Qᵀ·x) = W·x;
//   - weights that write into the residual stream (o and down) become
//     Qᵀ·W, so that their output is Qᵀ·(W·a), the rotated contribution.
//
// RMSNorm(x) = g∘x/rms(x) does not commute with Q unless g is all ones,
// because diag(g) does not commute with Q. The norm weights are therefore
// first folded into the linear layers that read them (W ← W·diag(g), then
// g ← 1); with a unit weight RMSNorm(Qᵀx) = Qᵀ·RMSNorm(x) because Q
// preserves the Euclidean norm (and hence rms, with or without epsilon).
//
// # Determinism
//
// Every transform depends only on the seed and the tensor dimensions, so a
// single layer can be rotated on its own (for example on a remote worker)
// and the result is bit-identical to rotating the whole model in one
// process. The same seed must be used for the embedding, every layer and
// the head, since they share the residual rotation.
package rotate

import (
	"fmt"

	"github.com/ohms-project/adaptq/hadamard"
)

// StreamResidual is the hadamard stream tag of the residual-stream
// rotation: Q = hadamard.New(d, seed, StreamResidual).
const StreamResidual uint64 = 1

// StreamHead returns the hadamard stream tag of the per-head value/output
// rotation of key/value head kvHead: 1<<32 + kvHead.
func StreamHead(kvHead int) uint64 { return 1<<32 + uint64(kvHead) }

// ResidualRotation returns the residual-stream rotation Q of hidden size d
// for seed, hadamard.New(d, seed, StreamResidual).
func ResidualRotation(seed uint64, d int) (*hadamard.Rotation, error) {
	r, err := hadamard.New(d, seed, StreamResidual)
	if err != nil {
		return nil, fmt.Errorf("rotate: residual rotation: %w", err)
	}
	return r, nil
}

// HeadRotation returns the rotation H_g applied to the values of key/value
// head kvHead (of size headDim) for seed,
// hadamard.New(headDim, seed, StreamHead(kvHead)). Every key/value head has
// its own signs; the rotation does not depend on the layer index.
func HeadRotation(seed uint64, headDim, kvHead int) (*hadamard.Rotation, error) {
	r, err := hadamard.New(headDim, seed, StreamHead(kvHead))
	if err != nil {
		return nil, fmt.Errorf("rotate: head rotation for kv head %d: %w", kvHead, err)
	}
	return r, nil
}

// Matrix is a dense row-major float32 matrix: element (i, j) is
// Data[i*Cols+j]. Linear weights use Hugging Face's [out, in] layout.
type Matrix struct {
	Rows, Cols int
	Data       []float32
}

// NewMatrix returns a zero matrix of shape [rows, cols].
func NewMatrix(rows, cols int) *Matrix {
	return &Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
}

// Clone returns a deep copy of m (nil for a nil m).
func (m *Matrix) Clone() *Matrix {
	if m == nil {
		return nil
	}
	return &Matrix{Rows: m.Rows, Cols: m.Cols, Data: append([]float32(nil), m.Data...)}
}

// Layer holds the weights of one Llama-family decoder layer that the
// rotation touches. Names in error messages follow Hugging Face:
// input_layernorm (AttnNorm), post_attention_layernorm (MLPNorm),
// q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
//
// Shapes, with d the hidden size, f the intermediate size, h the number of
// query heads, k the number of key/value heads and hd the head dimension:
// AttnNorm, MLPNorm [d]; Q [h·hd, d]; K, V [k·hd, d]; O [d, h·hd];
// Gate, Up [f, d]; Down [d, f]. QBias, KBias and VBias are optional
// (nil when absent, as in Llama; present in Qwen2) with lengths Q.Rows,
// K.Rows and V.Rows. QNorm and KNorm (Qwen3's per-head query/key RMSNorm
// weights, [hd] each, nil when absent) act after the projections, on a
// side of q and k that no rotation touches, so they are carried unchanged.
type Layer struct {
	AttnNorm, MLPNorm   []float32
	Q, K, V, O          *Matrix
	Gate, Up, Down      *Matrix
	QBias, KBias, VBias []float32
	QNorm, KNorm        []float32
}

// Options configures [RotateLayer].
type Options struct {
	// HeadRotation additionally rotates the values of every key/value head
	// g by H_g = HeadRotation(seed, hd, g): the rows of V (and VBias) that
	// belong to head g become H_g·V_g, and in O the block of hd columns read
	// by every query head that attends with kv head g becomes O_h·H_gᵀ.
	// With grouped-query attention, query head i uses kv head
	// i / (NumHeads/NumKVHeads) (Hugging Face's repeat_kv order), so all
	// query heads of a group must undo the same H_g; attention weights are
	// independent of V, so each head output is H_g times the original one
	// and O_h·H_gᵀ·H_g = O_h.
	HeadRotation bool
	// NumHeads and NumKVHeads are the numbers of query and key/value heads;
	// they are required (and checked against the shapes) only when
	// HeadRotation is set.
	NumHeads, NumKVHeads int
}

// dims are the validated dimensions of a layer.
type dims struct {
	d, f, qRows, kvRows int
}

func checkMatrix(role string, m *Matrix) error {
	if m == nil {
		return fmt.Errorf("%s: missing", role)
	}
	if m.Rows <= 0 || m.Cols <= 0 || len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("%s: shape [%d %d] with %d elements", role, m.Rows, m.Cols, len(m.Data))
	}
	return nil
}

func checkInput(role string, m *Matrix, d int) error {
	if err := checkMatrix(role, m); err != nil {
		return err
	}
	if m.Cols != d {
		return fmt.Errorf("%s: shape [%d %d], want in_features %d (hidden size)", role, m.Rows, m.Cols, d)
	}
	return nil
}

func checkBias(role string, b []float32, rows int) error {
	if b != nil && len(b) != rows {
		return fmt.Errorf("%s: length %d, want %d (out_features)", role, len(b), rows)
	}
	return nil
}

// validate checks every shape of l without modifying it.
func (l *Layer) validate(opts Options) (dims, error) {
	d := len(l.AttnNorm)
	if d == 0 {
		return dims{}, fmt.Errorf("input_layernorm: empty weight")
	}
	if len(l.MLPNorm) != d {
		return dims{}, fmt.Errorf("post_attention_layernorm: length %d, want %d (length of input_layernorm)", len(l.MLPNorm), d)
	}
	for _, c := range []struct {
		role string
		m    *Matrix
	}{{"q_proj", l.Q}, {"k_proj", l.K}, {"v_proj", l.V}, {"gate_proj", l.Gate}, {"up_proj", l.Up}} {
		if err := checkInput(c.role, c.m, d); err != nil {
			return dims{}, err
		}
	}
	if l.V.Rows != l.K.Rows {
		return dims{}, fmt.Errorf("v_proj: shape [%d %d], want %d rows like k_proj [%d %d]", l.V.Rows, l.V.Cols, l.K.Rows, l.K.Rows, l.K.Cols)
	}
	if l.Up.Rows != l.Gate.Rows {
		return dims{}, fmt.Errorf("up_proj: shape [%d %d], want %d rows like gate_proj [%d %d]", l.Up.Rows, l.Up.Cols, l.Gate.Rows, l.Gate.Rows, l.Gate.Cols)
	}
	if err := checkMatrix("o_proj", l.O); err != nil {
		return dims{}, err
	}
	if l.O.Rows != d || l.O.Cols != l.Q.Rows {
		return dims{}, fmt.Errorf("o_proj: shape [%d %d], want [%d %d] (hidden, q_proj out_features)", l.O.Rows, l.O.Cols, d, l.Q.Rows)
	}
	if err := checkMatrix("down_proj", l.Down); err != nil {
		return dims{}, err
	}
	if l.Down.Rows != d || l.Down.Cols != l.Gate.Rows {
		return dims{}, fmt.Errorf("down_proj: shape [%d %d], want [%d %d] (hidden, gate_proj out_features)", l.Down.Rows, l.Down.Cols, d, l.Gate.Rows)
	}
	if err := checkBias("q_proj bias", l.QBias, l.Q.Rows); err != nil {
		return dims{}, err
	}
	if err := checkBias("k_proj bias", l.KBias, l.K.Rows); err != nil {
		return dims{}, err
	}
	if err := checkBias("v_proj bias", l.VBias, l.V.Rows); err != nil {
		return dims{}, err
	}
	if opts.HeadRotation {
		h, k := opts.NumHeads, opts.NumKVHeads
		if h <= 0 || k <= 0 || h%k != 0 {
			return dims{}, fmt.Errorf("head rotation: %d query heads and %d kv heads, want positive counts with kv heads dividing query heads", h, k)
		}
		if l.Q.Rows%h != 0 {
			return dims{}, fmt.Errorf("q_proj: shape [%d %d], out_features not divisible by %d heads", l.Q.Rows, l.Q.Cols, h)
		}
		if hd := l.Q.Rows / h; l.V.Rows != k*hd {
			return dims{}, fmt.Errorf("v_proj: shape [%d %d], want %d rows (%d kv heads × head dim %d)", l.V.Rows, l.V.Cols, k*hd, k, hd)
		}
	}
	return dims{d: d, f: l.Gate.Rows, qRows: l.Q.Rows, kvRows: l.K.Rows}, nil
}

// scaleColumns computes W ← W·diag(g) (column j of W multiplied by g[j]).
func scaleColumns(m *Matrix, g []float32) {
	for off := 0; off < len(m.Data); off += m.Cols {
		row := m.Data[off : off+m.Cols : off+m.Cols]
		g := g[:len(row)]
		for j := range row {
			row[j] *= g[j]
		}
	}
}

func setOnes(g []float32) {
	for i := range g {
		g[i] = 1
	}
}

// FoldNorms folds the layer's RMSNorm weights into the linear layers that
// read them and sets the norm weights to 1: q, k and v ← W·diag(AttnNorm),
// gate and up ← W·diag(MLPNorm). Biases are unaffected (they are added
// after the matrix product). Folding unit weights is a no-op, so calling
// FoldNorms twice is harmless. On error l is left unchanged.
func FoldNorms(l *Layer) error {
	if _, err := l.validate(Options{}); err != nil {
		return fmt.Errorf("rotate: fold norms: %w", err)
	}
	foldNorms(l)
	return nil
}

func foldNorms(l *Layer) {
	for _, m := range []*Matrix{l.Q, l.K, l.V} {
		scaleColumns(m, l.AttnNorm)
	}
	for _, m := range []*Matrix{l.Gate, l.Up} {
		scaleColumns(m, l.MLPNorm)
	}
	setOnes(l.AttnNorm)
	setOnes(l.MLPNorm)
}

// RotateLayer folds the norms of l (see [FoldNorms]) and rotates its
// residual stream in place with Q = ResidualRotation(seed, d): Q, K, V,
// Gate and Up become W·Q, O and Down become Qᵀ·W. With opts.HeadRotation
// the values of every key/value head are rotated as described on
// [Options]. The result depends only on seed and the shapes. All shapes
// are checked before anything is modified, so on error l is unchanged.
func RotateLayer(l *Layer, seed uint64, opts Options) error {
	if l == nil {
		return fmt.Errorf("rotate: rotate layer: nil layer")
	}
	dm, err := l.validate(opts)
	if err != nil {
		return fmt.Errorf("rotate: rotate layer: %w", err)
	}
	q, err := ResidualRotation(seed, dm.d)
	if err != nil {
		return fmt.Errorf("rotate: rotate layer: %w", err)
	}
	var heads []*hadamard.Rotation
	if opts.HeadRotation {
		hd := dm.qRows / opts.NumHeads
		for g := 0; g < opts.NumKVHeads; g++ {
			h, err := HeadRotation(seed, hd, g)
			if err != nil {
				return fmt.Errorf("rotate: rotate layer: %w", err)
			}
			heads = append(heads, h)
		}
	}

	foldNorms(l)
	// The shapes were validated above, so these calls cannot fail.
	for _, m := range []*Matrix{l.Q, l.K, l.V, l.Gate, l.Up} {
		must(q.MulRight(m.Data, m.Rows, m.Cols))
	}
	for _, m := range []*Matrix{l.O, l.Down} {
		must(q.MulLeftT(m.Data, m.Rows, m.Cols))
	}
	if opts.HeadRotation {
		rotateHeads(l, heads, opts)
	}
	return nil
}

// rotateHeads applies V_g ← H_g·V_g (and the same to the bias) and
// O_i ← O_i·H_gᵀ for every query head i of group g.
func rotateHeads(l *Layer, heads []*hadamard.Rotation, opts Options) {
	hd := l.Q.Rows / opts.NumHeads
	d := l.V.Cols
	for g, h := range heads {
		must(h.MulLeft(l.V.Data[g*hd*d:(g+1)*hd*d], hd, d))
		if l.VBias != nil {
			must(h.Apply(l.VBias[g*hd : (g+1)*hd]))
		}
	}
	group := opts.NumHeads / opts.NumKVHeads
	for off := 0; off < len(l.O.Data); off += l.O.Cols {
		row := l.O.Data[off : off+l.O.Cols]
		for i := 0; i < opts.NumHeads; i++ {
			// A row segment ρ of O_i becomes ρ·H_gᵀ = (H_g·ρᵀ)ᵀ.
			must(heads[i/group].Apply(row[i*hd : (i+1)*hd]))
		}
	}
}

// RotateEmbedding rotates the embedding table embed [vocab, d] in place:
// E ← E·Q with Q = ResidualRotation(seed, d), so every token vector e
// becomes Qᵀ·e. If the model ties lm_head to the embedding, untie it
// (copy the table) first: the head also absorbs the final norm weight.
func RotateEmbedding(embed *Matrix, seed uint64) error {
	if err := checkMatrix("embed_tokens", embed); err != nil {
		return fmt.Errorf("rotate: rotate embedding: %w", err)
	}
	q, err := ResidualRotation(seed, embed.Cols)
	if err != nil {
		return fmt.Errorf("rotate: rotate embedding: %w", err)
	}
	must(q.MulRight(embed.Data, embed.Rows, embed.Cols))
	return nil
}

// FoldFinalNorm folds the final RMSNorm weight into lm_head
// (W ← W·diag(finalNorm)) and sets finalNorm to 1. On error nothing is
// modified.
func FoldFinalNorm(lmHead *Matrix, finalNorm []float32) error {
	if err := checkInput("lm_head", lmHead, len(finalNorm)); err != nil {
		return fmt.Errorf("rotate: fold final norm (norm length %d): %w", len(finalNorm), err)
	}
	scaleColumns(lmHead, finalNorm)
	setOnes(finalNorm)
	return nil
}

// RotateHead folds the final norm into lmHead [vocab, d] (see
// [FoldFinalNorm]) and rotates its input side: W ← W·Q with
// Q = ResidualRotation(seed, d). On error nothing is modified.
func RotateHead(lmHead *Matrix, finalNorm []float32, seed uint64) error {
	if err := checkInput("lm_head", lmHead, len(finalNorm)); err != nil {
		return fmt.Errorf("rotate: rotate head (norm length %d): %w", len(finalNorm), err)
	}
	q, err := ResidualRotation(seed, lmHead.Cols)
	if err != nil {
		return fmt.Errorf("rotate: rotate head: %w", err)
	}
	scaleColumns(lmHead, finalNorm)
	setOnes(finalNorm)
	must(q.MulRight(lmHead.Data, lmHead.Rows, lmHead.Cols))
	return nil
}

// must panics on an error that validation has ruled out.
func must(err error) {
	if err != nil {
		panic("rotate: internal error after validation: " + err.Error())
	}
}
