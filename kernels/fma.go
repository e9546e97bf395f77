package kernels

import "math"

// fma32 returns a·b+c rounded once to float32, the result of the
// VFMADD231PS instruction. The product of two float32 values is exact in
// float64; the float64 sum is then correct except when it falls exactly
// halfway between two float32 values, where the sign of the sum's
// rounding error decides the direction. Results too small for a normal
// float32 take the slow exact path.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	r := float32(s)
	bits := math.Float64bits(s)
	if bits&(1<<29-1) != 1<<28 {
		if e := bits >> 52 & 0x7ff; e > 1023-126 || s == 0 {
			return r
		}
		return fma32Slow(a, b, c)
	}
	if e := bits >> 52 & 0x7ff; e <= 1023-126 {
		return fma32Slow(a, b, c)
	}
	// s is a tie: the exact error of the float64 sum decides.
	bb := s - p
	err := (p - (s - bb)) + (float64(c) - bb)
	switch {
	case err > 0 && float64(r) < s:
		r = math.Nextafter32(r, float32(math.Inf(1)))
	case err < 0 && float64(r) > s:
		r = math.Nextafter32(r, float32(math.Inf(-1)))
	}
	return r
}
