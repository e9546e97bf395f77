package quant

import (
	"encoding/binary"
	"math/bits"
)

// The i-quants (llama.cpp's "IQ" types) code a super-block of 256 values as
// groups of 8 (IQ2_*, IQ1_*) or 4 (IQ3_*) whose magnitudes are one point of
// a fixed codebook grid (iqgrids.go), with per-group signs and small integer
// group scales under one fp16 scale:
//
//	IQ2_XXS (66 bytes):  d fp16 | 8 × (4 grid bytes | uint32: 4 × 7 sign bits, 4-bit scale)
//	IQ2_XS (74 bytes):   d fp16 | 32 × uint16 (9-bit grid index, 7 sign bits) | scales [8] (2 × 4 bits)
//	IQ2_S (82 bytes):    d fp16 | qs [32] (grid index low bits) | signs [32] | qh [8] (4 × 2 high bits) | scales [8]
//	IQ3_XXS (98 bytes):  d fp16 | qs [64] (grid bytes) | 8 × uint32 (4 × 7 sign bits, 4-bit scale)
//	IQ3_S (110 bytes):   d fp16 | qs [64] (grid index low bits) | qh [8] (high bits) | signs [32] | scales [4] (2 × 4 bits)
//	IQ1_S (50 bytes):    d fp16 | qs [32] (grid index low bits) | 8 × uint16 (4 × 3 high bits, 3-bit scale, shift sign)
//	IQ1_M (56 bytes):    qs [32] | qh [16] (2 × (3 high bits, shift sign)) | scales [8] (4 × uint16: 4 × 3-bit scales, 4 bits of d)
//
// The 7-bit sign indices of IQ2_XXS, IQ2_XS and IQ3_XXS carry the signs of
// the first 7 values of a group of 8; the 8th sign makes the number of
// negative values even (iqSigns). IQ1 grid values are −1, 0 or 1, moved by
// ±1/8 (the shift) before scaling.

const (
	blockIQ2XXS = 66
	blockIQ2XS  = 74
	blockIQ2S   = 82
	blockIQ3XXS = 98
	blockIQ3S   = 110
	blockIQ1S   = 50
	blockIQ1M   = 56

	// iq1Delta is IQ1S_DELTA and IQ1M_DELTA: the shift of the IQ1 grids.
	iq1Delta = float32(0.125)
)

// iqSigns expands a 7-bit sign index to the signs of 8 values (bit j set:
// value j is negative): bit 7 is the parity of the other seven, so that the
// number of negative values is even. This is ggml's ksigns_iq2xs table
// (TestIQGridsFromOracle checks it against the library).
func iqSigns(i uint8) uint8 {
	i &= 127
	return i | uint8(bits.OnesCount8(i)&1)<<7
}

// iqNeg negates v when bit j of the sign mask s is set. ggml writes a
// multiplication by ±1, which GCC compiles to a sign flip: a NaN value has
// its sign flipped too, and so it does here.
func iqNeg(v float32, s uint8, j int) float32 {
	if s>>j&1 != 0 {
		return -v
	}
	return v
}

// iq8Point decodes one 8-value grid point g (magnitudes as bytes) with the
// signs s under the scale dl.
func iq8Point(o []float32, dl float32, g uint64, s uint8) {
	for j := range o[:8] {
		o[j] = iqNeg(dl*float32(uint8(g>>(8*j))), s, j)
	}
}

// iq2Scales are the scales of the two halves of a 32-value group of IQ2_XS
// and IQ2_S: d·(0.5 + s)/4 for the low and the high nibble of sc.
func iq2Scales(d float32, sc uint8) [2]float32 {
	return [2]float32{d * (0.5 + float32(sc&0xf)) * 0.25, d * (0.5 + float32(sc>>4)) * 0.25}
}

func dequantizeRowIQ2XXS(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ2XXS; i++ {
		b := src[i*blockIQ2XXS : (i+1)*blockIQ2XXS]
		d := getF16(b)
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			q := b[2+8*ib : 2+8*ib+8]
			aux := binary.LittleEndian.Uint32(q[4:])
			db := d * (0.5 + float32(aux>>28)) * 0.25
			for l := 0; l < 4; l++ {
				g := iq2xxsGrid[q[l]]
				s := iqSigns(uint8(aux >> (7 * l)))
				iq8Point(y[32*ib+8*l:32*ib+8*l+8], db, g, s)
			}
		}
	}
}

func dequantizeRowIQ2XS(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ2XS; i++ {
		b := src[i*blockIQ2XS : (i+1)*blockIQ2XS]
		d := getF16(b)
		sc := b[2+64 : 2+64+8]
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			db := iq2Scales(d, sc[ib])
			for l := 0; l < 4; l++ {
				v := binary.LittleEndian.Uint16(b[2+2*(4*ib+l):])
				g := iq2xsGrid[v&511]
				s := iqSigns(uint8(v >> 9))
				dl := db[l/2]
				iq8Point(y[32*ib+8*l:32*ib+8*l+8], dl, g, s)
			}
		}
	}
}

func dequantizeRowIQ2S(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ2S; i++ {
		b := src[i*blockIQ2S : (i+1)*blockIQ2S]
		d := getF16(b)
		qs, signs, qh, sc := b[2:34], b[34:66], b[66:74], b[74:82]
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			db := iq2Scales(d, sc[ib])
			for l := 0; l < 4; l++ {
				g := iq2sGrid[int(qs[4*ib+l])|int(qh[ib])<<(8-2*l)&0x300]
				s := signs[4*ib+l]
				dl := db[l/2]
				iq8Point(y[32*ib+8*l:32*ib+8*l+8], dl, g, s)
			}
		}
	}
}

func dequantizeRowIQ3XXS(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ3XXS; i++ {
		b := src[i*blockIQ3XXS : (i+1)*blockIQ3XXS]
		d := getF16(b)
		qs, ss := b[2:66], b[66:98]
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			aux := binary.LittleEndian.Uint32(ss[4*ib:])
			db := d * (0.5 + float32(aux>>28)) * 0.5
			for l := 0; l < 4; l++ {
				s := iqSigns(uint8(aux >> (7 * l)))
				g1, g2 := iq3xxsGrid[qs[8*ib+2*l]], iq3xxsGrid[qs[8*ib+2*l+1]]
				o := y[32*ib+8*l : 32*ib+8*l+8]
				for j := 0; j < 4; j++ {
					o[j] = iqNeg(db*float32(uint8(g1>>(8*j))), s, j)
					o[j+4] = iqNeg(db*float32(uint8(g2>>(8*j))), s, j+4)
				}
			}
		}
	}
}

func dequantizeRowIQ3S(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ3S; i++ {
		b := src[i*blockIQ3S : (i+1)*blockIQ3S]
		d := getF16(b)
		qs, qh, signs, sc := b[2:66], b[66:74], b[74:106], b[106:110]
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			// Sub-blocks 2k and 2k+1 share scales[k]: low and high nibble.
			db := d * float32(1+2*int(sc[ib/2]>>(4*(ib%2))&0xf))
			h := int(qh[ib])
			for l := 0; l < 4; l++ {
				g1 := iq3sGrid[int(qs[8*ib+2*l])|(h<<(8-2*l))&256]
				g2 := iq3sGrid[int(qs[8*ib+2*l+1])|(h<<(7-2*l))&256]
				s := signs[4*ib+l]
				o := y[32*ib+8*l : 32*ib+8*l+8]
				for j := 0; j < 4; j++ {
					o[j] = iqNeg(db*float32(uint8(g1>>(8*j))), s, j)
					o[j+4] = iqNeg(db*float32(uint8(g2>>(8*j))), s, j+4)
				}
			}
		}
	}
}

func dequantizeRowIQ1S(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ1S; i++ {
		b := src[i*blockIQ1S : (i+1)*blockIQ1S]
		d := getF16(b)
		qs := b[2:34]
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			h := binary.LittleEndian.Uint16(b[34+2*ib:])
			dl := d * float32(2*int(h>>12&7)+1)
			delta := iq1Delta
			if h&0x8000 != 0 {
				delta = -iq1Delta
			}
			for l := 0; l < 4; l++ {
				g := iq1sGrid[int(qs[4*ib+l])|int(h>>(3*l)&7)<<8]
				o := y[32*ib+8*l : 32*ib+8*l+8]
				for j := range o {
					o[j] = dl * (float32(int8(g>>(8*j))) + delta)
				}
			}
		}
	}
}

// iq1mScale reassembles IQ1_M's fp16 super-block scale from the top nibbles
// of its four scale words.
func iq1mScale(sc []byte) float32 {
	le := binary.LittleEndian
	u := le.Uint16(sc)>>12 | le.Uint16(sc[2:])>>8&0x00f0 | le.Uint16(sc[4:])>>4&0x0f00 | le.Uint16(sc[6:])&0xf000
	return fp16ToFP32(u)
}

func dequantizeRowIQ1M(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ1M; i++ {
		b := src[i*blockIQ1M : (i+1)*blockIQ1M]
		qs, qh, sc := b[0:32], b[32:48], b[48:56]
		d := iq1mScale(sc)
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			w := int(binary.LittleEndian.Uint16(sc[2*(ib/2):]))
			dl := [2]float32{
				d * float32(2*(w>>(6*(ib%2))&7)+1),
				d * float32(2*(w>>(6*(ib%2)+3)&7)+1),
			}
			for l := 0; l < 4; l++ {
				h := int(qh[2*ib+l/2]) >> (4 * (l % 2)) // 3 index bits, then the shift sign
				g := iq1sGrid[int(qs[4*ib+l])|(h&7)<<8]
				delta := iq1Delta
				if h&8 != 0 {
					delta = -iq1Delta
				}
				s := dl[l/2]
				o := y[32*ib+8*l : 32*ib+8*l+8]
				for j := range o {
					o[j] = s * (float32(int8(g>>(8*j))) + delta)
				}
			}
		}
	}
}
