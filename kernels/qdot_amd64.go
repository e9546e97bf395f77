package kernels

import "github.com/ohms-project/adaptq/quant"

//go:generate python3 gen_qdot.py

// The assembly kernels (qdot_amd64.s, written by gen_qdot.py). Each
// writes the eight lanes and the minimum term of one row's dot product.

//go:noescape
func dotQ8_0(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

//go:noescape
func dotQ4_0(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

//go:noescape
func dotIQ4NL(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

//go:noescape
func dotQ5_0(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

//go:noescape
func dotQ4_1(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

//go:noescape
func dotQ5_1(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

//go:noescape
func dotQ4K(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

//go:noescape
func dotQ6K(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

//go:noescape
func dotQ5K(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

//go:noescape
func dotQ2K(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

//go:noescape
func dotQ3K(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

//go:noescape
func dotTQ20(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

//go:noescape
func dotQ8_0x4(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

//go:noescape
func dotQ4_0x4(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

//go:noescape
func dotIQ4NLx4(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

//go:noescape
func dotQ5_0x4(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

//go:noescape
func dotQ4_1x4(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

//go:noescape
func dotQ5_1x4(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

//go:noescape
func dotQ4Kx4(w *byte, nb int, qs *int8, d *float32, bsums *int16, qstride, dstride, bstride int, out *[4][9]float32)

//go:noescape
func dotQ6Kx4(w *byte, nb int, qs *int8, d *float32, bsums *int16, qstride, dstride, bstride int, out *[4][9]float32)

type legacyKernel4 func(w *byte, nb int, qs *int8, d *float32, s *float32, qstride, dstride int, out *[4][9]float32)

type kKernel4 func(w *byte, nb int, qs *int8, d *float32, bsums *int16, qstride, dstride, bstride int, out *[4][9]float32)

// legacyAsm4 wraps a four-token 32-value block kernel.
func legacyAsm4(k legacyKernel4) func(w []byte, a *Acts, tok int, out *[4]float32) {
	return func(w []byte, a *Acts, tok int, out *[4]float32) {
		nb := a.C / 32
		var r [4][9]float32
		var s *float32
		if a.Type == ActQ8_1 {
			s = &a.S[tok*nb]
		}
		_ = a.Qs[(tok+3)*a.C+a.C-1]
		k(&w[0], nb, &a.Qs[tok*a.C], &a.D[tok*nb], s, a.C, 4*nb, &r)
		for i := range 4 {
			out[i] = reduce8((*lanes8)(r[i][:8])) + r[i][8]
		}
	}
}

// kAsm4 wraps a four-token super-block kernel.
func kAsm4(k kKernel4) func(w []byte, a *Acts, tok int, out *[4]float32) {
	return func(w []byte, a *Acts, tok int, out *[4]float32) {
		nb := a.C / 256
		var r [4][9]float32
		_ = a.Qs[(tok+3)*a.C+a.C-1]
		k(&w[0], nb, &a.Qs[tok*a.C], &a.D[tok*nb], &a.Bsums[tok*a.C/16], a.C, 4*nb, 2*(a.C/16), &r)
		for i := range 4 {
			out[i] = reduce8((*lanes8)(r[i][:8])) - r[i][8]
		}
	}
}

type legacyKernel func(w *byte, nb int, qs *int8, d *float32, s *float32, out *[9]float32)

type kKernel func(w *byte, nb int, qs *int8, d *float32, bsums *int16, out *[9]float32)

// legacyAsm wraps a 32-value block kernel: reduce8(lanes) + summs, as
// legacyRef.
func legacyAsm(k legacyKernel) func(w []byte, a *Acts, tok int) float32 {
	return func(w []byte, a *Acts, tok int) float32 {
		nb := a.C / 32
		var out [9]float32
		var s *float32
		if a.Type == ActQ8_1 {
			s = &a.S[tok*nb]
		}
		k(&w[0], nb, &a.Qs[tok*a.C], &a.D[tok*nb], s, &out)
		return reduce8((*lanes8)(out[:8])) + out[8]
	}
}

// kAsm wraps a super-block kernel: reduce8(lanes) − m, as kquantRef.
func kAsm(k kKernel) func(w []byte, a *Acts, tok int) float32 {
	return func(w []byte, a *Acts, tok int) float32 {
		nb := a.C / 256
		var out [9]float32
		k(&w[0], nb, &a.Qs[tok*a.C], &a.D[tok*nb], &a.Bsums[tok*a.C/16], &out)
		return reduce8((*lanes8)(out[:8])) - out[8]
	}
}

// registerAsm adds the assembly dot products to the table.
func registerAsm(t map[quant.Type]*qtype) {
	t[quant.Q8_0].asm = legacyAsm(dotQ8_0)
	t[quant.Q4_0].asm = legacyAsm(dotQ4_0)
	t[typeIQ4_NL].asm = legacyAsm(dotIQ4NL)
	t[typeQ5_0].asm = legacyAsm(dotQ5_0)
	t[typeQ4_1].asm = legacyAsm(dotQ4_1)
	t[typeQ5_1].asm = legacyAsm(dotQ5_1)
	t[quant.Q4_K].asm = kAsm(dotQ4K)
	t[quant.Q6_K].asm = kAsm(dotQ6K)
	t[quant.Q5_K].asm = kAsm(dotQ5K)
	t[quant.Q2_K].asm = kAsm(dotQ2K)
	t[quant.Q3_K].asm = kAsm(dotQ3K)
	t[quant.TQ2_0].asm = kAsm(dotTQ20)
	t[quant.Q8_0].asm4 = legacyAsm4(dotQ8_0x4)
	t[quant.Q4_0].asm4 = legacyAsm4(dotQ4_0x4)
	t[typeIQ4_NL].asm4 = legacyAsm4(dotIQ4NLx4)
	t[typeQ5_0].asm4 = legacyAsm4(dotQ5_0x4)
	t[typeQ4_1].asm4 = legacyAsm4(dotQ4_1x4)
	t[typeQ5_1].asm4 = legacyAsm4(dotQ5_1x4)
	t[quant.Q4_K].asm4 = kAsm4(dotQ4Kx4)
	// dotQ6Kx4 is not registered: through infer's cached decoding its four-token
	// results differ from the one-token kernel's (TestIntegerModeDeterministic),
	// which the kernel tests did not catch. Q6_K uses the one-token kernel.
	_ = kAsm4(dotQ6Kx4)
}
