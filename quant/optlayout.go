package quant

// Block parameters of the K-quants and ternary types in a common form, with
// encoders (parameters → the type's bytes) and decoders (bytes →
// parameters) that are exact inverses of each other. The optimised
// quantizers search in this form and encode at the end; the decoders let
// them start a refinement from the reference quantizer's own block.
//
// Every K-quant reconstructs element i of sub-block j as
//
//	e_j = float32(d·float32(S_j)),  o_j = float32(dmin·float32(M_j))
//	x̂_i = float32(e_j·float32(q_i − qoff)) − o_j
//
// which is what dequantizeRowQ2K … dequantizeRowQ6K compute, bit for bit
// (the symmetric types Q3_K and Q6_K have no mins: o_j = 0).

// kLayout describes one K-quant type for the optimiser.
type kLayout struct {
	typ      Type
	sub      int // sub-block length (16 or 32)
	qmax     int // stored levels are 0..qmax
	qoff     int // level offset: the value is q − qoff
	sLo, sHi int // range of the integer sub-block scales S_j
	mMax     int // integer mins M_j are 0..mMax; 0 for the symmetric types
	encode   func(y []byte, p *kParams)
	decode   func(p *kParams, y []byte)
}

// kParams is one K-quant super-block in the common form.
type kParams struct {
	d, dmin float32 // fp16-representable
	S, M    [16]int // per sub-block (the first 256/sub entries are used)
	q       [qkK]uint8
}

// kLayouts lists the K-quant layouts by type; the table is read-only.
var kLayouts = map[Type]*kLayout{
	Q2_K: {typ: Q2_K, sub: 16, qmax: 3, sLo: 0, sHi: 15, mMax: 15, encode: encodeQ2K, decode: decodeQ2K},
	Q3_K: {typ: Q3_K, sub: 16, qmax: 7, qoff: 4, sLo: -32, sHi: 31, encode: encodeQ3K, decode: decodeQ3K},
	Q4_K: {typ: Q4_K, sub: 32, qmax: 15, sLo: 0, sHi: 63, mMax: 63, encode: encodeQ4K, decode: decodeQ4K},
	Q5_K: {typ: Q5_K, sub: 32, qmax: 31, sLo: 0, sHi: 63, mMax: 63, encode: encodeQ5K, decode: decodeQ5K},
	Q6_K: {typ: Q6_K, sub: 16, qmax: 63, qoff: 32, sLo: -128, sHi: 127, encode: encodeQ6K, decode: decodeQ6K},
}

// nsub is the number of sub-blocks in a super-block.
func (k *kLayout) nsub() int { return qkK / k.sub }

// unpack2bit is the inverse of pack2bit.
func unpack2bit(L []uint8, qs []byte) {
	for j := 0; j < qkK; j += 128 {
		for l := 0; l < 32; l++ {
			b := qs[j/4+l]
			L[j+l], L[j+l+32], L[j+l+64], L[j+l+96] = b&3, (b>>2)&3, (b>>4)&3, b>>6
		}
	}
}

func encodeQ2K(y []byte, p *kParams) {
	for j := 0; j < 16; j++ {
		y[j] = uint8(p.S[j]) | uint8(p.M[j])<<4
	}
	var packed [qkK]int32
	for i, v := range p.q {
		packed[i] = int32(v)
	}
	pack2bit(y[16:80], packed[:])
	putF16(y[80:], p.d)
	putF16(y[82:], p.dmin)
}

func decodeQ2K(p *kParams, y []byte) {
	for j := 0; j < 16; j++ {
		p.S[j], p.M[j] = int(y[j]&0xF), int(y[j]>>4)
	}
	unpack2bit(p.q[:], y[16:80])
	p.d, p.dmin = getF16(y[80:]), getF16(y[82:])
}

func encodeQ3K(y []byte, p *kParams) {
	hmask, qs, sc := y[0:32], y[32:96], y[96:108]
	clear(sc)
	for j := 0; j < 16; j++ {
		l := uint8(p.S[j] + 32)
		if j < 8 {
			sc[j] = l & 0xF
		} else {
			sc[j-8] |= (l & 0xF) << 4
		}
		sc[j%4+8] |= (l >> 4) << (2 * (j / 4))
	}
	clear(hmask)
	var packed [qkK]int32
	m, hm := 0, uint8(1)
	for j := 0; j < qkK; j++ {
		l := p.q[j]
		if l > 3 {
			hmask[m] |= hm
			l -= 4
		}
		packed[j] = int32(l)
		if m++; m == qkK/8 {
			m, hm = 0, hm<<1
		}
	}
	pack2bit(qs, packed[:])
	putF16(y[108:], p.d)
}

func decodeQ3K(p *kParams, y []byte) {
	hmask, qs, sc := y[0:32], y[32:96], y[96:108]
	for j := 0; j < 16; j++ {
		p.S[j], p.M[j] = int(q3Scale(sc, j)), 0
	}
	unpack2bit(p.q[:], qs)
	m, bit := 0, uint(0)
	for j := 0; j < qkK; j++ {
		p.q[j] |= ((hmask[m] >> bit) & 1) << 2
		if m++; m == qkK/8 {
			m, bit = 0, bit+1
		}
	}
	p.d, p.dmin = getF16(y[108:]), 0
}

func encodeScalesK4(y []byte, p *kParams) {
	var ls, lm [8]uint8
	for j := 0; j < 8; j++ {
		ls[j], lm[j] = uint8(p.S[j]), uint8(p.M[j])
	}
	clear(y[4:16])
	packScalesK4(y[4:16], &ls, &lm)
	putF16(y[0:], p.d)
	putF16(y[2:], p.dmin)
}

func decodeScalesK4(p *kParams, y []byte) {
	for j := 0; j < 8; j++ {
		s, m := getScaleMinK4(j, y[4:16])
		p.S[j], p.M[j] = int(s), int(m)
	}
	p.d, p.dmin = getF16(y[0:]), getF16(y[2:])
}

func encodeQ4K(y []byte, p *kParams) {
	encodeScalesK4(y, p)
	q := y[16:blockQ4K]
	for j := 0; j < qkK; j += 64 {
		for l := 0; l < 32; l++ {
			q[j/2+l] = p.q[j+l] | p.q[j+l+32]<<4
		}
	}
}

func decodeQ4K(p *kParams, y []byte) {
	decodeScalesK4(p, y)
	q := y[16:blockQ4K]
	for j := 0; j < qkK; j += 64 {
		for l := 0; l < 32; l++ {
			p.q[j+l], p.q[j+l+32] = q[j/2+l]&0xF, q[j/2+l]>>4
		}
	}
}

func encodeQ5K(y []byte, p *kParams) {
	encodeScalesK4(y, p)
	qh, ql := y[16:48], y[48:blockQ5K]
	clear(qh)
	for n, sh := 0, uint(0); n < qkK; n, sh = n+64, sh+2 {
		q := ql[n/2 : n/2+32]
		for j := 0; j < 32; j++ {
			l1, l2 := p.q[n+j], p.q[n+j+32]
			qh[j] |= (l1>>4)<<sh | (l2>>4)<<(sh+1)
			q[j] = l1&0xF | (l2&0xF)<<4
		}
	}
}

func decodeQ5K(p *kParams, y []byte) {
	decodeScalesK4(p, y)
	qh, ql := y[16:48], y[48:blockQ5K]
	for n, sh := 0, uint(0); n < qkK; n, sh = n+64, sh+2 {
		q := ql[n/2 : n/2+32]
		for j := 0; j < 32; j++ {
			p.q[n+j] = q[j]&0xF | ((qh[j]>>sh)&1)<<4
			p.q[n+j+32] = q[j]>>4 | ((qh[j]>>(sh+1))&1)<<4
		}
	}
}

func encodeQ6K(y []byte, p *kParams) {
	ql, qh, sc := y[0:128], y[128:192], y[192:208]
	for j := 0; j < 16; j++ {
		sc[j] = uint8(int8(p.S[j]))
	}
	for j := 0; j < qkK; j += 128 {
		qlb, qhb := ql[j/2:j/2+64], qh[j/4:j/4+32]
		for l := 0; l < 32; l++ {
			a, b, c, e := p.q[j+l], p.q[j+l+32], p.q[j+l+64], p.q[j+l+96]
			qlb[l] = a&0xF | (c&0xF)<<4
			qlb[l+32] = b&0xF | (e&0xF)<<4
			qhb[l] = a>>4 | (b>>4)<<2 | (c>>4)<<4 | (e>>4)<<6
		}
	}
	putF16(y[208:], p.d)
}

func decodeQ6K(p *kParams, y []byte) {
	ql, qh, sc := y[0:128], y[128:192], y[192:208]
	for j := 0; j < 16; j++ {
		p.S[j], p.M[j] = int(int8(sc[j])), 0
	}
	for j := 0; j < qkK; j += 128 {
		qlb, qhb := ql[j/2:j/2+64], qh[j/4:j/4+32]
		for l := 0; l < 32; l++ {
			p.q[j+l] = qlb[l]&0xF | (qhb[l]&3)<<4
			p.q[j+l+32] = qlb[l+32]&0xF | ((qhb[l]>>2)&3)<<4
			p.q[j+l+64] = qlb[l]>>4 | ((qhb[l]>>4)&3)<<4
			p.q[j+l+96] = qlb[l+32]>>4 | ((qhb[l]>>6)&3)<<4
		}
	}
	p.d, p.dmin = getF16(y[208:]), 0
}

// encodeTQ10 writes a TQ1_0 block from 256 trits (stored as value+1, in
// {0, 1, 2}) and the scale d, in the layout quantizeRowTQ10Ref produces.
func encodeTQ10(y []byte, t *[qkK]uint8, d float32) {
	qs, qh := y[0:48], y[48:52]
	for m := 0; m < 32; m++ {
		var q uint8
		for n := 0; n < 5; n++ {
			q = q*3 + t[m+32*n]
		}
		qs[m] = packTrits5(q)
	}
	for m := 0; m < 16; m++ {
		var q uint8
		for n := 0; n < 5; n++ {
			q = q*3 + t[160+m+16*n]
		}
		qs[32+m] = packTrits5(q)
	}
	for j := 0; j < 4; j++ {
		var q uint8
		for m := 0; m < 4; m++ {
			q = q*3 + t[240+j+4*m]
		}
		qh[j] = packTrits5(q * 3)
	}
	putF16(y[52:], d)
}

// encodeTQ20 writes a TQ2_0 block from 256 trits (value+1) and the scale d.
func encodeTQ20(y []byte, t *[qkK]uint8, d float32) {
	for j := 0; j < 64; j += 32 {
		ts := t[4*j : 4*j+128]
		for m := 0; m < 32; m++ {
			y[j+m] = ts[m] | ts[m+32]<<2 | ts[m+64]<<4 | ts[m+96]<<6
		}
	}
	putF16(y[64:], d)
}

// encodeTernary dispatches to encodeTQ10 or encodeTQ20.
func encodeTernary(t Type, y []byte, trits *[qkK]uint8, d float32) {
	if t == TQ1_0 {
		encodeTQ10(y, trits, d)
		return
	}
	encodeTQ20(y, trits, d)
}
