package quant

import "math"

// The K-quant search. A super-block of 256 is fitted in three steps:
//
//  1. each sub-block alone gets the float scale (and min) that minimise its
//     weighted error: asymFit for the types with mins (x ≈ s·q − m, m ≥ 0),
//     symSearch for Q3_K and Q6_K (x ≈ s·(q − qoff));
//  2. the sub-block scales are put on the type's integer grid under an fp16
//     super-block scale d with symSearch, each weighted by Σ w·l² of its
//     levels (the error a unit change of that scale causes), and likewise
//     the mins under dmin with weights Σ w;
//  3. refineK alternates a coordinate descent on the integer scales and
//     mins (each ±1, levels reassigned, kept when the sub-block's error
//     drops) with a least-squares refit of (d, dmin) for the fixed integers
//     and levels, rounded to fp16, until nothing improves.
//
// Step 3 also runs from the reference quantizer's block, decoded into the
// same form, and the better of the two results is encoded.

// searchK is the search of Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
func (o *optimizer) searchK(y []byte, x, w []float32) {
	k := o.k
	o.fitK(&o.pa, x, w)
	ea := o.refineK(&o.pa, x, w)
	k.decode(&o.pb, o.ref)
	eb := o.refineK(&o.pb, x, w)
	if eb < ea {
		k.encode(y, &o.pb)
		return
	}
	k.encode(y, &o.pa)
}

// grid returns the reconstruction step and offset of sub-block j, as the
// decoders compute them (the conversions keep the products from being
// fused into a later addition).
func (p *kParams) grid(j int) (e, off float32) {
	return float32(p.d * float32(p.S[j])), float32(p.dmin * float32(p.M[j]))
}

// assign sets q (when not nil) to the nearest levels of x for the grid
// (e, off), fills st with the pass's sums (l = q − qoff) and returns
// Σ w·(x − x̂)² with x̂ = float32(e·float32(q − qoff)) − off.
func (o *optimizer) assign(x, w []float32, e, off float32, q []uint8, st *gridSums) float64 {
	k := o.k
	ie := float32(1 / float64(e))
	if e == 0 || !finite32(e) || !finite32(ie) {
		return k.assignSlow(x, w, e, off, q, st)
	}
	c := gridParams{off: off, ie: ie, bias: float32(k.qoff) + 0.5, qmax: float32(k.qmax), e: e, qoff: float32(k.qoff)}
	L := o.gl[:len(x)]
	gridStats(x, w, &c, st, L)
	if q != nil {
		q = q[:len(x)]
		for i, l := range L {
			q[i] = uint8(l)
		}
	}
	return float64(st[0])
}

// trialErr is assign's error alone, for grids that are only tried.
func (k *kLayout) trialErr(x, w []float32, e, off float32) float64 {
	ie := float32(1 / float64(e))
	if e == 0 || !finite32(e) || !finite32(ie) {
		var st gridSums
		return k.assignSlow(x, w, e, off, nil, &st)
	}
	c := gridParams{off: off, ie: ie, bias: float32(k.qoff) + 0.5, qmax: float32(k.qmax), e: e, qoff: float32(k.qoff)}
	return float64(gridErr(x, w, &c))
}

// assignSlow is assign in float64 for the grids whose step or its inverse
// is 0 or not finite (every level then is qoff; an infinite step gives an
// infinite error).
func (k *kLayout) assignSlow(x, w []float32, e, off float32, q []uint8, st *gridSums) float64 {
	w = w[:len(x)]
	qoff := int32(k.qoff)
	var err float64
	if e == 0 || !finite32(e) {
		r := float64(-off)
		for i, v := range x {
			if q != nil {
				q[i] = uint8(qoff)
			}
			d := r - float64(v)
			err += float64(w[i]) * d * d
		}
		*st = gridSums{float32(err)}
		if !finite32(e) {
			return math.Inf(1)
		}
		return err
	}
	ie := 1 / float64(e)
	var sl, sl2, slx float64
	for i, v := range x {
		l := roundClamp((float64(v)+float64(off))*ie, -qoff, int32(k.qmax)-qoff)
		if q != nil {
			q[i] = uint8(l + qoff)
		}
		r := float64(float32(e*float32(l)) - off)
		d := r - float64(v)
		wi := float64(w[i])
		err += wi * d * d
		sl += wi * float64(l)
		sl2 += wi * float64(l) * float64(l)
		slx += wi * float64(l) * float64(v)
	}
	*st = gridSums{float32(err), float32(sl), float32(sl2), float32(slx)}
	return err
}

// assignAll assigns every sub-block of p, fills o.subErr and o.subSt and
// returns the total error.
func (o *optimizer) assignAll(p *kParams, x, w []float32) float64 {
	k := o.k
	var total float64
	for j := 0; j < k.nsub(); j++ {
		lo, hi := j*k.sub, (j+1)*k.sub
		e, off := p.grid(j)
		o.subErr[j] = o.assign(x[lo:hi], w[lo:hi], e, off, p.q[lo:hi], &o.subSt[j])
		total += o.subErr[j]
	}
	return total
}

// fitK is steps 1 and 2: sub-block fits, then the integer scales and mins.
func (o *optimizer) fitK(p *kParams, x, w []float32) {
	k := o.k
	n := k.nsub()
	for j := 0; j < n; j++ {
		xs, ws := x[j*k.sub:(j+1)*k.sub], w[j*k.sub:(j+1)*k.sub]
		if k.mMax > 0 {
			o.fs[j], o.fm[j], o.fsw[j], o.fmw[j] = asymFit(xs, ws, k.qmax, o.gl[:k.sub])
			continue
		}
		// Six targets per side for Q3_K and eleven for Q6_K (with their
		// refits: 28 and 48 grid passes per sub-block): the float scale
		// only seeds the integer scales, which step 3 moves by ±1. Sixteen
		// (68 passes) gave RMSEs at most 0.01 % (Q3_K) and 0.04 % (Q6_K)
		// lower on TestQuantizeNotWorse's data.
		lo, hi := int32(-k.qoff), int32(k.qmax-k.qoff)
		spread, ntrial := float32(1.5), 6
		if k.qmax > 7 {
			spread, ntrial = 6, 11
		}
		o.fs[j], _ = symSearch(xs, ws, lo, hi, ntrial, spread, false, nil, o.lv, o.lb)
		var sw float64
		for i, l := range o.lb[:k.sub] {
			sw += float64(ws[i]) * float64(l) * float64(l)
		}
		o.fsw[j] = float32(sw)
	}
	spread := float32(12)
	switch k.sHi {
	case 15:
		spread = 5
	case 127:
		spread = 16
	}
	p.d, _ = symSearch(o.fs[:n], o.fsw[:n], int32(k.sLo), int32(k.sHi), 24, spread, true, nil, o.lv, o.lb)
	for j := 0; j < n; j++ {
		p.S[j] = int(o.lb[j])
	}
	p.dmin = 0
	for j := range p.M {
		p.M[j] = 0
	}
	if k.mMax > 0 {
		p.dmin, _ = symSearch(o.fm[:n], o.fmw[:n], 0, int32(k.mMax), 24, spread, true, nil, o.lv, o.lb)
		for j := 0; j < n; j++ {
			p.M[j] = int(o.lb[j])
		}
	}
}

// asymFit fits x ≈ s·q − m with q in [0, qmax], s ≥ 0, m ≥ 0, minimising
// Σ w·(x − x̂)²: 41 candidate inverse scales (qmax−1 … qmax+1)/(max−min),
// each with a least-squares (s, m) for its levels, then Lloyd steps on the
// best. It returns s and m and the weights for step 2 (Σ w·q², Σ w). L is
// scratch (len(x) levels); the levels' sums come from gridStats.
func asymFit(x, w []float32, qmax int, L []int32) (s, m, sw, mw float32) {
	lo, hi := x[0], x[0]
	var sumW, sx, sxx float64
	for i, v := range x {
		lo, hi = min(lo, v), max(hi, v)
		wi := float64(w[i])
		sumW += wi
		sx += wi * float64(v)
		sxx += wi * float64(v) * float64(v)
	}
	lo = min(lo, 0)
	if hi == lo {
		return 0, -lo, 0, float32(sumW)
	}
	// fit returns the least-squares (s, m) for the levels of the sums g
	// and its error, from the weighted sums alone.
	fit := func(g *gridSums) (s, m, e float64, ok bool) {
		sq, sq2, sqx := float64(g[1]), float64(g[2]), float64(g[3])
		det := sq2*sumW - sq*sq
		if !(det > 0) {
			return 0, 0, 0, false
		}
		s = (sqx*sumW - sx*sq) / det
		b := (sq2*sx - sq*sqx) / det // offset: x ≈ s·q + b
		if b > 0 {
			b, s = 0, sqx/sq2
		}
		if !(s > 0) {
			return 0, 0, 0, false
		}
		// Σ w·(s·q + b − x)² expanded.
		e = s*s*sq2 + b*b*sumW + sxx + 2*s*b*sq - 2*s*sqx - 2*b*sx
		return s, -b, max(e, 0), true
	}
	bestE := math.Inf(1)
	var bs, bm, bq2 float64
	rng := float64(hi) - float64(lo)
	c := gridParams{off: -lo, bias: 0.5, qmax: float32(qmax)}
	var g gridSums
	for is := 0; is <= 40; is++ {
		c.ie = float32((float64(qmax) - 1 + 0.05*float64(is)) / rng)
		gridStats(x, w, &c, &g, L)
		if s, m, e, ok := fit(&g); ok && e < bestE {
			bestE, bs, bm, bq2 = e, s, m, float64(g[2])
		}
	}
	if math.IsInf(bestE, 1) {
		return 0, -lo, 0, float32(sumW)
	}
	for it := 0; it < 3; it++ {
		c.off, c.ie = float32(bm), float32(1/bs)
		if !finite32(c.off) || !finite32(c.ie) {
			break
		}
		gridStats(x, w, &c, &g, L)
		s, m, e, ok := fit(&g)
		if !ok || !(e < bestE) {
			break
		}
		bestE, bs, bm, bq2 = e, s, m, float64(g[2])
	}
	return float32(bs), float32(bm), float32(bq2), float32(sumW)
}

// refineK is step 3 on p (levels included); it returns the final error.
func (o *optimizer) refineK(p *kParams, x, w []float32) float64 {
	k := o.k
	n := k.nsub()
	for j := 0; j < n; j++ {
		var sw, swx float64
		for i, v := range x[j*k.sub : (j+1)*k.sub] {
			wi := float64(w[j*k.sub+i])
			sw += wi
			swx += wi * float64(v)
		}
		o.subW[j], o.subWX[j] = sw, swx
	}
	total := o.assignAll(p, x, w)
	mr := 0
	if k.mMax > 0 {
		mr = 1
	}
	// dirty marks the sub-blocks whose neighbourhood has not been searched
	// since their integers or the super-block scales last changed (the
	// others cannot improve: their error depends on nothing else).
	dirty := uint32(1)<<n - 1
	for round := 0; round < 4; round++ {
		improved := false
		// Coordinate descent on the integer scales and mins.
		for j := 0; j < n; j++ {
			if dirty&(1<<j) == 0 {
				continue
			}
			dirty &^= 1 << j
			lo, hi := j*k.sub, (j+1)*k.sub
			xs, ws := x[lo:hi], w[lo:hi]
			s0, m0 := p.S[j], p.M[j]
			bestS, bestM, bestE := s0, m0, o.subErr[j]
			for ds := -1; ds <= 1; ds++ {
				s := s0 + ds
				if s < k.sLo || s > k.sHi {
					continue
				}
				for dm := -mr; dm <= mr; dm++ {
					m := m0 + dm
					if (ds == 0 && dm == 0) || m < 0 || m > k.mMax {
						continue
					}
					e := k.trialErr(xs, ws, float32(p.d*float32(s)), float32(p.dmin*float32(m)))
					if e < bestE {
						bestS, bestM, bestE = s, m, e
					}
				}
			}
			if bestS != s0 || bestM != m0 {
				p.S[j], p.M[j] = bestS, bestM
				e, off := p.grid(j)
				o.subErr[j] = o.assign(xs, ws, e, off, p.q[lo:hi], &o.subSt[j])
				improved = true
				dirty |= 1 << j
			}
		}
		total = 0
		for j := 0; j < n; j++ {
			total += o.subErr[j]
		}
		// Least-squares refit of the super-block scales.
		if d, dmin, ok := o.refitSuper(p); ok && (d != p.d || dmin != p.dmin) {
			save := *p
			saveErr, saveSt := o.subErr, o.subSt
			p.d, p.dmin = d, dmin
			if e := o.assignAll(p, x, w); e < total {
				total = e
				improved = true
				dirty = uint32(1)<<n - 1
			} else {
				*p = save
				o.subErr, o.subSt = saveErr, saveSt
			}
		}
		if !improved {
			break
		}
	}
	return total
}

// refitSuper solves for the (d, dmin) that minimise the error with the
// integer scales, mins and levels of p fixed: x ≈ d·a − dmin·b with
// a = S_j·(q − qoff), b = M_j. The normal equations come from the
// sub-blocks' sums of their last assignment (o.subSt) and Σ w, Σ w·x
// (o.subW, o.subWX). Both are rounded to fp16.
func (o *optimizer) refitSuper(p *kParams) (float32, float32, bool) {
	k := o.k
	var saa, sab, sbb, sax, sbx float64
	for j := 0; j < k.nsub(); j++ {
		S, M := float64(p.S[j]), float64(p.M[j])
		st := &o.subSt[j]
		saa += S * S * float64(st[2])
		sab -= S * M * float64(st[1])
		sbb += M * M * o.subW[j]
		sax += S * float64(st[3])
		sbx -= M * o.subWX[j]
	}
	if k.mMax == 0 || sbb == 0 {
		if !(saa > 0) {
			return 0, 0, false
		}
		d := round16(float32(sax / saa))
		return d, p.dmin, finite32(d)
	}
	det := saa*sbb - sab*sab
	if !(det > 0) {
		return 0, 0, false
	}
	d := round16(float32((sax*sbb - sbx*sab) / det))
	dmin := round16(float32((saa*sbx - sab*sax) / det))
	return d, dmin, finite32(d) && finite32(dmin)
}
