// Package hadamard implements fast Walsh–Hadamard transforms and randomised
// Hadamard rotations on float32 data.
//
// # Conventions
//
// H_n denotes the Sylvester (natural-order) Hadamard matrix of order n, a
// power of two, normalised so that it is orthogonal: H_n[i][j] =
// (-1)^popcount(i&j) / sqrt(n). H_n is symmetric, so H_n = H_nᵀ = H_n⁻¹.
//
// A randomised Hadamard rotation of size n is Q = B·diag(s), where s is a
// vector of n signs (±1) drawn from a seed by the generator documented on
// [Signs], and B is H_n when n is a power of two, or the block-diagonal
// matrix diag(H_b, H_b, …, H_b) with b the largest power of two dividing n
// otherwise (see [New] for why). Q is orthogonal: QᵀQ = QQᵀ = I.
//
// All arithmetic is float32; the transform is computed in O(n log n) with
// iterative butterflies and no allocation. Values are never reordered, so
// the result for a given input is bit-identical on every platform: every
// product is wrapped in an explicit float32 conversion, which the Go
// specification guarantees prevents fusing it with a following addition
// into an FMA.
package hadamard

import (
	"fmt"
	"math"
	"math/bits"
)

// IsPowerOfTwo reports whether n is a positive power of two (1 included).
func IsPowerOfTwo(n int) bool {
	return n > 0 && n&(n-1) == 0
}

// FWHT applies the normalised Walsh–Hadamard transform H_n in place to x,
// where n = len(x) must be a power of two (len 1 is the identity). Because
// H_n is symmetric and orthogonal, applying FWHT twice restores x up to
// float32 rounding.
//
// It returns an error, and leaves x untouched, when len(x) is not a power
// of two.
func FWHT(x []float32) error {
	if !IsPowerOfTwo(len(x)) {
		return fmt.Errorf("hadamard: FWHT length %d is not a power of two", len(x))
	}
	fwhtScaled(x, normScale(len(x)))
	return nil
}

// FWHTRows applies FWHT in place to each of the consecutive rows of length
// n stored in data (a row-major matrix with len(data)/n rows). n must be a
// power of two and len(data) a multiple of n.
func FWHTRows(data []float32, n int) error {
	if !IsPowerOfTwo(n) {
		return fmt.Errorf("hadamard: FWHTRows row length %d is not a power of two", n)
	}
	if len(data)%n != 0 {
		return fmt.Errorf("hadamard: FWHTRows data length %d is not a multiple of row length %d", len(data), n)
	}
	s := normScale(n)
	for off := 0; off < len(data); off += n {
		fwhtScaled(data[off:off+n:off+n], s)
	}
	return nil
}

// normScale returns 1/sqrt(n) rounded to float32.
func normScale(n int) float32 {
	return float32(1 / math.Sqrt(float64(n)))
}

// fwhtScaled computes x ← scale·H'x in place, H' the unnormalised Sylvester
// matrix, len(x) a power of two. The scale is applied on the first pass.
func fwhtScaled(x []float32, scale float32) {
	n := len(x)
	if n < 8 {
		for i := range x {
			x[i] = float32(x[i] * scale)
		}
		radix2Stages(x, 1)
		return
	}
	first8(x, scale, nil)
	rest(x)
}

// fwhtSigned computes x ← H'·(w∘x) in place, where w has len(x) entries
// (typically sign·scale). len(x) must be a power of two.
func fwhtSigned(x, w []float32) {
	n := len(x)
	w = w[:n]
	if n < 8 {
		for i := range x {
			x[i] = float32(x[i] * w[i])
		}
		radix2Stages(x, 1)
		return
	}
	first8(x, 0, w)
	rest(x)
}

// radix2Stages runs the radix-2 butterfly stages with strides h, 2h, …,
// n/2. Used for tiny sizes only.
func radix2Stages(x []float32, h int) {
	n := len(x)
	for ; h < n; h *= 2 {
		for i := 0; i < n; i += 2 * h {
			a := x[i : i+h : i+h]
			b := x[i+h : i+2*h : i+2*h]
			b = b[:len(a)]
			for j := range a {
				u, v := a[j], b[j]
				a[j], b[j] = u+v, u-v
			}
		}
	}
}

// first8 performs the first three butterfly stages (strides 1, 2, 4) on
// each aligned block of 8 values, multiplying the inputs by w[i] (when w is
// non-nil) or by scale. len(x) must be a multiple of 8.
func first8(x []float32, scale float32, w []float32) {
	for i := 0; i+8 <= len(x); i += 8 {
		v := x[i : i+8 : i+8]
		var a0, a1, a2, a3, a4, a5, a6, a7 float32
		if w != nil {
			m := w[i : i+8 : i+8]
			a0, a1, a2, a3 = float32(v[0]*m[0]), float32(v[1]*m[1]), float32(v[2]*m[2]), float32(v[3]*m[3])
			a4, a5, a6, a7 = float32(v[4]*m[4]), float32(v[5]*m[5]), float32(v[6]*m[6]), float32(v[7]*m[7])
		} else {
			a0, a1, a2, a3 = float32(v[0]*scale), float32(v[1]*scale), float32(v[2]*scale), float32(v[3]*scale)
			a4, a5, a6, a7 = float32(v[4]*scale), float32(v[5]*scale), float32(v[6]*scale), float32(v[7]*scale)
		}
		b0, b1 := a0+a1, a0-a1
		b2, b3 := a2+a3, a2-a3
		b4, b5 := a4+a5, a4-a5
		b6, b7 := a6+a7, a6-a7
		c0, c2 := b0+b2, b0-b2
		c1, c3 := b1+b3, b1-b3
		c4, c6 := b4+b6, b4-b6
		c5, c7 := b5+b7, b5-b7
		v[0], v[4] = c0+c4, c0-c4
		v[1], v[5] = c1+c5, c1-c5
		v[2], v[6] = c2+c6, c2-c6
		v[3], v[7] = c3+c7, c3-c7
	}
}

// rest performs the butterfly stages with strides 8, 16, …, n/2, three
// stages per pass (radix 8) while possible, then radix 4 or 2.
func rest(x []float32) {
	n := len(x)
	remaining := bits.TrailingZeros(uint(n)) - 3
	h := 8
	for remaining >= 3 {
		radix8Pass(x, h)
		h *= 8
		remaining -= 3
	}
	switch remaining {
	case 2:
		radix4Pass(x, h)
	case 1:
		radix2Stages(x, h)
	}
}

// radix8Pass performs the butterfly stages with strides h, 2h and 4h in one
// sweep over x.
func radix8Pass(x []float32, h int) {
	n := len(x)
	for i := 0; i < n; i += 8 * h {
		s0 := x[i : i+h : i+h]
		s1 := x[i+h : i+2*h : i+2*h]
		s2 := x[i+2*h : i+3*h : i+3*h]
		s3 := x[i+3*h : i+4*h : i+4*h]
		s4 := x[i+4*h : i+5*h : i+5*h]
		s5 := x[i+5*h : i+6*h : i+6*h]
		s6 := x[i+6*h : i+7*h : i+7*h]
		s7 := x[i+7*h : i+8*h : i+8*h]
		s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
		s4, s5, s6, s7 = s4[:len(s0)], s5[:len(s0)], s6[:len(s0)], s7[:len(s0)]
		for j := range s0 {
			a0, a1, a2, a3 := s0[j], s1[j], s2[j], s3[j]
			a4, a5, a6, a7 := s4[j], s5[j], s6[j], s7[j]
			b0, b1 := a0+a1, a0-a1
			b2, b3 := a2+a3, a2-a3
			b4, b5 := a4+a5, a4-a5
			b6, b7 := a6+a7, a6-a7
			c0, c2 := b0+b2, b0-b2
			c1, c3 := b1+b3, b1-b3
			c4, c6 := b4+b6, b4-b6
			c5, c7 := b5+b7, b5-b7
			s0[j], s4[j] = c0+c4, c0-c4
			s1[j], s5[j] = c1+c5, c1-c5
			s2[j], s6[j] = c2+c6, c2-c6
			s3[j], s7[j] = c3+c7, c3-c7
		}
	}
}

// radix4Pass performs the butterfly stages with strides h and 2h in one
// sweep over x.
func radix4Pass(x []float32, h int) {
	n := len(x)
	for i := 0; i < n; i += 4 * h {
		s0 := x[i : i+h : i+h]
		s1 := x[i+h : i+2*h : i+2*h]
		s2 := x[i+2*h : i+3*h : i+3*h]
		s3 := x[i+3*h : i+4*h : i+4*h]
		s1, s2, s3 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)]
		for j := range s0 {
			a0, a1, a2, a3 := s0[j], s1[j], s2[j], s3[j]
			b0, b1 := a0+a1, a0-a1
			b2, b3 := a2+a3, a2-a3
			s0[j], s2[j] = b0+b2, b0-b2
			s1[j], s3[j] = b1+b3, b1-b3
		}
	}
}
