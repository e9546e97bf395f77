package quant

// K-quants: 256-element super-blocks split into sub-blocks of 16 or 32, each
// with its own quantized scale (and min), under fp16 super-block scales.
//
//	Q2_K (84 bytes):  scales [16] (low nibble scale, high nibble min)
//	                  | qs [64] (2 bits) | d fp16 | dmin fp16
//	Q3_K (110 bytes): hmask [32] (3rd bit) | qs [64] (low 2 bits)
//	                  | scales [12] (16 × 6 bits) | d fp16
//	Q4_K (144 bytes): d fp16 | dmin fp16 | scales [12] (8 × 6-bit scale and min)
//	                  | qs [128] (4 bits)
//	Q5_K (176 bytes): d fp16 | dmin fp16 | scales [12] | qh [32] (5th bit)
//	                  | qs [128] (low 4 bits)
//	Q6_K (210 bytes): ql [128] (low 4 bits) | qh [64] (high 2 bits)
//	                  | scales [16]int8 | d fp16
//
// Within 128 elements, 2-bit fields are packed so that byte l of a 32-byte
// group holds elements l, l+32, l+64 and l+96 at bit offsets 0, 2, 4, 6.

const (
	blockQ2K = 84
	blockQ3K = 110
	blockQ4K = 144
	blockQ5K = 176
	blockQ6K = 210
)

// pack2bit packs 256 levels in [0, 3] into 64 bytes, 128 elements per 32
// bytes. The levels are combined as ints, as in C.
func pack2bit(qs []byte, L []int32) {
	for j := 0; j < qkK; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = uint8(L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6)
		}
	}
}

// quantizeRowQ2KRef is quantize_row_q2_K_ref.
func quantizeRowQ2KRef(dst []byte, src []float32) {
	const q4scale = float32(15)
	var (
		L       [qkK]uint8
		laux    [16]uint8
		weights [16]float32
		mins    [qkK / 16]float32
		scales  [qkK / 16]float32
	)
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ2K : (i+1)*blockQ2K]
		ysc := y[0:16]

		var maxScale, maxMin float32
		for j := 0; j < qkK/16; j++ {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				weights[l] = abs32(v)
			}
			scales[j], mins[j] = makeQkx2Quants(3, xs, weights[:], L[16*j:16*j+16], laux[:], -0.5, 0.1, 15, true)
			if scales[j] > maxScale {
				maxScale = scales[j]
			}
			if mins[j] > maxMin {
				maxMin = mins[j]
			}
		}

		if maxScale > 0 {
			iscale := q4scale / maxScale
			for j := range ysc {
				ysc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			putF16(y[80:], maxScale/q4scale)
		} else {
			for j := range ysc {
				ysc[j] = 0
			}
			putF16(y[80:], 0)
		}
		if maxMin > 0 {
			iscale := q4scale / maxMin
			for j := range ysc {
				ysc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
			}
			putF16(y[82:], maxMin/q4scale)
		} else {
			putF16(y[82:], 0)
		}

		q2KFinish(y, x, &L)
	}
}

// q2KFinish is the end of both Q2_K quantizers: the levels of x are
// recomputed against the stored scales and mins (sub-blocks whose scale
// decodes to 0 keep the levels in L) and packed.
func q2KFinish(y []byte, x []float32, L *[qkK]uint8) {
	var packed [qkK]int32
	ysc := y[0:16]
	d, dmin := getF16(y[80:]), getF16(y[82:])
	for j := 0; j < qkK/16; j++ {
		dl := d * float32(ysc[j]&0xF)
		if dl == 0 {
			continue
		}
		ml := float32(dmin * float32(ysc[j]>>4))
		for ii := 0; ii < 16; ii++ {
			l := nearestInt((x[16*j+ii] + ml) / dl)
			L[16*j+ii] = uint8(clampInt(l, 0, 3))
		}
	}
	for j := range packed {
		packed[j] = int32(L[j])
	}
	pack2bit(y[16:80], packed[:])
}

// dequantizeRowQ2K is dequantize_row_q2_K.
func dequantizeRowQ2K(dst []float32, src []byte) {
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockQ2K : (i+1)*blockQ2K]
		y := dst[i*qkK : (i+1)*qkK]
		sc := b[0:16]
		d, min := getF16(b[80:]), getF16(b[82:])
		for n := 0; n < 2; n++ {
			q := b[16+32*n : 16+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				for h := 0; h < 2; h++ {
					s := sc[8*n+2*j+h]
					dl := d * float32(s&0xF)
					ml := float32(min * float32(s>>4))
					out := y[128*n+32*j+16*h : 128*n+32*j+16*h+16]
					qq := q[16*h : 16*h+16]
					for l := range out {
						out[l] = float32(dl*float32((qq[l]>>shift)&3)) - ml
					}
				}
			}
		}
	}
}

// q3Scale decodes the 6-bit scale j (minus 32) of a Q3_K block.
func q3Scale(sc []byte, j int) int8 {
	var low uint8
	if j < 8 {
		low = sc[j] & 0xF
	} else {
		low = sc[j-8] >> 4
	}
	high := (sc[8+j%4] >> (2 * (j / 4))) & 3
	return int8(low|high<<4) - 32
}

// quantizeRowQ3KRef is quantize_row_q3_K_ref.
func quantizeRowQ3KRef(dst []byte, src []float32) {
	var (
		L      [qkK]int8
		scales [qkK / 16]float32
	)
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ3K : (i+1)*blockQ3K]
		ysc := y[96:108]

		var maxScale, amax float32
		for j := 0; j < qkK/16; j++ {
			scales[j] = makeQ3Quants(4, x[16*j:16*j+16], L[16*j:16*j+16])
			if s := abs32(scales[j]); s > amax {
				amax, maxScale = s, scales[j]
			}
		}

		for j := range ysc {
			ysc[j] = 0
		}
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := 0; j < qkK/16; j++ {
				l := int8(nearestInt(iscale * scales[j]))
				l = int8(clampInt(int32(l), -32, 31) + 32)
				if j < 8 {
					ysc[j] = uint8(l & 0xF)
				} else {
					ysc[j-8] |= uint8((l & 0xF) << 4)
				}
				l >>= 4
				ysc[j%4+8] |= uint8(int32(l) << (2 * (j / 4)))
			}
			putF16(y[108:], 1/iscale)
		} else {
			putF16(y[108:], 0)
		}
		q3KFinish(y, x, &L)
	}
}

// q3KFinish is the end of both Q3_K quantizers: the levels of x are
// recomputed against the stored scales (sub-blocks whose scale decodes to
// 0 keep the levels in L), split into the high-bit mask and packed.
func q3KFinish(y []byte, x []float32, L *[qkK]int8) {
	var packed [qkK]int32
	hmask, ysc := y[0:32], y[96:108]
	d := getF16(y[108:])
	for j := 0; j < qkK/16; j++ {
		dl := d * float32(q3Scale(ysc, j))
		if dl == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := clampInt(nearestInt(x[16*j+ii]/dl), -4, 3)
			L[16*j+ii] = int8(l + 4)
		}
	}
	for j := range hmask {
		hmask[j] = 0
	}
	m, hm := 0, uint8(1)
	for j := 0; j < qkK; j++ {
		if L[j] > 3 {
			hmask[m] |= hm
			L[j] -= 4
		}
		if m++; m == qkK/8 {
			m, hm = 0, hm<<1
		}
	}
	for j := range packed {
		packed[j] = int32(L[j])
	}
	pack2bit(y[32:96], packed[:])
}

// dequantizeRowQ3K is dequantize_row_q3_K.
func dequantizeRowQ3K(dst []float32, src []byte) {
	var scales [16]int8
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockQ3K : (i+1)*blockQ3K]
		y := dst[i*qkK : (i+1)*qkK]
		hm, qs, sc := b[0:32], b[32:96], b[96:108]
		dAll := getF16(b[108:])
		for j := range scales {
			scales[j] = q3Scale(sc, j)
		}
		for n := 0; n < 2; n++ {
			q := qs[32*n : 32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				bit := uint(4*n + j)
				for h := 0; h < 2; h++ {
					dl := dAll * float32(scales[8*n+2*j+h])
					out := y[128*n+32*j+16*h : 128*n+32*j+16*h+16]
					qq, hh := q[16*h:16*h+16], hm[16*h:16*h+16]
					for l := range out {
						// level − 4 unless the high bit is set (branch-free).
						v := int32((qq[l]>>shift)&3) - int32((hh[l]>>bit)&1^1)<<2
						out[l] = dl * float32(v)
					}
				}
			}
		}
	}
}

// packScalesK4 stores the eight 6-bit scales and mins of a Q4_K or Q5_K
// block in 12 bytes (the inverse of getScaleMinK4).
func packScalesK4(sc []byte, ls, lm *[8]uint8) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			sc[j] = ls[j]
			sc[j+4] = lm[j]
		} else {
			sc[j+4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
			sc[j-4] |= (ls[j] >> 4) << 6
			sc[j] |= (lm[j] >> 4) << 6
		}
	}
}

// quantizeScalesK4 is the shared middle of the Q4_K and Q5_K reference
// quantizers: the sub-block scales and mins, each quantized to 6 bits
// against the largest, then the fp16 super-block scales.
func quantizeScalesK4(y []byte, scales, mins *[8]float32, maxScale, maxMin float32) {
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var ls, lm [8]uint8
	for j := 0; j < 8; j++ {
		ls[j] = min(63, uint8(nearestInt(invScale*scales[j])))
		lm[j] = min(63, uint8(nearestInt(invMin*mins[j])))
	}
	packScalesK4(y[4:16], &ls, &lm)
	putF16(y[0:], maxScale/63)
	putF16(y[2:], maxMin/63)
}

// fitSubBlocksK4 runs make_qkx2_quants on the eight 32-element sub-blocks of
// a Q4_K or Q5_K super-block, with weights av_x + |x|.
func fitSubBlocksK4(x []float32, L []uint8, nmax int32, rmin float32, nstep int32,
	scales, mins *[8]float32) (maxScale, maxMin float32) {
	var weights [32]float32
	var laux [32]uint8
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrtf(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQkx2Quants(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep, false)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	return maxScale, maxMin
}

// requantizeK4 recomputes the levels of x against the stored 6-bit scales and
// mins (ggml's second pass of the Q4_K/Q5_K reference quantizers).
func requantizeK4(y []byte, x []float32, L []uint8, nmax int32) {
	d, dmin := getF16(y[0:]), getF16(y[2:])
	for j := 0; j < 8; j++ {
		sc, m := getScaleMinK4(j, y[4:16])
		dl := d * float32(sc)
		if dl == 0 {
			continue
		}
		ml := float32(dmin * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt((x[32*j+ii] + ml) / dl)
			L[32*j+ii] = uint8(clampInt(l, 0, nmax))
		}
	}
}

// quantizeRowQ4KRef is quantize_row_q4_K_ref.
func quantizeRowQ4KRef(dst []byte, src []float32) {
	var (
		L            [qkK]uint8
		scales, mins [8]float32
	)
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ4K : (i+1)*blockQ4K]
		maxScale, maxMin := fitSubBlocksK4(x, L[:], 15, -1, 20, &scales, &mins)
		quantizeScalesK4(y, &scales, &mins, maxScale, maxMin)
		q4KFinish(y, x, &L)
	}
}

// q4KFinish is the end of both Q4_K quantizers: the levels of x against
// the stored scales and mins, packed.
func q4KFinish(y []byte, x []float32, L *[qkK]uint8) {
	requantizeK4(y, x, L[:], 15)
	q := y[16:blockQ4K]
	for j := 0; j < qkK; j += 64 {
		for l := 0; l < 32; l++ {
			q[j/2+l] = L[j+l] | L[j+l+32]<<4
		}
	}
}

// dequantizeRowQ4K is dequantize_row_q4_K.
func dequantizeRowQ4K(dst []float32, src []byte) {
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockQ4K : (i+1)*blockQ4K]
		y := dst[i*qkK : (i+1)*qkK]
		d, min := getF16(b[0:]), getF16(b[2:])
		sc := b[4:16]
		for j := 0; j < 4; j++ {
			q := b[16+32*j : 16+32*j+32]
			s1, m1 := getScaleMinK4(2*j, sc)
			s2, m2 := getScaleMinK4(2*j+1, sc)
			d1, mm1 := d*float32(s1), float32(min*float32(m1))
			d2, mm2 := d*float32(s2), float32(min*float32(m2))
			lo, hi := y[64*j:64*j+32], y[64*j+32:64*j+64]
			for l := range lo {
				lo[l] = float32(d1*float32(q[l]&0xF)) - mm1
				hi[l] = float32(d2*float32(q[l]>>4)) - mm2
			}
		}
	}
}

// quantizeRowQ5KRef is quantize_row_q5_K_ref.
func quantizeRowQ5KRef(dst []byte, src []float32) {
	var (
		L            [qkK]uint8
		scales, mins [8]float32
	)
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ5K : (i+1)*blockQ5K]
		maxScale, maxMin := fitSubBlocksK4(x, L[:], 31, -0.5, 15, &scales, &mins)
		quantizeScalesK4(y, &scales, &mins, maxScale, maxMin)
		q5KFinish(y, x, &L)
	}
}

// q5KFinish is the end of both Q5_K quantizers: the levels of x against
// the stored scales and mins, split into the fifth bits and nibbles.
func q5KFinish(y []byte, x []float32, L *[qkK]uint8) {
	requantizeK4(y, x, L[:], 31)
	qh, ql := y[16:48], y[48:blockQ5K]
	for j := range qh {
		qh[j] = 0
	}
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < qkK; n += 64 {
		q := ql[n/2 : n/2+32]
		for j := 0; j < 32; j++ {
			l1, l2 := L[n+j], L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			q[j] = l1 | l2<<4
		}
		m1, m2 = m1<<2, m2<<2
	}
}

// dequantizeRowQ5K is dequantize_row_q5_K.
func dequantizeRowQ5K(dst []float32, src []byte) {
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockQ5K : (i+1)*blockQ5K]
		y := dst[i*qkK : (i+1)*qkK]
		d, min := getF16(b[0:]), getF16(b[2:])
		sc, qh := b[4:16], b[16:48]
		for j := 0; j < 4; j++ {
			ql := b[48+32*j : 48+32*j+32]
			s1, m1 := getScaleMinK4(2*j, sc)
			s2, m2 := getScaleMinK4(2*j+1, sc)
			d1, mm1 := d*float32(s1), float32(min*float32(m1))
			d2, mm2 := d*float32(s2), float32(min*float32(m2))
			lo, hi := y[64*j:64*j+32], y[64*j+32:64*j+64]
			b1, b2 := uint(2*j), uint(2*j+1)
			for l := range lo {
				// low nibble plus 16 for the matching qh bit (branch-free).
				v1 := int32(ql[l]&0xF) | int32((qh[l]>>b1)&1)<<4
				v2 := int32(ql[l]>>4) | int32((qh[l]>>b2)&1)<<4
				lo[l] = float32(d1*float32(v1)) - mm1
				hi[l] = float32(d2*float32(v2)) - mm2
			}
		}
	}
}

// quantizeRowQ6KRef is quantize_row_q6_K_ref.
func quantizeRowQ6KRef(dst []byte, src []float32) { quantizeQ6K(dst, src, nil) }

// quantizeQ6K is quantize_row_q6_K_ref with qw == nil and, with the
// importance qw of the row's columns, quantize_row_q6_K_impl (which passes
// qw to make_qx_quants as the weights, unscaled); src is one row then.
func quantizeQ6K(dst []byte, src, qw []float32) {
	var (
		L      [qkK]int8
		scales [qkK / 16]float32
	)
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ6K : (i+1)*blockQ6K]
		ql, qh, ysc := y[0:128], y[128:192], y[192:208]

		var maxScale, maxAbsScale float32
		for ib := 0; ib < qkK/16; ib++ {
			var w []float32
			if qw != nil {
				w = qw[i*qkK+16*ib : i*qkK+16*ib+16]
			}
			scale := makeQxQuants(32, x[16*ib:16*ib+16], w, L[16*ib:16*ib+16])
			scales[ib] = scale
			if as := abs32(scale); as > maxAbsScale {
				maxAbsScale, maxScale = as, scale
			}
		}
		if maxAbsScale < groupMaxEps {
			for j := range y {
				y[j] = 0
			}
			putF16(y[208:], 0)
			continue
		}

		iscale := -128 / maxScale
		putF16(y[208:], 1/iscale)
		for ib := range ysc {
			ysc[ib] = uint8(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		d := getF16(y[208:])
		for j := 0; j < qkK/16; j++ {
			dl := d * float32(int8(ysc[j]))
			if dl == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				l := clampInt(nearestInt(x[16*j+ii]/dl), -32, 31)
				L[16*j+ii] = int8(l + 32)
			}
		}

		for j := 0; j < qkK; j += 128 {
			qlb, qhb := ql[j/2:j/2+64], qh[j/4:j/4+32]
			for l := 0; l < 32; l++ {
				a, b, c, e := uint8(L[j+l]), uint8(L[j+l+32]), uint8(L[j+l+64]), uint8(L[j+l+96])
				qlb[l] = a&0xF | (c&0xF)<<4
				qlb[l+32] = b&0xF | (e&0xF)<<4
				qhb[l] = a>>4 | (b>>4)<<2 | (c>>4)<<4 | (e>>4)<<6
			}
		}
	}
}

// dequantizeRowQ6K is dequantize_row_q6_K.
func dequantizeRowQ6K(dst []float32, src []byte) {
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockQ6K : (i+1)*blockQ6K]
		y := dst[i*qkK : (i+1)*qkK]
		d := getF16(b[208:])
		for n := 0; n < 2; n++ {
			ql, qh := b[64*n:64*n+64], b[128+32*n:128+32*n+32]
			sc := b[192+8*n : 192+8*n+8]
			yy := y[128*n : 128*n+128]
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int32(ql[l]&0xF|((qh[l]>>0)&3)<<4) - 32
				q2 := int32(ql[l+32]&0xF|((qh[l]>>2)&3)<<4) - 32
				q3 := int32(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
				yy[l] = d * float32(int8(sc[is])) * float32(q1)
				yy[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				yy[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				yy[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}
