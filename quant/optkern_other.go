//go:build !amd64

package quant

func gridAsmAvailable() bool { return false }

// gridStats8 is never called without the assembly kernel.
func gridStats8(x, w *float32, n int, c *gridParams, s *gridSums, L *int32) {
	panic("quant: no assembly kernel on this architecture")
}

// gridErr8 is never called without the assembly kernel.
func gridErr8(x, w *float32, n int, c *gridParams) float32 {
	panic("quant: no assembly kernel on this architecture")
}
