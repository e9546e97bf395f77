package quant

import "math"

// The searches of the 32-element types with a min (Q4_1, Q5_1) and of the
// non-uniform grid (IQ4_NL). Like the others they minimise Σ w·(x − x̂)²
// for one block, with x̂ computed as Dequantize computes it, and the caller
// keeps the reference block when the search does not beat it.

// searchAsym is the search of Q4_1 and Q5_1: x̂ = float32(q·d) + m with q
// in [0, qmax] and d, m fp16 (m of either sign).
func (o *optimizer) searchAsym(y []byte, x, w []float32) {
	qmax := int32(15)
	if o.t == Q5_1 {
		qmax = 31
	}
	d, m := asymSearch(x, w, qmax, getF16(o.ref[0:]), getF16(o.ref[2:]), o.lv, o.lb)
	putF16(y[0:], d)
	putF16(y[2:], m)
	L := o.lb[:len(x)]
	if o.t == Q4_1 {
		for j := 0; j < half32; j++ {
			y[4+j] = uint8(L[j]) | uint8(L[j+half32])<<4
		}
		return
	}
	var q [32]uint8
	for j, l := range L {
		q[j] = uint8(l)
	}
	putQ5(y[4:8], y[8:blockQ51], &q)
}

// asymEval assigns to every x the nearest level q in [0, qmax] for the fp16
// pair (d, m), stores them in L and returns Σ w·(x − x̂)² with
// x̂ = float32(q·d) + m.
func asymEval(x, w []float32, d, m float32, qmax int32, L []int32) float64 {
	L = L[:len(x)]
	w = w[:len(x)]
	var e float64
	id := 0.0
	if d != 0 {
		id = 1 / float64(d)
	}
	for i, v := range x {
		q := roundClamp((float64(v)-float64(m))*id, 0, qmax)
		L[i] = q
		r := float64(float32(float32(q)*d) + m)
		diff := r - float64(v)
		e += float64(w[i]) * diff * diff
	}
	return e
}

// asymFitLS is the weighted least-squares (d, m) of x ≈ d·q + m for the
// levels L (m unconstrained); ok is false when the levels do not determine
// both (all equal, or no weight).
func asymFitLS(x, w []float32, L []int32) (d, m float64, ok bool) {
	var sw, sq, sq2, sx, sqx float64
	for i, v := range x {
		wi, q := float64(w[i]), float64(L[i])
		sw += wi
		sq += wi * q
		sq2 += wi * q * q
		sx += wi * float64(v)
		sqx += wi * q * float64(v)
	}
	det := sq2*sw - sq*sq
	if !(det > 0) {
		return 0, 0, false
	}
	return (sqx*sw - sx*sq) / det, (sq2*sx - sq*sqx) / det, true
}

// asymSearch fits x ≈ d·q + m with q in [0, qmax] and fp16 d > 0 and m:
// 21 inverse scales (qmax−1 … qmax+1)/(max − min) from the block's min,
// each with the least-squares (d, m) of its levels, then the seed (the
// reference's own pair); every candidate is rounded to fp16, its levels
// reassigned and refitted once, and the best gets up to four more
// refit/reassign (Lloyd) steps. The levels are left in best, cur is
// scratch.
func asymSearch(x, w []float32, qmax int32, seedD, seedM float32, cur, best []int32) (float32, float32) {
	lo, hi := x[0], x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	bestD, bestM, bestE := float32(0), round16(lo), math.Inf(1)
	if finite32(bestM) {
		bestE = asymEval(x, w, 0, bestM, qmax, best)
	}
	try := func(d, m float64) {
		d16, m16 := round16(float32(d)), round16(float32(m))
		if !(d16 > 0) || !finite32(d16) || !finite32(m16) {
			return
		}
		e := asymEval(x, w, d16, m16, qmax, cur)
		if e < bestE {
			bestD, bestM, bestE = d16, m16, e
			copy(best, cur[:len(x)])
		}
		d1, m1, ok := asymFitLS(x, w, cur)
		if !ok {
			return
		}
		d16, m16 = round16(float32(d1)), round16(float32(m1))
		if !(d16 > 0) || !finite32(d16) || !finite32(m16) {
			return
		}
		if e1 := asymEval(x, w, d16, m16, qmax, cur); e1 < bestE {
			bestD, bestM, bestE = d16, m16, e1
			copy(best, cur[:len(x)])
		}
	}
	if hi > lo {
		rng := float64(hi) - float64(lo)
		const n = 21
		for k := 0; k < n; k++ {
			iscale := (float64(qmax) - 1 + 2*float64(k)/(n-1)) / rng
			for i, v := range x {
				cur[i] = roundClamp((float64(v)-float64(lo))*iscale, 0, qmax)
			}
			if d, m, ok := asymFitLS(x, w, cur); ok {
				try(d, m)
			}
		}
	}
	try(float64(seedD), float64(seedM))
	for it := 0; it < 4 && !math.IsInf(bestE, 1); it++ {
		d1, m1, ok := asymFitLS(x, w, best)
		if !ok {
			break
		}
		d16, m16 := round16(float32(d1)), round16(float32(m1))
		if !(d16 > 0) || !finite32(d16) || !finite32(m16) || (d16 == bestD && m16 == bestM) {
			break
		}
		e1 := asymEval(x, w, d16, m16, qmax, cur)
		if !(e1 < bestE) {
			break
		}
		bestD, bestM, bestE = d16, m16, e1
		copy(best, cur[:len(x)])
	}
	return bestD, bestM
}

// searchGrid is the search of IQ4_NL: x̂ = d·grid[q] with fp16 d of either
// sign. Candidate scales put the element of largest magnitude on 32
// targets from 70 % to 108 % of either end of the grid (−127 or 113),
// plus the reference's d; each gets its nearest indices, a least-squares
// refit d = Σw·x·g / Σw·g² rounded to fp16 and its indices again, and the
// best up to four more such steps.
func (o *optimizer) searchGrid(y []byte, x, w []float32) {
	xmax := signedMax32(x)
	if xmax == 0 {
		copy(y, o.ref)
		return
	}
	cur, best := o.lv, o.lb
	bestD, bestE := float32(0), math.Inf(1)
	try := func(d float32) {
		d = round16(d)
		if d == 0 || !finite32(d) {
			return
		}
		e := gridEval(x, w, d, cur)
		if e < bestE {
			bestD, bestE = d, e
			copy(best, cur[:len(x)])
		}
		d1 := gridRefit(x, w, cur)
		if d1 == d || d1 == 0 || !finite32(d1) {
			return
		}
		if e1 := gridEval(x, w, d1, cur); e1 < bestE {
			bestD, bestE = d1, e1
			copy(best, cur[:len(x)])
		}
	}
	const ntarget = 32
	for _, end := range [2]float32{float32(iq4nlGrid[0]), float32(iq4nlGrid[15])} {
		for k := 0; k < ntarget; k++ {
			f := 0.70 + 0.38*float32(k)/(ntarget-1)
			try(xmax / (end * f))
		}
	}
	try(getF16(o.ref))
	if math.IsInf(bestE, 1) {
		copy(y, o.ref)
		return
	}
	for it := 0; it < 4; it++ {
		d1 := gridRefit(x, w, best)
		if d1 == bestD || d1 == 0 || !finite32(d1) {
			break
		}
		e1 := gridEval(x, w, d1, cur)
		if !(e1 < bestE) {
			break
		}
		bestD, bestE = d1, e1
		copy(best, cur[:len(x)])
	}
	putF16(y, bestD)
	for j := 0; j < half32; j++ {
		y[2+j] = uint8(best[j]) | uint8(best[j+half32])<<4
	}
}

// gridEval stores in L, for every x, the grid index whose decoded value
// d·grid[q] is nearest to x, and returns Σ w·(x − x̂)².
func gridEval(x, w []float32, d float32, L []int32) float64 {
	L = L[:len(x)]
	w = w[:len(x)]
	g := &iq4nlGrid
	var e float64
	for i, v := range x {
		q := int32(bestIndexInt8(g, v/d))
		bq, be := q, math.Inf(1)
		for c := max(q-1, 0); c <= min(q+1, 15); c++ {
			diff := float64(d*float32(g[c])) - float64(v)
			if ce := diff * diff; ce < be {
				bq, be = c, ce
			}
		}
		L[i] = bq
		e += float64(w[i]) * be
	}
	return e
}

// gridRefit is the least-squares d = Σw·x·g / Σw·g² for the indices L,
// rounded to fp16 (0 when no weight falls on the block).
func gridRefit(x, w []float32, L []int32) float32 {
	var num, den float64
	for i, v := range x {
		g := float64(iq4nlGrid[L[i]])
		num += float64(w[i]) * float64(v) * g
		den += float64(w[i]) * g * g
	}
	if !(den > 0) {
		return 0
	}
	return round16(float32(num / den))
}
