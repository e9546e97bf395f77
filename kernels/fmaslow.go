package kernels

import "math/big"

// fma32Slow is fma32 by exact big-float arithmetic, for results near the
// float32 subnormal range where the float64 shortcut's tie test does not
// apply.
func fma32Slow(a, b, c float32) float32 {
	var x, y, z big.Float
	x.SetPrec(0).SetFloat64(float64(a))
	y.SetPrec(0).SetFloat64(float64(b))
	z.SetPrec(0).SetFloat64(float64(c))
	x.SetPrec(100).Mul(&x, &y) // exact: 48 bits
	x.SetPrec(400).Add(&x, &z) // exact: exponents differ by less than 350
	f, _ := x.Float32()
	return f
}
