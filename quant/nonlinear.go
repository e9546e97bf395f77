package quant

// IQ4_NL: 32-element blocks of 4-bit indices into a fixed non-uniform grid
// of 16 int8 values, under one fp16 scale.
//
//	IQ4_NL block (18 bytes): d fp16 | qs [16]byte     x = d·grid[q]
//
// with the nibbles of qs laid out as in Q4_0 (byte j: element j low,
// element j+16 high).

const (
	qkIQ4NL    = 32
	blockIQ4NL = 18
)

// iq4nlGrid is ggml's kvalues_iq4nl, the 16 levels of IQ4_NL (and
// IQ4_XS), ascending. It is the format's definition;
// TestOracleIQ4NLGrid reads it back from libggml-base.so by decoding a
// block with d = 1 and every index.
var iq4nlGrid = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// bestIndexInt8 is ggml's best_index_int8: the index of the value of the
// ascending table val nearest to x (the upper one on ties; 0 below the
// table, the last index above it and for NaN).
func bestIndexInt8(val *[16]int8, x float32) uint8 {
	const n = len(val)
	if x <= float32(val[0]) {
		return 0
	}
	if x >= float32(val[n-1]) {
		return uint8(n - 1)
	}
	ml, mu := 0, n-1
	for mu-ml > 1 {
		mav := (ml + mu) / 2
		if x < float32(val[mav]) {
			mu = mav
		} else {
			ml = mav
		}
	}
	if x-float32(val[mu-1]) < float32(val[mu])-x {
		return uint8(mu - 1)
	}
	return uint8(mu)
}

// iq4nlScale is the per-block scale search of ggml's
// quantize_row_iq4_nl_impl for one block of x (32 values) with the
// weights w (len(x)): a start at grid[0]/−max (grid[0]/max when ntry ≤
// 0), then 2·ntry+1 more inverse scales (itry + grid[0])/max. It returns the best least-squares scale, or 0 for a block
// whose largest magnitude is below GROUP_MAX_EPS. The levels are not
// returned: the caller re-derives them from the scale it stores.
func iq4nlScale(x, w []float32, ntry int) float32 {
	w = w[:len(x)]
	max := signedMax32(x)
	if abs32(max) < groupMaxEps {
		return 0
	}
	g := &iq4nlGrid
	v0 := float32(g[0])
	d := max / v0
	if ntry > 0 {
		d = -max / v0
	}
	id := 1 / d
	sumqx, sumq2 := iq4nlSums(g, x, w, id)
	d = 0
	if sumq2 > 0 {
		d = sumqx / sumq2
	}
	best := d * sumqx
	for itry := -ntry; itry <= ntry; itry++ {
		id = float32(itry+int(g[0])) / max
		sumqx, sumq2 = iq4nlSums(g, x, w, id)
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			d = sumqx / sumq2
			best = d * sumqx
		}
	}
	return d
}

// iq4nlSums is Σ w·q·x and Σ w·q² over q = grid[best index of id·x], in
// element order.
func iq4nlSums(g *[16]int8, x, w []float32, id float32) (sumqx, sumq2 float32) {
	w = w[:len(x)]
	for j, v := range x {
		q := float32(g[bestIndexInt8(g, float32(id*v))])
		wq := w[j] * q
		sumqx += float32(wq * v)
		sumq2 += float32(wq * q)
	}
	return sumqx, sumq2
}

// quantizeIQ4NLBlock writes one IQ4_NL block for x (32 values) as ggml's
// quantize_iq4_nl does with ntry = 7: weights qw·sqrt(σ² + x²) with
// σ² = 2·Σx²/32 when qw (the importance of the block's columns) is given,
// x² otherwise; the fp16 scale of iq4nlScale; indices of the nearest grid
// value to x/d.
func quantizeIQ4NLBlock(y []byte, x, qw []float32) {
	var w [qkIQ4NL]float32
	var sigma2 float32
	for _, v := range x {
		sigma2 += float32(v * v)
	}
	sigma2 = float32(sigma2 * (2.0 / qkIQ4NL))
	for j, v := range x {
		if qw != nil {
			w[j] = qw[j] * sqrtf(sigma2+float32(v*v))
		} else {
			w[j] = v * v
		}
	}
	d := iq4nlScale(x, w[:], 7)
	putF16(y, d)
	var id float32
	if d != 0 {
		id = 1 / d
	}
	qs := y[2:blockIQ4NL]
	g := &iq4nlGrid
	for j := 0; j < half32; j++ {
		qs[j] = bestIndexInt8(g, float32(id*x[j])) | bestIndexInt8(g, float32(id*x[j+half32]))<<4
	}
}

// quantizeRowIQ4NLRef is what ggml_quantize_chunk does for IQ4_NL without
// an importance matrix: quantize_iq4_nl with ntry = 7 (not
// quantize_row_iq4_nl_ref, which skips the scale search).
func quantizeRowIQ4NLRef(dst []byte, src []float32) {
	nb := len(src) / qkIQ4NL
	for i := 0; i < nb; i++ {
		quantizeIQ4NLBlock(dst[i*blockIQ4NL:(i+1)*blockIQ4NL], src[i*qkIQ4NL:(i+1)*qkIQ4NL], nil)
	}
}

// dequantizeRowIQ4NL is dequantize_row_iq4_nl.
func dequantizeRowIQ4NL(dst []float32, src []byte) {
	nb := len(dst) / qkIQ4NL
	for i := 0; i < nb; i++ {
		b := src[i*blockIQ4NL : (i+1)*blockIQ4NL]
		y := dst[i*qkIQ4NL : (i+1)*qkIQ4NL]
		d := getF16(b)
		qs := b[2:blockIQ4NL]
		for j := 0; j < half32; j++ {
			y[j] = d * float32(iq4nlGrid[qs[j]&0x0F])
			y[j+half32] = d * float32(iq4nlGrid[qs[j]>>4])
		}
	}
}
