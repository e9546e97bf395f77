package hadamard

import (
	"fmt"
	"math/bits"
)

// golden is the SplitMix64 increment, 2^64 divided by the golden ratio.
const golden = 0x9E3779B97F4A7C15

// mix64 is the SplitMix64 output function (Stafford's "Mix13" finaliser).
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// splitMix64 is the standard SplitMix64 generator (Steele, Lea & Flood,
// 2014): state += golden; return mix64(state).
type splitMix64 struct{ state uint64 }

func (g *splitMix64) next() uint64 {
	g.state += golden
	return mix64(g.state)
}

// signKey derives the SplitMix64 starting state for (seed, n, stream).
func signKey(seed uint64, n int, stream uint64) uint64 {
	return mix64(mix64(mix64(seed)^uint64(n)) ^ stream)
}

// Signs returns the n random signs (each +1 or -1) that [New] uses for the
// rotation of size n with the given seed and stream tag. The generator is
// fixed and documented so that anyone can reproduce the signs:
//
//	mix64(z)  = z ^= z>>30; z *= 0xBF58476D1CE4E5B9;
//	            z ^= z>>27; z *= 0x94D049BB133111EB; z ^= z>>31
//	key       = mix64(mix64(mix64(seed) XOR uint64(n)) XOR stream)
//	word[k]   = mix64(key + (k+1)·0x9E3779B97F4A7C15)   (k = 0, 1, …)
//	sign[i]   = -1 if bit (i mod 64) of word[i div 64] is 1, else +1
//
// All arithmetic is on uint64 modulo 2^64 and bit 0 is the least
// significant bit. word[k] is exactly the k-th output of the standard
// SplitMix64 generator seeded with key. The stream tag lets one seed yield
// independent sign vectors for different purposes (for example the
// residual-stream rotation and per-head rotations) of the same size.
//
// Signs panics if n is negative.
func Signs(n int, seed, stream uint64) []int8 {
	if n < 0 {
		panic(fmt.Sprintf("hadamard: Signs of negative length %d", n))
	}
	out := make([]int8, n)
	g := splitMix64{state: signKey(seed, n, stream)}
	for i := 0; i < n; i += 64 {
		w := g.next()
		for j := 0; j < 64 && i+j < n; j++ {
			if w>>uint(j)&1 == 1 {
				out[i+j] = -1
			} else {
				out[i+j] = 1
			}
		}
	}
	return out
}

// BlockSize returns the size of the Hadamard blocks used for a rotation of
// size n: the largest power of two dividing n (n itself when n is a power
// of two). It returns 0 for n <= 0.
func BlockSize(n int) int {
	if n <= 0 {
		return 0
	}
	return 1 << bits.TrailingZeros(uint(n))
}

// Rotation is a randomised Hadamard rotation Q = B·diag(s) of size n (see
// the package documentation and [New]). A Rotation is immutable after
// construction and safe for concurrent use.
type Rotation struct {
	n     int
	block int
	scale float32   // 1/sqrt(block)
	signs []float32 // s_i as ±1
	pre   []float32 // s_i/sqrt(block), applied before the transform in Apply
}

// New returns the randomised Hadamard rotation Q = B·diag(s) of size n,
// with s = Signs(n, seed, stream).
//
// When n is a power of two, B = H_n and Q mixes every coordinate with every
// other one. Otherwise n = b·m with b = BlockSize(n) a power of two and m
// odd, and B = diag(H_b, …, H_b) is block-diagonal with m blocks of size b;
// each block still gets its own slice of the sign vector s. This keeps Q
// exactly orthogonal, costs O(n log b), and needs no tables of special
// Hadamard matrices, but it only mixes coordinates within a block of b, so
// outliers are spread less when b is small (for example n = 172 = 4·43
// mixes in blocks of only 4). Realistic hidden sizes factor well:
// 896 = 7·128, 5120 = 5·1024, 11008 = 43·256, 14336 = 7·2048. Building
// H_{12}, H_{20}, H_{28}, H_{172} (Paley constructions) and taking Kronecker
// products would mix fully at these sizes but needs hard-coded matrices and
// an O(n·m) step; that is left as a possible extension.
//
// New returns an error when n <= 0.
func New(n int, seed, stream uint64) (*Rotation, error) {
	if n <= 0 {
		return nil, fmt.Errorf("hadamard: rotation size %d must be positive", n)
	}
	b := BlockSize(n)
	r := &Rotation{
		n:     n,
		block: b,
		scale: normScale(b),
		signs: make([]float32, n),
		pre:   make([]float32, n),
	}
	for i, s := range Signs(n, seed, stream) {
		r.signs[i] = float32(s)
		r.pre[i] = float32(s) * r.scale
	}
	return r, nil
}

// N returns the size n of the rotation.
func (r *Rotation) N() int { return r.n }

// BlockSize returns the size b of the Hadamard blocks (b = n when n is a
// power of two).
func (r *Rotation) BlockSize() int { return r.block }

// Signs returns a copy of the sign vector s (entries ±1).
func (r *Rotation) Signs() []int8 {
	out := make([]int8, r.n)
	for i, s := range r.signs {
		out[i] = int8(s)
	}
	return out
}

func (r *Rotation) checkVec(x []float32, op string) error {
	if len(x) != r.n {
		return fmt.Errorf("hadamard: %s: vector length %d, rotation size %d", op, len(x), r.n)
	}
	return nil
}

// Apply computes x ← Q·x in place: signs first, then the block transform.
func (r *Rotation) Apply(x []float32) error {
	if err := r.checkVec(x, "Apply"); err != nil {
		return err
	}
	r.apply(x)
	return nil
}

// ApplyT computes x ← Qᵀ·x in place: the block transform, then the signs.
func (r *Rotation) ApplyT(x []float32) error {
	if err := r.checkVec(x, "ApplyT"); err != nil {
		return err
	}
	r.applyT(x)
	return nil
}

func (r *Rotation) apply(x []float32) {
	b := r.block
	for off := 0; off < r.n; off += b {
		fwhtSigned(x[off:off+b:off+b], r.pre[off:off+b:off+b])
	}
}

func (r *Rotation) applyT(x []float32) {
	b := r.block
	for off := 0; off < r.n; off += b {
		fwhtScaled(x[off:off+b:off+b], r.scale)
	}
	s := r.signs[:len(x)]
	for i := range x {
		x[i] *= s[i]
	}
}

func (r *Rotation) checkMat(data []float32, rows, cols int, op string, wantRows bool) error {
	if rows < 0 || cols < 0 || len(data) != rows*cols {
		return fmt.Errorf("hadamard: %s: data length %d does not match shape [%d %d]", op, len(data), rows, cols)
	}
	if wantRows && rows != r.n {
		return fmt.Errorf("hadamard: %s: matrix shape [%d %d] needs %d rows for rotation size %d", op, rows, cols, r.n, r.n)
	}
	if !wantRows && cols != r.n {
		return fmt.Errorf("hadamard: %s: matrix shape [%d %d] needs %d columns for rotation size %d", op, rows, cols, r.n, r.n)
	}
	return nil
}

// MulRight computes M ← M·Q in place for the row-major matrix M of shape
// [rows, cols] stored in data; cols must equal N(). Equivalently every row
// m of M (viewed as a column vector) becomes Qᵀ·m.
func (r *Rotation) MulRight(data []float32, rows, cols int) error {
	if err := r.checkMat(data, rows, cols, "MulRight", false); err != nil {
		return err
	}
	for off := 0; off < len(data); off += cols {
		r.applyT(data[off : off+cols : off+cols])
	}
	return nil
}

// MulRightT computes M ← M·Qᵀ in place (every row m becomes Q·m); cols must
// equal N().
func (r *Rotation) MulRightT(data []float32, rows, cols int) error {
	if err := r.checkMat(data, rows, cols, "MulRightT", false); err != nil {
		return err
	}
	for off := 0; off < len(data); off += cols {
		r.apply(data[off : off+cols : off+cols])
	}
	return nil
}

// MulLeft computes M ← Q·M in place for the row-major matrix M of shape
// [rows, cols]; rows must equal N(). Every column of M becomes Q times it.
func (r *Rotation) MulLeft(data []float32, rows, cols int) error {
	if err := r.checkMat(data, rows, cols, "MulLeft", true); err != nil {
		return err
	}
	r.mulLeft(data, cols, r.apply)
	return nil
}

// MulLeftT computes M ← Qᵀ·M in place; rows must equal N().
func (r *Rotation) MulLeftT(data []float32, rows, cols int) error {
	if err := r.checkMat(data, rows, cols, "MulLeftT", true); err != nil {
		return err
	}
	r.mulLeft(data, cols, r.applyT)
	return nil
}

// leftTile is the number of columns gathered at once by mulLeft.
const leftTile = 16

// mulLeft transforms the columns of the [n, cols] matrix in data with f,
// leftTile columns at a time: gather them into contiguous vectors,
// transform, scatter back. This reads and writes the matrix once instead of
// once per butterfly stage. The gathered vectors are stored with a padded
// stride so that they do not all map to the same cache sets when n is a
// power of two.
func (r *Rotation) mulLeft(data []float32, cols int, f func([]float32)) {
	n := r.n
	if n == 0 || cols == 0 {
		return
	}
	stride := n + 16
	buf := make([]float32, leftTile*stride)
	for c0 := 0; c0 < cols; c0 += leftTile {
		w := min(leftTile, cols-c0)
		for i := 0; i < n; i++ {
			src := data[i*cols+c0 : i*cols+c0+w]
			for t, v := range src {
				buf[t*stride+i] = v
			}
		}
		for t := 0; t < w; t++ {
			f(buf[t*stride : t*stride+n : t*stride+n])
		}
		for i := 0; i < n; i++ {
			dst := data[i*cols+c0 : i*cols+c0+w]
			for t := range dst {
				dst[t] = buf[t*stride+i]
			}
		}
	}
}
