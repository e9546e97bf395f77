package quant

import (
	"errors"
	"math"
)

// The reference i-quant quantizers reproduce ggml's quantize_row_iq*_impl
// byte for byte, with or without an importance matrix, under the same
// float32 discipline as the other reference quantizers (see doc.go): every
// product that is added is rounded first, and the operations keep C's
// order.

// Group-max thresholds below which ggml treats a group as all zero.
const (
	groupMaxEpsIQ3XXS = float32(1e-8)
	groupMaxEpsIQ2S   = float32(1e-8)
	groupMaxEpsIQ1M   = float32(1e-7)
	groupMaxEpsIQ1S   = float32(1e-12)
)

// ErrNeedsImportance is returned (wrapped) by QuantizeRef for the types
// llama.cpp quantizes only with an importance matrix (Type.NeedsImportance).
var ErrNeedsImportance = errors.New("the type needs an importance matrix (ggml_quantize_requires_imatrix); use QuantizeRefWeighted")

// NeedsImportance reports whether llama.cpp refuses to quantize t without an
// importance matrix (ggml_quantize_requires_imatrix): IQ2_XXS, IQ2_XS and
// IQ1_S.
func (t Type) NeedsImportance() bool {
	return t == IQ2_XXS || t == IQ2_XS || t == IQ1_S
}

// The codec table's reference quantizers of the i-quants that llama.cpp
// quantizes without an importance matrix. Without one the weights do not
// depend on the column, so the rows may come concatenated.
func quantizeRowIQ2SRef(dst []byte, src []float32)   { quantizeRowIQ2S(dst, src, nil) }
func quantizeRowIQ3XXSRef(dst []byte, src []float32) { quantizeRowIQ3XXS(dst, src, nil) }
func quantizeRowIQ3SRef(dst []byte, src []float32)   { quantizeRowIQ3S(dst, src, nil) }
func quantizeRowIQ1MRef(dst []byte, src []float32)   { quantizeRowIQ1M(dst, src, nil) }

// iqWeights fills w with ggml's i-quant weights for the group xb starting at
// column col of the row: importance[col+i]·√(sigma2 + x²) with an importance,
// x² without.
func iqWeights(w, xb, importance []float32, col int, sigma2 float32) {
	if importance != nil {
		qw := importance[col : col+len(xb)]
		for i, x := range xb {
			w[i] = qw[i] * sqrtf(sigma2+float32(x*x))
		}
		return
	}
	for i, x := range xb {
		w[i] = x * x
	}
}

// sumSquares is Σ x² in float32, in order.
func sumSquares(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s
}

// foldSigns stores |x| of the 8 values xb in xval and returns their sign
// bits. With parity, an odd number of negative values is made even by
// flipping the value of least w·x² (xval then holds it negated), so that the
// 7-bit sign index of IQ2_XXS, IQ2_XS and IQ3_XXS can hold the signs.
func foldSigns(xval, xb, w []float32, parity bool) uint8 {
	var s uint8
	nflip := 0
	for i := range 8 {
		if xb[i] >= 0 {
			xval[i] = xb[i]
		} else {
			xval[i] = -xb[i]
			nflip++
			s |= 1 << i
		}
	}
	if parity && nflip%2 != 0 {
		imin := 0
		min := w[0] * xb[0] * xb[0]
		for i := 1; i < 8; i++ {
			if ax := w[i] * xb[i] * xb[i]; ax < min {
				min, imin = ax, i
			}
		}
		xval[imin] = -xval[imin]
		s ^= 1 << imin
	}
	return s
}

// flipSigns inverts sign bits (7-bit indices with parity, 8 bits without),
// for the groups whose scale came out negative.
func flipSigns(signs []uint8, parity bool) {
	for k := range signs {
		signs[k] = ^signs[k]
		if parity {
			signs[k] &= 127
		}
	}
}

// maxOf is the largest of x by C's MAX (x non-empty).
func maxOf(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = maxf(m, v)
	}
	return m
}

// maxAbsOf is the largest |x| by C's MAX, starting from |x[0]|.
func maxAbsOf(x []float32) float32 {
	m := abs32(x[0])
	for _, v := range x[1:] {
		m = maxf(m, abs32(v))
	}
	return m
}

// iqLevel is ggml's nearest_int(0.5·(id·x − 1)) clamped to [0, kmax−1]: the
// level whose odd value 2l+1 is nearest to id·x.
func iqLevel(id, x float32, kmax int32) int32 {
	return clampInt(nearestInt(0.5*(float32(id*x)-1)), 0, kmax-1)
}

// iqKey packs the levels of one group at bitsPer bits each.
func iqKey(L []int8, bitsPer int) int {
	key := 0
	for i, l := range L {
		key |= int(l) << (bitsPer * i)
	}
	return key
}

// iqBestNeighbour is iq2_find_best_neighbour and iq3_find_best_neighbour:
// the neighbour of least Σ w·(scale·q − x)² (q the odd grid values), whose
// levels it writes to L. It returns −1 when no distance is below FLT_MAX
// (NaN input; ggml aborts there) and then leaves L alone.
func iqBestNeighbour(tb *iqTable, neighbours []uint16, xval, w []float32, scale float32, L []int8) int {
	best := float32(math.MaxFloat32)
	gi := -1
	for _, k := range neighbours {
		var d2 float32
		for i, p := range tb.point(int(k)) {
			diff := float32(scale*float32(p)) - xval[i]
			d2 += float32(w[i] * diff * diff)
		}
		if d2 < best {
			best, gi = d2, int(k)
		}
	}
	if gi >= 0 {
		iqSetLevels(tb, gi, L)
	}
	return gi
}

// iqSetLevels writes the levels of grid point k to L.
func iqSetLevels(tb *iqTable, k int, L []int8) {
	for i, p := range tb.point(k) {
		L[i] = (p - 1) / 2
	}
}

// iqGridIndex is the grid index of the levels L, or −1 off the grid.
func iqGridIndex(tb *iqTable, L []int8, bitsPer int) int {
	key := iqKey(L, bitsPer)
	if key >= len(tb.kmap) {
		return -1
	}
	if gi := tb.kmap[key]; gi >= 0 {
		return int(gi)
	}
	return -1
}

// iqSnap quantizes the group xval (dim values) at the inverse scale id to
// levels in L (clamped to [0, kmax−1]); off the grid it takes the best
// neighbour for the scale. It returns the grid index (−1 only for NaN
// input) and whether the levels were on the grid.
func iqSnap(tb *iqTable, xval, w []float32, id, scale float32, kmax int32, bitsPer int, L []int8) (int, bool) {
	for i := range L {
		L[i] = int8(iqLevel(id, xval[i], kmax))
	}
	key := iqKey(L, bitsPer)
	if gi := tb.kmap[key]; gi >= 0 {
		return int(gi), true
	}
	return iqBestNeighbour(tb, tb.near(key), xval, w, scale, L), false
}

// oddSums is Σ w·x·(2L+1) and Σ w·(2L+1)² in order.
func oddSums(xval, w []float32, L []int8) (sumqx, sumq2 float32) {
	for i, l := range L {
		q := float32(2*int32(l) + 1)
		sumqx += float32(w[i] * xval[i] * q)
		sumq2 += float32(w[i] * q * q)
	}
	return sumqx, sumq2
}

// onesImportance is an importance of 1 for each of n columns (none for n < 1).
func onesImportance(n int) []float32 {
	imp := make([]float32, max(n, 0))
	for i := range imp {
		imp[i] = 1
	}
	return imp
}
