//go:build !amd64

package kernels

const asmAvailable = false

// tileF32 is never called without the assembly kernels (HasAVX2 is false).
func tileF32(w *float32, ws int, x *float32, xs int, n, rows, toks int, acc []float32) {
	panic("kernels: no assembly kernels on this architecture")
}

// axpy8 is never called without the assembly kernels.
func axpy8(dst *float32, a float32, x *float32, n int) {
	panic("kernels: no assembly kernels on this architecture")
}

func halfToFloat8(dst *float32, src *uint16, n int) {
	panic("kernels: no assembly kernels on this architecture")
}

func roundHalf8(x *float32, n int) {
	panic("kernels: no assembly kernels on this architecture")
}
