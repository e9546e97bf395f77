package quant

import "math"

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it counts as all zero.
const groupMaxEps = float32(1e-15)

// nearestInt rounds like ggml's nearest_int: adding 1.5·2^23 puts the
// rounded integer (ties to even, by the float addition) in the low mantissa
// bits. It is exact for |f| <= 2^22-1; beyond that it returns the same
// garbage as ggml (whose assertion is compiled out), and that is kept on
// purpose. The conversion of f stops the compiler from fusing a product
// passed in as f with the addition.
func nearestInt(f float32) int32 {
	v := float32(f) + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// roundf is C's roundf: round half away from zero, in float32.
func roundf(f float32) float32 { return float32(math.Round(float64(f))) }

// lroundf is C's lroundf for the small arguments the ternary quantizers
// produce.
func lroundf(f float32) int32 { return int32(math.Round(float64(f))) }

// maxf and the comparisons below follow C's MAX macro, a > b ? a : b, which
// returns b when either is NaN (unlike Go's builtin max).
func maxf(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

func clampInt(l, lo, hi int32) int32 {
	// MAX(lo, MIN(hi, l))
	if l > hi {
		l = hi
	}
	if l < lo {
		l = lo
	}
	return l
}

func sqrtf(f float32) float32 { return float32(math.Sqrt(float64(f))) }

// makeQxQuants is ggml's make_qx_quants with rmse_type 1: the weights are
// qw when given (the importance-weighted quantizers) and x² otherwise. It
// quantizes x (at most 32 values) symmetrically to [-nmax, nmax-1], stores
// the levels plus nmax in L, and returns the scale found by a small search
// around nmax/max.
func makeQxQuants(nmax int32, x, qw []float32, L []int8) float32 {
	n := len(x)
	L = L[:n]
	max := signedMax32(x)
	if abs32(max) < groupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	// ggml forms w·x·l and w·l·l in every step; w and w·x are the same
	// each time, so they are computed once (same float32 values).
	var wBuf, wxBuf [32]float32
	w, wx := wBuf[:n], wxBuf[:n]
	for i, v := range x {
		if qw != nil {
			w[i] = qw[i]
		} else {
			w[i] = v * v
		}
		wx[i] = w[i] * v
	}
	iscale := float32(-nmax) / max
	qxLevels(L, x, iscale, nmax)
	sumlx, suml2 := qxSums(x, w, wx, iscale, -nmax, nmax-1, magicRound)
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := int32(-9); is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / max
		sumlx, suml2 = qxSums(x, w, wx, iscale, -nmax, nmax-1, magicRound)
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			qxLevels(L, x, iscale, nmax)
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// magicRound is nearest_int's 1.5·2^23. The hot loops take it as an argument
// so that it stays in a register.
const magicRound = 12582912

// qxLevels sets L[i] = nmax + clamp(nearest_int(iscale·x[i]), -nmax, nmax-1).
func qxLevels(L []int8, x []float32, iscale float32, nmax int32) {
	L = L[:len(x)]
	for i, v := range x {
		L[i] = int8(nmax + clampInt(nearestInt(iscale*v), -nmax, nmax-1))
	}
}

// qxSums returns Σ w·x·l and Σ w·l·l over l = clamp(nearest_int(iscale·x),
// lo, hi), in element order, given w = x² and wx = w·x. It is kept out of
// line (with magic passed in) so that its loop keeps everything in
// registers.
//
//go:noinline
func qxSums(x, w, wx []float32, iscale float32, lo, hi int32, magic float32) (sumlx, suml2 float32) {
	n := len(x)
	w, wx = w[:n], wx[:n]
	for i, v := range x {
		r := float32(iscale*v) + magic
		l := int32(math.Float32bits(r)&0x007fffff) - 0x00400000
		l = max(lo, min(hi, l))
		fl := float32(l)
		sumlx += float32(wx[i] * fl)
		suml2 += float32(float32(w[i]*fl) * fl)
	}
	return sumlx, suml2
}

// makeQ3Quants is ggml's make_q3_quants with do_rmse set (the reference
// Q3_K quantizer's case): a symmetric start at nmax/max, then up to five
// passes that move single levels when that improves the weighted fit.
// L receives the levels plus nmax; the scale is returned.
func makeQ3Quants(nmax int32, x []float32, L []int8) float32 {
	L = L[:len(x)]
	max := signedMax32(x)
	if abs32(max) < groupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = int8(l)
		fl := float32(l)
		w := v * v
		sumlx += float32(w * v * fl)
		suml2 += float32(w * fl * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w := v * v
			li := float32(L[i])
			slx := sumlx - float32(w*v*li)
			if !(slx > 0) {
				continue
			}
			sl2 := suml2 - float32(w*li*li)
			nl := clampInt(nearestInt(v*sl2/slx), -nmax, nmax-1)
			if nl == int32(L[i]) {
				continue
			}
			fnl := float32(nl)
			slx += float32(w * v * fnl)
			sl2 += float32(w * fnl * fnl)
			if sl2 > 0 && float32(slx*slx*suml2) > float32(sumlx*sumlx*sl2) {
				L[i] = int8(nl)
				sumlx, suml2 = slx, sl2
				changed++
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range L {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQkx2Quants is ggml's make_qkx2_quants: an asymmetric fit x ≈ scale·L −
// min with L in [0, nmax], trying nstep+1 scales around the range and keeping
// the one with the smallest weighted error (absolute error if useMad,
// squared otherwise). It returns the scale and the (non-negative) min;
// L receives the levels, laux is scratch of len(x). x holds at most 32
// values.
func makeQkx2Quants(nmax int32, x, weights []float32, L, laux []uint8,
	rmin, rdelta float32, nstep int32, useMad bool) (scale, theMin float32) {
	n := len(x)
	L, laux, weights = L[:n], laux[:n], weights[:n]
	min, max := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < min {
			min = x[i]
		}
		if x[i] > max {
			max = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if min > 0 {
		min = 0
	}
	if max == min {
		for i := range L {
			L[i] = 0
		}
		return 0, -min
	}
	// x[i]-min, kept up to date: ggml's loop below moves min (and with it
	// the range max-min) whenever a step improves the fit.
	var xmBuf [32]float32
	xm := xmBuf[:n]
	shiftBy(xm, x, min)
	fnmax := float32(nmax)
	iscale := fnmax / (max - min)
	scale = 1 / iscale
	qkx2Levels(L, xm, iscale, nmax)
	bestError := qkx2Error(x, weights, L, scale, min, useMad)
	if nstep < 1 {
		return scale, -min
	}
	for is := int32(0); is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fnmax) / (max - min)
		sumL, sumL2, sumXL := qkx2Sums(laux, xm, x, weights, iscale, nmax, magicRound)
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if !(D > 0) {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		if curError := qkx2Error(x, weights, laux, thisScale, thisMin, useMad); curError < bestError {
			copy(L, laux)
			bestError = curError
			scale = thisScale
			min = thisMin
			shiftBy(xm, x, min)
		}
	}
	return scale, -min
}

// shiftBy sets xm[i] = x[i] - min.
func shiftBy(xm, x []float32, min float32) {
	xm = xm[:len(x)]
	for i, v := range x {
		xm[i] = v - min
	}
}

// qkx2Levels sets L[i] = clamp(nearest_int(iscale·xm[i]), 0, nmax).
func qkx2Levels(L []uint8, xm []float32, iscale float32, nmax int32) {
	L = L[:len(xm)]
	for i, v := range xm {
		L[i] = uint8(clampInt(nearestInt(iscale*v), 0, nmax))
	}
}

// qkx2Sums quantizes xm = x−min at iscale into laux and returns the weighted
// sums Σw·l, Σw·l², Σw·l·x, accumulated in element order as ggml does. It is
// kept out of line so that its loop gets the registers to itself.
//
//go:noinline
func qkx2Sums(laux []uint8, xm, x, w []float32, iscale float32, nmax int32, magic float32) (sumL, sumL2, sumXL float32) {
	n := len(xm)
	laux, x, w = laux[:n], x[:n], w[:n]
	for i, v := range xm {
		r := float32(iscale*v) + magic
		l := int32(math.Float32bits(r)&0x007fffff) - 0x00400000
		l = max(0, min(nmax, l))
		laux[i] = uint8(l)
		fl := float32(l)
		wl := float32(w[i] * fl)
		sumL += wl
		sumL2 += float32(wl * fl)
		sumXL += float32(wl * x[i])
	}
	return sumL, sumL2, sumXL
}

// qkx2Error is Σ w·|scale·L + min − x| (useMad) or Σ w·(scale·L + min − x)².
//
//go:noinline
func qkx2Error(x, w []float32, L []uint8, scale, min float32, useMad bool) float32 {
	n := len(x)
	w, L = w[:n], L[:n]
	var e float32
	if useMad {
		for i, v := range x {
			diff := float32(scale*float32(L[i])) + min - v
			e += float32(w[i] * abs32(diff))
		}
		return e
	}
	for i, v := range x {
		diff := float32(scale*float32(L[i])) + min - v
		e += float32(w[i] * float32(diff*diff))
	}
	return e
}

// getScaleMinK4 unpacks the 6-bit scale and min of sub-block j from the 12
// packed bytes of a Q4_K or Q5_K block.
func getScaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return (q[j+4] & 0xF) | ((q[j-4] >> 6) << 4), (q[j+4] >> 4) | ((q[j] >> 6) << 4)
}
