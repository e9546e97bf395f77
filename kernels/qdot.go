package kernels

import (
	"encoding/binary"
	"fmt"

	"github.com/ohms-project/adaptq/quant"
)

// The ids of the legacy types the quant package may not define yet; the
// kernels follow ggml's block layouts for them.
const (
	typeQ4_1   quant.Type = 3
	typeQ5_0   quant.Type = 6
	typeQ5_1   quant.Type = 7
	typeIQ4_NL quant.Type = 20
)

// qtype describes the integer dot product of one weight type.
type qtype struct {
	name       string
	act        ActType
	blockLen   int // values per weight block
	blockBytes int
	// ref is the portable dot product of one weight row (whole blocks) with
	// token tok of a.
	ref func(w []byte, a *Acts, tok int) float32
	// asm is the assembly version, or nil; it is bit-identical to ref.
	asm func(w []byte, a *Acts, tok int) float32
	// asm4, when set, computes tokens tok..tok+3 at once, each
	// bit-identical to asm (the weight blocks are unpacked once).
	asm4 func(w []byte, a *Acts, tok int, out *[4]float32)
}

// qtypes is a read-only table of the weight types with integer kernels.
var qtypes = map[quant.Type]*qtype{
	quant.Q8_0:  {name: "Q8_0", act: ActQ8_0, blockLen: 32, blockBytes: 34, ref: legacyRef(decodeQ80)},
	quant.Q4_0:  {name: "Q4_0", act: ActQ8_0, blockLen: 32, blockBytes: 18, ref: legacyRef(decodeQ40)},
	typeQ4_1:    {name: "Q4_1", act: ActQ8_1, blockLen: 32, blockBytes: 20, ref: legacyRef(decodeQ41)},
	typeQ5_0:    {name: "Q5_0", act: ActQ8_0, blockLen: 32, blockBytes: 22, ref: legacyRef(decodeQ50)},
	typeQ5_1:    {name: "Q5_1", act: ActQ8_1, blockLen: 32, blockBytes: 24, ref: legacyRef(decodeQ51)},
	typeIQ4_NL:  {name: "IQ4_NL", act: ActQ8_0, blockLen: 32, blockBytes: 18, ref: legacyRef(decodeIQ4NL)},
	quant.Q2_K:  {name: "Q2_K", act: ActQ8_K, blockLen: 256, blockBytes: 84, ref: kquantRef(decodeQ2K)},
	quant.Q3_K:  {name: "Q3_K", act: ActQ8_K, blockLen: 256, blockBytes: 110, ref: kquantRef(decodeQ3K)},
	quant.Q4_K:  {name: "Q4_K", act: ActQ8_K, blockLen: 256, blockBytes: 144, ref: kquantRef(decodeQ4K)},
	quant.Q5_K:  {name: "Q5_K", act: ActQ8_K, blockLen: 256, blockBytes: 176, ref: kquantRef(decodeQ5K)},
	quant.Q6_K:  {name: "Q6_K", act: ActQ8_K, blockLen: 256, blockBytes: 210, ref: kquantRef(decodeQ6K)},
	quant.TQ2_0: {name: "TQ2_0", act: ActQ8_K, blockLen: 256, blockBytes: 66, ref: kquantRef(decodeTQ20)},
}

func init() { registerAsm(qtypes) }

// ActFor returns the activation form of weight type t and whether t has
// integer dot products (false for float types and types without a kernel).
func ActFor(t quant.Type) (ActType, bool) {
	if q := qtypes[t]; q != nil {
		return q.act, true
	}
	return 0, false
}

// HasAsm reports whether weight type t's integer dot product runs in
// assembly on this CPU.
func HasAsm(t quant.Type) bool {
	q := qtypes[t]
	return q != nil && q.asm != nil && HasAVX2
}

// DotQ returns the dot product of one weight row of type t (its bytes,
// whole blocks of a.C values) with token tok of a, which must be in t's
// activation form.
func DotQ(t quant.Type, w []byte, a *Acts, tok int) (float32, error) {
	q, err := lookup(t, len(w), a)
	if err != nil {
		return 0, err
	}
	if tok < 0 || tok >= a.T {
		return 0, fmt.Errorf("kernels: token %d of %d", tok, a.T)
	}
	return q.dot(HasAVX2)(w, a, tok), nil
}

func (q *qtype) dot(asm bool) func(w []byte, a *Acts, tok int) float32 {
	if asm && q.asm != nil {
		return q.asm
	}
	return q.ref
}

func lookup(t quant.Type, rowBytes int, a *Acts) (*qtype, error) {
	q := qtypes[t]
	if q == nil {
		return nil, fmt.Errorf("kernels: no integer dot product for weight type %s", t)
	}
	if a.Type != q.act {
		return nil, fmt.Errorf("kernels: %s weights need %s activations, have %s", q.name, q.act, a.Type)
	}
	if a.C%q.blockLen != 0 || rowBytes != a.C/q.blockLen*q.blockBytes {
		return nil, fmt.Errorf("kernels: %s row of %d bytes does not hold %d values", q.name, rowBytes, a.C)
	}
	return q, nil
}

// MatQ computes dst[t*dstStride+r] = DotQ(typ, row r, a, t) for rows rows
// of rowBytes bytes each in w and every token of a. Tokens are the outer
// loop, so a block of rows that fits in the cache is read from memory once.
func MatQ(typ quant.Type, dst []float32, dstStride int, w []byte, rowBytes, rows int, a *Acts) error {
	return matQ(typ, dst, dstStride, w, rowBytes, rows, a, HasAVX2)
}

func matQ(typ quant.Type, dst []float32, dstStride int, w []byte, rowBytes, rows int, a *Acts, asm bool) error {
	q, err := lookup(typ, rowBytes, a)
	if err != nil {
		return err
	}
	if rows < 0 || len(w) < rows*rowBytes || (a.T > 0 && rows > 0 && len(dst) < (a.T-1)*dstStride+rows) {
		return fmt.Errorf("kernels: %s matmul of %d rows × %d tokens: buffers too small (w %d bytes, dst %d)", q.name, rows, a.T, len(w), len(dst))
	}
	dot := q.dot(asm)
	t := 0
	if asm && q.asm4 != nil && HasAVX2 {
		var o [4]float32
		for ; t+4 <= a.T; t += 4 {
			for r := range rows {
				q.asm4(w[r*rowBytes:(r+1)*rowBytes], a, t, &o)
				for k, v := range o {
					dst[(t+k)*dstStride+r] = v
				}
			}
		}
	}
	for ; t < a.T; t++ {
		out := dst[t*dstStride : t*dstStride+rows]
		for r := range out {
			out[r] = dot(w[r*rowBytes:(r+1)*rowBytes], a, t)
		}
	}
	return nil
}

func half(b []byte) float32 { return quant.HalfToFloat(binary.LittleEndian.Uint16(b)) }

// legacyBlock is one decoded 32-value block: integer values and the
// block's scale and (for the types with a minimum) its offset.
type legacyBlock struct {
	q      [32]int8
	d, m   float32
	hasMin bool
}

// legacyRef returns the portable dot product of a 32-value block type:
// for each block, lane l ← fma(d_w·d_a, Σ_{e in 4l..4l+3} q_w·q_a, lane l);
// for the types with a minimum, summs ← summs + m_w·s_a (rounded product,
// then the sum); the result is reduce8(lanes) + summs.
func legacyRef(decode func(b *legacyBlock, blk []byte)) func(w []byte, a *Acts, tok int) float32 {
	return func(w []byte, a *Acts, tok int) float32 {
		nb := a.C / 32
		bb := len(w) / nb
		var l lanes8
		var summs float32
		var blk legacyBlock
		for b := range nb {
			decode(&blk, w[b*bb:(b+1)*bb])
			y := a.Qs[tok*a.C+b*32 : tok*a.C+b*32+32]
			dd := float32(blk.d * a.D[tok*nb+b])
			for j := range 8 {
				var s int32
				for e := 4 * j; e < 4*j+4; e++ {
					s += int32(blk.q[e]) * int32(y[e])
				}
				l[j] = fma32(dd, float32(s), l[j])
			}
			if blk.hasMin {
				summs += float32(blk.m * a.S[tok*nb+b])
			}
		}
		return reduce8(&l) + summs
	}
}

func decodeQ80(b *legacyBlock, blk []byte) {
	b.d = half(blk)
	for i := range 32 {
		b.q[i] = int8(blk[2+i])
	}
}

func decodeQ40(b *legacyBlock, blk []byte) {
	b.d = half(blk)
	for j := range 16 {
		b.q[j] = int8(blk[2+j]&15) - 8
		b.q[j+16] = int8(blk[2+j]>>4) - 8
	}
}

func decodeQ41(b *legacyBlock, blk []byte) {
	b.d, b.m, b.hasMin = half(blk), half(blk[2:]), true
	for j := range 16 {
		b.q[j] = int8(blk[4+j] & 15)
		b.q[j+16] = int8(blk[4+j] >> 4)
	}
}

// fifth returns the 5-bit values of a Q5_0/Q5_1 block from its high bits
// qh (little-endian uint32) and nibbles qs.
func fifth(q *[32]int8, qh uint32, qs []byte, offset int8) {
	for j := range 16 {
		h0 := byte(qh>>j) & 1
		h1 := byte(qh>>(j+16)) & 1
		q[j] = int8(qs[j]&15|h0<<4) - offset
		q[j+16] = int8(qs[j]>>4|h1<<4) - offset
	}
}

func decodeQ50(b *legacyBlock, blk []byte) {
	b.d = half(blk)
	fifth(&b.q, binary.LittleEndian.Uint32(blk[2:]), blk[6:22], 16)
}

func decodeQ51(b *legacyBlock, blk []byte) {
	b.d, b.m, b.hasMin = half(blk), half(blk[2:]), true
	fifth(&b.q, binary.LittleEndian.Uint32(blk[4:]), blk[8:24], 0)
}

// iq4nlValues is ggml's non-linear 4-bit codebook (kvalues_iq4nl), the
// definition of the IQ4_NL format.
var iq4nlValues = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

func decodeIQ4NL(b *legacyBlock, blk []byte) {
	b.d = half(blk)
	for j := range 16 {
		b.q[j] = iq4nlValues[blk[2+j]&15]
		b.q[j+16] = iq4nlValues[blk[2+j]>>4]
	}
}

// kBlock is one decoded 256-value super-block: integer values, an integer
// scale and minimum per 16 values, and the super-block's float scales.
type kBlock struct {
	q       [256]int8
	sc, mn  [16]int32
	d, dmin float32
}

// kquantRef returns the portable dot product of a 256-value type: per
// super-block, lane l ← fma(d_a·d, Σ_g sc_g · Σ_{e in group g, (e mod 32)/4 = l}
// q_e·y_e, lane l) and m ← fma(d_a·dmin, Σ_g mn_g·bsum_g, m); the result is
// reduce8(lanes) − m.
func kquantRef(decode func(b *kBlock, blk []byte)) func(w []byte, a *Acts, tok int) float32 {
	return func(w []byte, a *Acts, tok int) float32 {
		nb := a.C / 256
		bb := len(w) / nb
		var l lanes8
		var m float32
		var blk kBlock
		for b := range nb {
			decode(&blk, w[b*bb:(b+1)*bb])
			y := a.Qs[tok*a.C+b*256 : tok*a.C+b*256+256]
			bs := a.Bsums[(tok*a.C+b*256)/16:][:16]
			dy := a.D[tok*nb+b]
			var isum [8]int32
			var msum int32
			for g := range 16 {
				lane0 := g % 2 * 4
				for k := range 4 {
					var s int32
					for e := 16*g + 4*k; e < 16*g+4*k+4; e++ {
						s += int32(blk.q[e]) * int32(y[e])
					}
					isum[lane0+k] += blk.sc[g] * s
				}
				msum += blk.mn[g] * int32(bs[g])
			}
			dd, dm := float32(dy*blk.d), float32(dy*blk.dmin)
			for j := range 8 {
				l[j] = fma32(dd, float32(isum[j]), l[j])
			}
			m = fma32(dm, float32(msum), m)
		}
		return reduce8(&l) - m
	}
}

func decodeQ2K(b *kBlock, blk []byte) {
	scales, qs := blk[0:16], blk[16:80]
	b.d, b.dmin = half(blk[80:]), half(blk[82:])
	for g := range 16 {
		b.sc[g] = int32(scales[g] & 15)
		b.mn[g] = int32(scales[g] >> 4)
	}
	for n := range 2 {
		for j := range 4 {
			for l := range 32 {
				b.q[n*128+j*32+l] = int8(qs[n*32+l] >> (2 * j) & 3)
			}
		}
	}
}

func decodeQ3K(b *kBlock, blk []byte) {
	hm, qs, sc := blk[0:32], blk[32:96], blk[96:108]
	b.d, b.dmin = half(blk[108:]), 0
	for j := range 16 {
		var low, high byte
		if j < 8 {
			low = sc[j] & 15
		} else {
			low = sc[j-8] >> 4
		}
		high = sc[8+j%4] >> (2 * (j / 4)) & 3
		b.sc[j] = int32(low|high<<4) - 32
		b.mn[j] = 0
	}
	for n := range 2 {
		for j := range 4 {
			bit := byte(1) << (n*4 + j)
			for l := range 32 {
				v := int8(qs[n*32+l] >> (2 * j) & 3)
				if hm[l]&bit == 0 {
					v -= 4
				}
				b.q[n*128+j*32+l] = v
			}
		}
	}
}

// scaleMinK4 is ggml's get_scale_min_k4: the 6-bit scale and minimum of
// sub-block j of a Q4_K/Q5_K super-block.
func scaleMinK4(j int, q []byte) (int32, int32) {
	if j < 4 {
		return int32(q[j] & 63), int32(q[j+4] & 63)
	}
	return int32(q[j+4]&15 | q[j-4]>>6<<4), int32(q[j+4]>>4 | q[j]>>6<<4)
}

func decodeQ4K(b *kBlock, blk []byte) {
	b.d, b.dmin = half(blk), half(blk[2:])
	scales, qs := blk[4:16], blk[16:144]
	for j := range 8 {
		s, m := scaleMinK4(j, scales)
		b.sc[2*j], b.sc[2*j+1], b.mn[2*j], b.mn[2*j+1] = s, s, m, m
	}
	for k := range 4 {
		for l := range 32 {
			b.q[64*k+l] = int8(qs[32*k+l] & 15)
			b.q[64*k+32+l] = int8(qs[32*k+l] >> 4)
		}
	}
}

func decodeQ5K(b *kBlock, blk []byte) {
	b.d, b.dmin = half(blk), half(blk[2:])
	scales, qh, qs := blk[4:16], blk[16:48], blk[48:176]
	for j := range 8 {
		s, m := scaleMinK4(j, scales)
		b.sc[2*j], b.sc[2*j+1], b.mn[2*j], b.mn[2*j+1] = s, s, m, m
	}
	for k := range 4 {
		for l := range 32 {
			h0 := qh[l] >> (2 * k) & 1
			h1 := qh[l] >> (2*k + 1) & 1
			b.q[64*k+l] = int8(qs[32*k+l]&15 | h0<<4)
			b.q[64*k+32+l] = int8(qs[32*k+l]>>4 | h1<<4)
		}
	}
}

func decodeQ6K(b *kBlock, blk []byte) {
	ql, qh, sc := blk[0:128], blk[128:192], blk[192:208]
	b.d, b.dmin = half(blk[208:]), 0
	for g := range 16 {
		b.sc[g] = int32(int8(sc[g]))
		b.mn[g] = 0
	}
	for n := range 2 {
		l0, h0, y0 := ql[64*n:], qh[32*n:], b.q[128*n:]
		for l := range 32 {
			y0[l] = int8(l0[l]&15|(h0[l]&3)<<4) - 32
			y0[l+32] = int8(l0[l+32]&15|(h0[l]>>2&3)<<4) - 32
			y0[l+64] = int8(l0[l]>>4|(h0[l]>>4&3)<<4) - 32
			y0[l+96] = int8(l0[l+32]>>4|(h0[l]>>6&3)<<4) - 32
		}
	}
}

func decodeTQ20(b *kBlock, blk []byte) {
	qs := blk[0:64]
	b.d, b.dmin = half(blk[64:]), 0
	for g := range 16 {
		b.sc[g], b.mn[g] = 1, 0
	}
	for j := range 2 {
		for l := range 4 {
			for m := range 32 {
				b.q[j*128+l*32+m] = int8(qs[j*32+m]>>(2*l)&3) - 1
			}
		}
	}
}
