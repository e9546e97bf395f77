package quant

import "encoding/binary"

// Q4_1, Q5_0 and Q5_1: the other 32-element legacy blocks, the types
// llama.cpp falls back to for rows that are not a multiple of 256.
//
//	Q4_1 block (20 bytes): d fp16 | m fp16 | qs [16]byte             x = d·q + m, q in [0, 15]
//	Q5_0 block (22 bytes): d fp16 | qh [4]byte | qs [16]byte         x = d·(q − 16), q in [0, 31]
//	Q5_1 block (24 bytes): d fp16 | m fp16 | qh [4]byte | qs [16]byte x = d·q + m, q in [0, 31]
//
// As in Q4_0, byte j of qs holds element j in its low nibble and element
// j+16 in its high nibble. The fifth bit of element j is bit j of qh (a
// little-endian uint32).

const (
	qk41     = 32
	blockQ41 = 20
	qk50     = 32
	blockQ50 = 22
	qk51     = 32
	blockQ51 = 24
	half32   = 16 // half of a 32-element block
)

// minScale is the start of the Q4_1 and Q5_1 reference quantizers: the
// block's min and max (found from ±FLT_MAX by comparisons that skip NaN),
// d = (max − min)/nmax and m = min written as fp16 into y[0:4]. It returns
// the min and 1/d (0 when d is 0).
func minScale(y []byte, x []float32, nmax float32) (lo, id float32) {
	lo, hi := maxFloat32, -maxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	d := (hi - lo) / nmax
	if d != 0 {
		id = 1 / d
	}
	putF16(y[0:], d)
	putF16(y[2:], lo)
	return lo, id
}

// maxFloat32 is C's FLT_MAX.
const maxFloat32 = float32(3.40282346638528859811704183484516925440e+38)

// signedMax32 is the value of largest magnitude of x (the first one on
// ties, NaN skipped, 0 for an all-zero block), as ggml's quantizers pick
// it (Q4_0, Q5_0, make_qx_quants, make_q3_quants, IQ4_NL).
func signedMax32(x []float32) float32 {
	var amax, m float32
	for _, v := range x {
		if av := abs32(v); amax < av {
			amax, m = av, v
		}
	}
	return m
}

// truncMin is MIN(hi, (int8_t)(v + off)) as a byte: v + off truncated
// toward zero to int8, then capped at hi.
func truncMin(v, off float32, hi int8) uint8 {
	l := int8(int32(v + off))
	if l > hi {
		l = hi
	}
	return uint8(l)
}

// quantizeRowQ41Ref is quantize_row_q4_1_ref: d = (max − min)/15, m = min,
// q = min(15, trunc((x − min)/d + 0.5)).
func quantizeRowQ41Ref(dst []byte, src []float32) {
	nb := len(src) / qk41
	for i := 0; i < nb; i++ {
		x := src[i*qk41 : (i+1)*qk41]
		y := dst[i*blockQ41 : (i+1)*blockQ41]
		lo, id := minScale(y, x, 15)
		qs := y[4:blockQ41]
		for j := 0; j < half32; j++ {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[half32+j] - lo) * id)
			qs[j] = truncMin(x0, 0.5, 15) | truncMin(x1, 0.5, 15)<<4
		}
	}
}

// dequantizeRowQ41 is dequantize_row_q4_1.
func dequantizeRowQ41(dst []float32, src []byte) {
	nb := len(dst) / qk41
	for i := 0; i < nb; i++ {
		b := src[i*blockQ41 : (i+1)*blockQ41]
		y := dst[i*qk41 : (i+1)*qk41]
		d, m := getF16(b[0:]), getF16(b[2:])
		qs := b[4:blockQ41]
		for j := 0; j < half32; j++ {
			y[j] = float32(float32(qs[j]&0x0F)*d) + m
			y[j+half32] = float32(float32(qs[j]>>4)*d) + m
		}
	}
}

// putQ5 packs 32 five-bit levels into qh (bit j = fifth bit of element j)
// and qs (nibbles as in Q4_0).
func putQ5(qh, qs []byte, L *[32]uint8) {
	var h uint32
	for j := 0; j < half32; j++ {
		l0, l1 := L[j], L[j+half32]
		qs[j] = l0&0x0F | (l1&0x0F)<<4
		h |= uint32(l0&0x10) >> 4 << j
		h |= uint32(l1&0x10) >> 4 << (j + half32)
	}
	binary.LittleEndian.PutUint32(qh, h)
}

// q5Levels unpacks the 32 five-bit levels of a Q5_0/Q5_1 block.
func q5Levels(L *[32]int32, qh, qs []byte) {
	h := binary.LittleEndian.Uint32(qh)
	for j := 0; j < half32; j++ {
		L[j] = int32(qs[j]&0x0F) | int32((h>>j)<<4&0x10)
		L[j+half32] = int32(qs[j]>>4) | int32((h>>(j+12))&0x10)
	}
}

// quantizeRowQ50Ref is quantize_row_q5_0_ref: d = (value of largest
// magnitude)/−16, q = min(31, trunc(x/d + 16.5)).
func quantizeRowQ50Ref(dst []byte, src []float32) {
	var L [32]uint8
	nb := len(src) / qk50
	for i := 0; i < nb; i++ {
		x := src[i*qk50 : (i+1)*qk50]
		y := dst[i*blockQ50 : (i+1)*blockQ50]
		d := signedMax32(x) / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y[0:], d)
		for j, v := range x {
			L[j] = truncMin(float32(v*id), 16.5, 31)
		}
		putQ5(y[2:6], y[6:blockQ50], &L)
	}
}

// dequantizeRowQ50 is dequantize_row_q5_0.
func dequantizeRowQ50(dst []float32, src []byte) {
	var L [32]int32
	nb := len(dst) / qk50
	for i := 0; i < nb; i++ {
		b := src[i*blockQ50 : (i+1)*blockQ50]
		y := dst[i*qk50 : (i+1)*qk50]
		d := getF16(b[0:])
		q5Levels(&L, b[2:6], b[6:blockQ50])
		for j, l := range L {
			y[j] = float32(l-16) * d
		}
	}
}

// quantizeRowQ51Ref is quantize_row_q5_1_ref: d = (max − min)/31, m = min,
// q = trunc((x − min)/d + 0.5) (no cap: the conversion to uint8 wraps).
func quantizeRowQ51Ref(dst []byte, src []float32) {
	var L [32]uint8
	nb := len(src) / qk51
	for i := 0; i < nb; i++ {
		x := src[i*qk51 : (i+1)*qk51]
		y := dst[i*blockQ51 : (i+1)*blockQ51]
		lo, id := minScale(y, x, 31)
		for j, v := range x {
			L[j] = uint8(int32(float32((v-lo)*id) + 0.5))
		}
		putQ5(y[4:8], y[8:blockQ51], &L)
	}
}

// dequantizeRowQ51 is dequantize_row_q5_1.
func dequantizeRowQ51(dst []float32, src []byte) {
	var L [32]int32
	nb := len(dst) / qk51
	for i := 0; i < nb; i++ {
		b := src[i*blockQ51 : (i+1)*blockQ51]
		y := dst[i*qk51 : (i+1)*qk51]
		d, m := getF16(b[0:]), getF16(b[2:])
		q5Levels(&L, b[4:8], b[8:blockQ51])
		for j, l := range L {
			y[j] = float32(float32(l)*d) + m
		}
	}
}
