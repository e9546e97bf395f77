package quant

import "fmt"

// The importance-weighted reference quantizers: what ggml_quantize_chunk
// runs when it is given an importance matrix (one value per column of the
// row, shared by all rows), i.e. each type's quantize_row_*_impl with
// quant_weights. Each function quantizes one row x with the importance qw
// (len(qw) == len(x)) into dst.
//
// The weight of element j in a block's fit is qw[j]·sqrt(σ² + x_j²), where
// σ² is a mean square over the whole row (Q4_0, Q4_1, Q5_0, Q5_1: Σx²/n),
// over the super-block (Q2_K: Σx²/256; Q3_K, Q4_K, Q5_K: 2·Σx²/256) or the
// block (IQ4_NL: 2·Σx²/32); Q6_K passes qw itself. Q8_0, TQ1_0, TQ2_0 and
// the float types ignore the importance (quantize_q8_0, quantize_tq1_0 and
// quantize_tq2_0 call their reference quantizer whatever it is).

// meanSquare is Σx²/n in float32, in element order.
func meanSquare(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s / float32(len(x))
}

// importanceWeights sets w[j] = qw[j]·sqrt(sigma2 + x[j]²).
func importanceWeights(w, x, qw []float32, sigma2 float32) {
	w = w[:len(x)]
	qw = qw[:len(x)]
	for j, v := range x {
		w[j] = qw[j] * sqrtf(sigma2+float32(v*v))
	}
}

// quantizeRowQ40Weighted is quantize_row_q4_0_impl: make_qx_quants with
// nmax 8 on every block.
func quantizeRowQ40Weighted(dst []byte, x, qw []float32) {
	var w [qk40]float32
	var L [qk40]int8
	sigma2 := meanSquare(x)
	for ib := 0; ib < len(x)/qk40; ib++ {
		xb, y := x[ib*qk40:(ib+1)*qk40], dst[ib*blockQ40:(ib+1)*blockQ40]
		importanceWeights(w[:], xb, qw[ib*qk40:], sigma2)
		putF16(y, makeQxQuants(8, xb, w[:], L[:]))
		for j := 0; j < halfQK40; j++ {
			y[2+j] = uint8(L[j]) | uint8(L[j+halfQK40])<<4
		}
	}
}

// quantizeRowQ50Weighted is quantize_row_q5_0_impl: make_qx_quants with
// nmax 16 on every block.
func quantizeRowQ50Weighted(dst []byte, x, qw []float32) {
	var w [qk50]float32
	var L [qk50]int8
	var q [qk50]uint8
	sigma2 := meanSquare(x)
	for ib := 0; ib < len(x)/qk50; ib++ {
		xb, y := x[ib*qk50:(ib+1)*qk50], dst[ib*blockQ50:(ib+1)*blockQ50]
		importanceWeights(w[:], xb, qw[ib*qk50:], sigma2)
		putF16(y, makeQxQuants(16, xb, w[:], L[:]))
		for j, l := range L {
			q[j] = uint8(l)
		}
		putQ5(y[2:6], y[6:blockQ50], &q)
	}
}

// quantizeRowQ41Weighted is quantize_row_q4_1_impl: make_qkx3_quants with
// nmax 15 on every block, d and m = −min stored.
func quantizeRowQ41Weighted(dst []byte, x, qw []float32) {
	var w [qk41]float32
	var L, laux [qk41]uint8
	sigma2 := meanSquare(x)
	for ib := 0; ib < len(x)/qk41; ib++ {
		xb, y := x[ib*qk41:(ib+1)*qk41], dst[ib*blockQ41:(ib+1)*blockQ41]
		importanceWeights(w[:], xb, qw[ib*qk41:], sigma2)
		d, theMin := makeQkx3Quants(15, xb, w[:], L[:], laux[:])
		putF16(y[0:], d)
		putF16(y[2:], -theMin)
		for j := 0; j < half32; j++ {
			y[4+j] = L[j] | L[j+half32]<<4
		}
	}
}

// quantizeRowQ51Weighted is quantize_row_q5_1_impl: make_qkx3_quants with
// nmax 31 on every block.
func quantizeRowQ51Weighted(dst []byte, x, qw []float32) {
	var w [qk51]float32
	var L, laux [qk51]uint8
	sigma2 := meanSquare(x)
	for ib := 0; ib < len(x)/qk51; ib++ {
		xb, y := x[ib*qk51:(ib+1)*qk51], dst[ib*blockQ51:(ib+1)*blockQ51]
		importanceWeights(w[:], xb, qw[ib*qk51:], sigma2)
		d, theMin := makeQkx3Quants(31, xb, w[:], L[:], laux[:])
		putF16(y[0:], d)
		putF16(y[2:], -theMin)
		putQ5(y[4:8], y[8:blockQ51], &L)
	}
}

// quantizeRowIQ4NLWeighted is quantize_iq4_nl with quant_weights.
func quantizeRowIQ4NLWeighted(dst []byte, x, qw []float32) {
	for ib := 0; ib < len(x)/qkIQ4NL; ib++ {
		quantizeIQ4NLBlock(dst[ib*blockIQ4NL:(ib+1)*blockIQ4NL], x[ib*qkIQ4NL:(ib+1)*qkIQ4NL], qw[ib*qkIQ4NL:(ib+1)*qkIQ4NL])
	}
}

// quantizeRowQ6KWeighted is quantize_row_q6_K_impl.
func quantizeRowQ6KWeighted(dst []byte, x, qw []float32) { quantizeQ6K(dst, x, qw) }

// makeQkx3Quants is ggml's make_qkx3_quants with weights, the fit of the
// importance-weighted quantizers (rmin −0.9, rdelta 0.05, 36 steps, squared
// error). With weights given it computes what make_qkx2_quants computes
// (its early exit, max <= min instead of max == min, takes the same
// branch on every input), so it is makeQkx2Quants with those parameters.
func makeQkx3Quants(nmax int32, x, weights []float32, L, laux []uint8) (scale, theMin float32) {
	return makeQkx2Quants(nmax, x, weights, L, laux, -0.9, 0.05, 36, false)
}

// makeQpQuants is ggml's make_qp_quants: the levels L in [0, nmax] of the
// non-negative sub-block scales (or mins) x under one scale, found by a
// search over 9 scales around nmax/max, then least squares and up to five
// passes that move single levels when that improves the weighted fit. The
// levels are uint8 as in C (a negative nearest_int wraps), and the scale is
// returned.
func makeQpQuants(nmax int32, x []float32, L []uint8, qw []float32) float32 {
	n := len(x)
	L, qw = L[:n], qw[:n]
	var max float32
	for _, v := range x {
		max = maxf(max, v)
	}
	if max < groupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	fnmax := float32(nmax)
	iscale := fnmax / max
	for i, v := range x {
		L[i] = uint8(nearestInt(iscale * v))
	}
	scale := 1 / iscale
	var bestMSE float32
	for i, v := range x {
		diff := v - float32(scale*float32(L[i]))
		bestMSE += float32(float32(qw[i]*diff) * diff)
	}
	for is := int32(-4); is <= 4; is++ {
		if is == 0 {
			continue
		}
		iscaleIs := (float32(0.1*float32(is)) + fnmax) / max
		scaleIs := 1 / iscaleIs
		var mse float32
		for i, v := range x {
			l := min(nmax, nearestInt(iscaleIs*v))
			diff := v - float32(scaleIs*float32(l))
			mse += float32(float32(qw[i]*diff) * diff)
		}
		if mse < bestMSE {
			bestMSE = mse
			iscale = iscaleIs
		}
	}
	var sumlx, suml2 float32
	for i, v := range x {
		l := min(nmax, nearestInt(iscale*v))
		L[i] = uint8(l)
		fl := float32(l)
		w := qw[i]
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w := qw[i]
			li := float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			sl2 := suml2 - float32(float32(w*li)*li)
			if !(slx > 0 && sl2 > 0) {
				continue
			}
			nl := min(nmax, nearestInt(float32(v*sl2)/slx))
			if nl == int32(L[i]) {
				continue
			}
			fnl := float32(nl)
			slx += float32(float32(w*v) * fnl)
			sl2 += float32(float32(w*fnl) * fnl)
			if float32(slx*slx)*suml2 > float32(sumlx*sumlx)*sl2 {
				L[i] = uint8(nl)
				sumlx, suml2 = slx, sl2
				changed++
			}
		}
		if changed == 0 {
			break
		}
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// quantizeRowQ2KWeighted is quantize_row_q2_K_impl: make_qkx3_quants
// (nmax 3) per sub-block of 16, then make_qp_quants (nmax 15) of the 16
// scales and of the 16 mins, weighted by the sub-blocks' summed weights.
func quantizeRowQ2KWeighted(dst []byte, x, qw []float32) {
	var (
		L            [qkK]uint8
		laux         [16]uint8
		w            [16]float32
		scales, mins [qkK / 16]float32
		sw           [qkK / 16]float32
		ls, lm       [qkK / 16]uint8
	)
	for i := 0; i < len(x)/qkK; i++ {
		xb, qb := x[i*qkK:(i+1)*qkK], qw[i*qkK:(i+1)*qkK]
		y := dst[i*blockQ2K : (i+1)*blockQ2K]
		var sumx2 float32
		for _, v := range xb {
			sumx2 += float32(v * v)
		}
		sigma2 := float32(sumx2 / qkK)
		for j := 0; j < qkK/16; j++ {
			xs := xb[16*j : 16*j+16]
			importanceWeights(w[:], xs, qb[16*j:16*j+16], sigma2)
			var sumw float32
			for _, v := range w {
				sumw += v
			}
			sw[j] = sumw
			scales[j], mins[j] = makeQkx3Quants(3, xs, w[:], L[16*j:16*j+16], laux[:])
		}
		putF16(y[80:], makeQpQuants(15, scales[:], ls[:], sw[:]))
		putF16(y[82:], makeQpQuants(15, mins[:], lm[:], sw[:]))
		for j := range ls {
			y[j] = ls[j] | lm[j]<<4
		}
		q2KFinish(y, xb, &L)
	}
}

// quantizeRowQ3KWeighted is quantize_row_q3_K_impl: make_qx_quants (nmax
// 4) per sub-block of 16, then make_qx_quants (nmax 32) of the 16 scales
// weighted by the sub-blocks' summed weights.
func quantizeRowQ3KWeighted(dst []byte, x, qw []float32) {
	var (
		L      [qkK]int8
		scales [qkK / 16]float32
		w      [16]float32
		sw     [qkK / 16]float32
		ls     [qkK / 16]int8
	)
	for i := 0; i < len(x)/qkK; i++ {
		xb, qb := x[i*qkK:(i+1)*qkK], qw[i*qkK:(i+1)*qkK]
		y := dst[i*blockQ3K : (i+1)*blockQ3K]
		ysc := y[96:108]
		sigma2 := superSigma2(xb)
		for j := 0; j < qkK/16; j++ {
			xs := xb[16*j : 16*j+16]
			importanceWeights(w[:], xs, qb[16*j:16*j+16], sigma2)
			var sumw float32
			for _, v := range w {
				sumw += v
			}
			sw[j] = sumw
			scales[j] = makeQxQuants(4, xs, w[:], L[16*j:16*j+16])
		}
		clear(ysc)
		dBlock := makeQxQuants(32, scales[:], sw[:], ls[:])
		for j := 0; j < qkK/16; j++ {
			l := int32(ls[j])
			if j < 8 {
				ysc[j] = uint8(l & 0xF)
			} else {
				ysc[j-8] |= uint8((l & 0xF) << 4)
			}
			l >>= 4
			ysc[j%4+8] |= uint8(l << (2 * (j / 4)))
		}
		putF16(y[108:], dBlock)
		q3KFinish(y, xb, &L)
	}
}

// superSigma2 is the σ² of the Q3_K, Q4_K and Q5_K impls: 2·Σx²/256 over
// the super-block.
func superSigma2(x []float32) float32 {
	var sumx2 float32
	for _, v := range x {
		sumx2 += float32(v * v)
	}
	return float32(float32(2*sumx2) / qkK)
}

// fitSubBlocksK4Weighted is the first half of quantize_row_q4_K_impl and
// quantize_row_q5_K_impl for one super-block: make_qkx3_quants on the
// eight sub-blocks, then make_qp_quants (nmax 63) of their scales and of
// their mins, weighted by the sub-blocks' summed weights. It returns the
// two super-block scales and leaves the 6-bit levels in ls, lm.
func fitSubBlocksK4Weighted(x, qw []float32, L *[qkK]uint8, nmax int32, ls, lm *[8]uint8) (dBlock, mBlock float32) {
	var (
		w            [32]float32
		laux         [32]uint8
		sw           [8]float32
		scales, mins [8]float32
	)
	sigma2 := superSigma2(x)
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		importanceWeights(w[:], xs, qw[32*j:32*j+32], sigma2)
		var sumw float32
		for _, v := range w {
			sumw += v
		}
		sw[j] = sumw
		scales[j], mins[j] = makeQkx3Quants(nmax, xs, w[:], L[32*j:32*j+32], laux[:])
	}
	dBlock = makeQpQuants(63, scales[:], ls[:], sw[:])
	mBlock = makeQpQuants(63, mins[:], lm[:], sw[:])
	return dBlock, mBlock
}

// quantizeRowQ4KWeighted is quantize_row_q4_K_impl (its 6-bit levels are
// packed as they come, without the MIN(63, ·) of Q5_K).
func quantizeRowQ4KWeighted(dst []byte, x, qw []float32) {
	var L [qkK]uint8
	var ls, lm [8]uint8
	for i := 0; i < len(x)/qkK; i++ {
		xb := x[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ4K : (i+1)*blockQ4K]
		dBlock, mBlock := fitSubBlocksK4Weighted(xb, qw[i*qkK:(i+1)*qkK], &L, 15, &ls, &lm)
		packScalesK4(y[4:16], &ls, &lm)
		putF16(y[0:], dBlock)
		putF16(y[2:], mBlock)
		q4KFinish(y, xb, &L)
	}
}

// quantizeRowQ5KWeighted is quantize_row_q5_K_impl.
func quantizeRowQ5KWeighted(dst []byte, x, qw []float32) {
	var L [qkK]uint8
	var ls, lm [8]uint8
	for i := 0; i < len(x)/qkK; i++ {
		xb := x[i*qkK : (i+1)*qkK]
		y := dst[i*blockQ5K : (i+1)*blockQ5K]
		dBlock, mBlock := fitSubBlocksK4Weighted(xb, qw[i*qkK:(i+1)*qkK], &L, 31, &ls, &lm)
		for j := range ls {
			ls[j], lm[j] = min(63, ls[j]), min(63, lm[j])
		}
		packScalesK4(y[4:16], &ls, &lm)
		putF16(y[0:], dBlock)
		putF16(y[2:], mBlock)
		q5KFinish(y, xb, &L)
	}
}

// weightedRef is an importance-weighted reference quantizer: it quantizes
// one row (a whole number of blocks) with importance[c] for column c.
type weightedRef func(dst []byte, row, importance []float32)

// weightedRefs are the importance-weighted reference quantizers by type.
var weightedRefs = map[Type]weightedRef{
	Q4_0:    quantizeRowQ40Weighted,
	Q4_1:    quantizeRowQ41Weighted,
	Q5_0:    quantizeRowQ50Weighted,
	Q5_1:    quantizeRowQ51Weighted,
	Q2_K:    quantizeRowQ2KWeighted,
	Q3_K:    quantizeRowQ3KWeighted,
	Q4_K:    quantizeRowQ4KWeighted,
	Q5_K:    quantizeRowQ5KWeighted,
	Q6_K:    quantizeRowQ6KWeighted,
	IQ4_NL:  quantizeRowIQ4NLWeighted,
	IQ2_XXS: quantizeRowIQ2XXS,
	IQ2_XS:  quantizeRowIQ2XS,
	IQ2_S:   quantizeRowIQ2S,
	IQ3_XXS: quantizeRowIQ3XXS,
	IQ3_S:   quantizeRowIQ3S,
	IQ1_S:   quantizeRowIQ1S,
	IQ1_M:   quantizeRowIQ1M,
	IQ4_XS:  quantizeRowIQ4XS,
}

// IgnoresImportance reports whether ggml quantizes t the same with and
// without an importance matrix: Q8_0, TQ1_0, TQ2_0 and the float types.
func (t Type) IgnoresImportance() bool {
	switch t {
	case F32, F16, BF16, Q8_0, TQ1_0, TQ2_0:
		return true
	}
	return false
}

// QuantizeRefWeighted quantizes the rows of src (each rowLen long) into dst
// with llama.cpp's reference quantizer for t given an importance matrix:
// the bytes are identical to ggml_quantize_chunk(t, src, dst, 0, nrows,
// rowLen, importance). importance has rowLen entries, one per column,
// shared by all rows (finite and non-negative: an imatrix's mean squared
// activations); nil means no importance matrix, which is QuantizeRef. For
// the types whose quantizer ignores the importance (t.IgnoresImportance())
// it is QuantizeRef as well.
func QuantizeRefWeighted(t Type, dst []byte, src []float32, rowLen int, importance []float32) error {
	nrows, err := shape(t, rowLen, len(src), len(dst))
	if err != nil {
		return fmt.Errorf("quant: quantize %d values to %s: %w", len(src), t, err)
	}
	if err := checkImportance(importance, rowLen); err != nil {
		return fmt.Errorf("quant: quantize to %s: %w", t, err)
	}
	if importance == nil || t.IgnoresImportance() {
		return QuantizeRef(t, dst, src, rowLen)
	}
	f := weightedRefs[t]
	if f == nil {
		return fmt.Errorf("quant: quantize to %s: no importance-weighted reference quantizer for this type", t)
	}
	rs := len(dst) / max(nrows, 1)
	for r := range nrows {
		f(dst[r*rs:(r+1)*rs], src[r*rowLen:(r+1)*rowLen], importance)
	}
	return nil
}
