package quant

import (
	"fmt"
	"math"
	"slices"
)

// Quantize quantizes the rows of src (each rowLen long) into dst with the
// optimised quantizer for t: the same byte layout as QuantizeRef (any
// Dequantize of its output is valid), chosen to give a lower, or at worst
// equal, squared error.
//
// importance, when not nil, has rowLen entries, one per column, all finite
// and non-negative (an imatrix: the mean squared activation each column
// meets); the error minimised is then Σ importance[c]·(x − x̂)² over the
// elements of a block, so columns with more importance get less error.
// With importance == nil every column weighs 1 and the error is the plain
// squared error.
//
// Every block is quantized twice: by the reference quantizer — without an
// importance QuantizeRef's bytes, with one QuantizeRefWeighted's, i.e.
// ggml's own importance-weighted result — and by a search that minimises
// the weighted error directly (a grid of candidate scales around the
// absmax- and least-squares-optimal ones, each followed by a least-squares
// refit of the scale, and min, for the chosen integer levels; for Q4_1 and
// Q5_1 the min is free, for IQ4_NL the levels are the grid's; for the
// K-quants also a fit of the sub-block
// scales to the 6-/4-/8-bit grid and a coordinate descent on the integer
// sub-block scales and mins alternating with a least-squares refit of the
// fp16 super-block scales, started both from the search's own fit and from
// the reference block; for TQ1_0/TQ2_0 the exact optimum of the per-block
// d). Both blocks are decoded and the one with the lower weighted error is
// kept, so the (weighted) error is never above the (weighted) reference's,
// block by block, by construction; the search makes it strictly lower on most blocks. Blocks
// holding NaN or ±Inf keep the reference bytes.
//
// F32, F16 and BF16 have nothing to search: Quantize is QuantizeRef for them
// (importance is still checked). The i-quants
// have their own optimiser, described in the package documentation; for
// IQ2_XXS, IQ2_XS and IQ1_S it is the way to quantize without an importance.
func Quantize(t Type, dst []byte, src []float32, rowLen int, importance []float32) error {
	nrows, err := shape(t, rowLen, len(src), len(dst))
	if err != nil {
		return fmt.Errorf("quant: quantize %d values to %s: %w", len(src), t, err)
	}
	if err := checkImportance(importance, rowLen); err != nil {
		return fmt.Errorf("quant: quantize to %s: %w", t, err)
	}
	if t == IQ4_XS || iqLayouts[t] != nil {
		quantizeIQ(t, dst, src, rowLen, importance)
		return nil
	}
	o := newOptimizer(t)
	if o == nil {
		if t.codec().quantize == nil {
			return fmt.Errorf("quant: quantize to %s: %w", t, ErrNeedsImportance)
		}
		t.codec().quantize(dst, src)
		return nil
	}
	// The reference bytes first (ggml's importance-weighted quantizer when
	// there is an importance), then the search block by block.
	if err := QuantizeRefWeighted(t, dst, src, rowLen, importance); err != nil {
		return err
	}
	bs, ts := o.c.blockSize, o.c.typeSize
	nb := rowLen / bs
	ones := make([]float32, bs)
	for i := range ones {
		ones[i] = 1
	}
	for r := 0; r < nrows; r++ {
		row := src[r*rowLen : (r+1)*rowLen]
		out := dst[r*nb*ts : (r+1)*nb*ts]
		for b := 0; b < nb; b++ {
			w := ones
			if importance != nil {
				w = importance[b*bs : (b+1)*bs]
			}
			o.block(out[b*ts:(b+1)*ts], row[b*bs:(b+1)*bs], w)
		}
	}
	return nil
}

// checkImportance accepts nil or rowLen finite, non-negative values.
func checkImportance(importance []float32, rowLen int) error {
	if importance == nil {
		return nil
	}
	if len(importance) != rowLen {
		return fmt.Errorf("importance has %d entries, the rows have %d columns", len(importance), rowLen)
	}
	for i, v := range importance {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return fmt.Errorf("importance[%d] = %g is not a finite non-negative number", i, v)
		}
	}
	return nil
}

// optimizer holds one type's search and the scratch buffers of one
// Quantize call (nothing is shared between calls).
type optimizer struct {
	t      Type
	c      *codec
	search func(o *optimizer, y []byte, x, w []float32)
	ref    []byte    // the reference block, for searches that start from it
	cand   []byte    // the searched block
	deq    []float32 // decoded block
	lv, lb []int32   // levels: current and best
	// K-quants
	k        *kLayout
	pa, pb   kParams
	gl       [qkK]int32 // levels of gridStats
	subErr   [16]float64
	subSt    [16]gridSums // sums of each sub-block's last assignment
	subW     [16]float64  // Σ w of each sub-block
	subWX    [16]float64  // Σ w·x of each sub-block
	fs, fm   [16]float32  // sub-block float scales and mins
	fsw, fmw [16]float32  // their weights
	// ternary
	idx   []int
	trits [qkK]uint8
}

// newOptimizer returns the optimiser of t, or nil for the float types.
func newOptimizer(t Type) *optimizer {
	c := t.codec()
	o := &optimizer{t: t, c: c}
	switch t {
	case Q8_0, Q4_0, Q5_0:
		o.search = (*optimizer).searchScalar
	case Q4_1, Q5_1:
		o.search = (*optimizer).searchAsym
	case IQ4_NL:
		o.search = (*optimizer).searchGrid
	case Q2_K, Q3_K, Q4_K, Q5_K, Q6_K:
		o.search = (*optimizer).searchK
		o.k = kLayouts[t]
	case TQ1_0, TQ2_0:
		o.search = (*optimizer).searchTernary
		o.idx = make([]int, qkK)
	default:
		return nil
	}
	o.ref = make([]byte, c.typeSize)
	o.cand = make([]byte, c.typeSize)
	o.deq = make([]float32, c.blockSize)
	o.lv = make([]int32, max(c.blockSize, 16))
	o.lb = make([]int32, max(c.blockSize, 16))
	return o
}

// block replaces the reference block in y by the searched one for x when
// that decodes with a lower error under the weights w.
func (o *optimizer) block(y []byte, x, w []float32) {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return
		}
	}
	eRef := o.blockErr(y, x, w)
	copy(o.ref, y)
	o.search(o, o.cand, x, w)
	// eRef may be NaN or +Inf (an fp16 scale that overflowed); a NaN keeps
	// the reference.
	if eOpt := o.blockErr(o.cand, x, w); eOpt < eRef {
		copy(y, o.cand)
	}
}

// blockErr decodes one block with the type's Dequantize and returns
// Σ w·(x̂ − x)² in float64.
func (o *optimizer) blockErr(b []byte, x, w []float32) float64 {
	o.c.dequantize(o.deq, b)
	return weightedSE(o.deq, x, w)
}

// weightedSE is Σ w·(a − b)² in float64.
func weightedSE(a, b, w []float32) float64 {
	var e float64
	w = w[:len(a)]
	b = b[:len(a)]
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		e += float64(w[i]) * d * d
	}
	return e
}

// round16 rounds f to the nearest fp16 value (as ggml stores it).
func round16(f float32) float32 { return fp16ToFP32(fp32ToFP16(f)) }

func finite32(f float32) bool { return !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) }

// roundClamp is the nearest integer to f (halves rounded up) clamped to
// [lo, hi]; NaN gives lo.
func roundClamp(f float64, lo, hi int32) int32 {
	f = math.Floor(f + 0.5)
	if !(f >= float64(lo)) {
		return lo
	}
	if f > float64(hi) {
		return hi
	}
	return int32(f)
}

// symEval assigns to every x the nearest level l in [lo, hi] for the scale
// d (the reconstruction is float32(l)·d, as the decoders compute it),
// stores l − lo in L and returns Σ w·(x − x̂)² with, for a refit of d, the
// sums Σ w·x·l and Σ w·l². The pass is gridStats's (float32 sums).
func symEval(x, w []float32, d float32, lo, hi int32, L []int32) (e, num, den float64) {
	L = L[:len(x)]
	w = w[:len(x)]
	ie := float32(1 / float64(d))
	if d == 0 || !finite32(ie) {
		return symEvalSlow(x, w, d, lo, hi, L)
	}
	c := gridParams{ie: ie, bias: float32(-lo) + 0.5, qmax: float32(hi - lo), e: d, qoff: float32(-lo)}
	var s gridSums
	gridStats(x, w, &c, &s, L)
	return float64(s[0]), float64(s[3]), float64(s[2])
}

// symEvalSlow is symEval in float64 for the scales whose inverse is not a
// finite float32 (0 and the smallest subnormals).
func symEvalSlow(x, w []float32, d float32, lo, hi int32, L []int32) (e, num, den float64) {
	if d == 0 {
		for i, v := range x {
			L[i] = -lo
			e += float64(w[i]) * float64(v) * float64(v)
		}
		return e, 0, 0
	}
	id := 1 / float64(d)
	for i, v := range x {
		l := roundClamp(float64(v)*id, lo, hi)
		L[i] = l - lo
		r := float64(float32(l) * d)
		diff := r - float64(v)
		e += float64(w[i]) * diff * diff
		num += float64(w[i]) * float64(v) * float64(l)
		den += float64(w[i]) * float64(l) * float64(l)
	}
	return e, num, den
}

// symScale is the least-squares scale num/den = Σ w·x·l / Σ w·l² for fixed
// levels (0 when every level is 0), rounded to fp16 if half.
func symScale(num, den float64, half bool) float32 {
	if den <= 0 {
		return 0
	}
	d := float32(num / den)
	if half {
		d = round16(d)
	}
	return d
}

// symSearch fits x ≈ d·l with integer levels l in [lo, hi] (lo ≤ 0 ≤ hi),
// minimising Σ w·(x − d·l)²; with half, d is restricted to fp16 values.
// The candidates put the element of largest magnitude on ntrial targets
// from just beyond the end level K of either side down to K − spread
// (d = x_max/±target), plus the seeds; each is followed by a
// least-squares refit of d for its levels, and the best by a few more
// refit-and-reassign (Lloyd) steps. The levels are left in best (len(x)
// used), cur is scratch; the scale and error are returned.
func symSearch(x, w []float32, lo, hi int32, ntrial int, spread float32, half bool, seeds []float32, cur, best []int32) (float32, float64) {
	var amax, xmax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, xmax = a, v
		}
	}
	if amax == 0 {
		for i := range x {
			best[i] = 0
		}
		return 0, 0
	}
	bestD, bestE := float32(0), math.Inf(1)
	var bestNum, bestDen float64
	try := func(d float32) {
		if half {
			d = round16(d)
		}
		if d == 0 || !finite32(d) {
			return
		}
		e, num, den := symEval(x, w, d, lo, hi, cur)
		if e < bestE {
			bestD, bestE, bestNum, bestDen = d, e, num, den
			copy(best, cur[:len(x)])
		}
		d1 := symScale(num, den, half)
		if d1 == d || d1 == 0 || !finite32(d1) {
			return
		}
		if e1, num1, den1 := symEval(x, w, d1, lo, hi, cur); e1 < bestE {
			bestD, bestE, bestNum, bestDen = d1, e1, num1, den1
			copy(best, cur[:len(x)])
		}
	}
	for _, side := range [2]float32{1, -1} {
		K := float32(hi)
		if side < 0 {
			K = float32(-lo)
		}
		if K == 0 {
			continue
		}
		for t := 0; t < ntrial; t++ {
			target := K + 0.45 - (spread+0.45)*float32(t)/float32(max(ntrial-1, 1))
			if target < 0.3 {
				continue
			}
			try(xmax / (side * target))
		}
	}
	for _, s := range seeds {
		try(s)
	}
	if math.IsInf(bestE, 1) {
		// every candidate scale overflowed or vanished
		bestD = 0
		bestE, _, _ = symEval(x, w, 0, lo, hi, best)
	}
	for it := 0; it < 4; it++ {
		d1 := symScale(bestNum, bestDen, half)
		if d1 == bestD || d1 == 0 || !finite32(d1) {
			break
		}
		e1, num1, den1 := symEval(x, w, d1, lo, hi, cur)
		if !(e1 < bestE) {
			break
		}
		bestD, bestE, bestNum, bestDen = d1, e1, num1, den1
		copy(best, cur[:len(x)])
	}
	for i := range best[:len(x)] {
		best[i] += lo
	}
	return bestD, bestE
}

// searchScalar is the search of Q8_0, Q4_0 and Q5_0: one fp16 scale per
// block of 32 and levels in [−128, 127], [−8, 7] or [−16, 15].
func (o *optimizer) searchScalar(y []byte, x, w []float32) {
	var lo, hi int32 = -8, 7
	ntrial, spread := 16, float32(2)
	switch o.t {
	case Q8_0:
		lo, hi, ntrial, spread = -128, 127, 12, 6
	case Q5_0:
		lo, hi, ntrial, spread = -16, 15, 16, 3
	}
	seeds := [1]float32{getF16(o.ref)} // the reference's own scale
	d, _ := symSearch(x, w, lo, hi, ntrial, spread, true, seeds[:], o.lv, o.lb)
	putF16(y, d)
	L := o.lb[:len(x)]
	switch o.t {
	case Q8_0:
		for j, l := range L {
			y[2+j] = uint8(int8(l))
		}
		return
	case Q5_0:
		var q [32]uint8
		for j, l := range L {
			q[j] = uint8(l + 16)
		}
		putQ5(y[2:6], y[6:blockQ50], &q)
		return
	}
	for j := 0; j < halfQK40; j++ {
		y[2+j] = uint8(L[j]+8) | uint8(L[j+halfQK40]+8)<<4
	}
}

// searchTernary is the search of TQ1_0 and TQ2_0: x ≈ d·t with t in
// {−1, 0, 1}. For a fixed d the best t is sign(x) where |x| > d/2, so the
// non-zero set of an optimum is one of the 257 sets "the k largest |x|";
// for each the least-squares d is Σw|x|/Σw over the set and the error
// Σwx² − (Σw|x|)²/Σw. The best k's d is rounded to fp16 and refined by a
// few reassign-and-refit steps.
func (o *optimizer) searchTernary(y []byte, x, w []float32) {
	idx := o.idx
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		aa, ab := abs32(x[a]), abs32(x[b])
		switch {
		case aa > ab:
			return -1
		case aa < ab:
			return 1
		}
		return a - b
	})
	var total float64
	for i, v := range x {
		total += float64(w[i]) * float64(v) * float64(v)
	}
	var s0, s1 float64
	bestE, bestD := total, 0.0
	for _, i := range idx {
		s0 += float64(w[i])
		s1 += float64(w[i]) * float64(abs32(x[i]))
		if s0 > 0 {
			if e := total - s1*s1/s0; e < bestE {
				bestE, bestD = e, s1/s0
			}
		}
	}
	d := round16(float32(bestD))
	e := o.ternaryEval(x, w, d)
	for it := 0; it < 3; it++ {
		var n0, n1 float64
		for i, v := range x {
			if o.trits[i] != 1 {
				n0 += float64(w[i])
				n1 += float64(w[i]) * float64(abs32(v))
			}
		}
		if n0 <= 0 {
			break
		}
		d1 := round16(float32(n1 / n0))
		if d1 == d {
			break
		}
		save := o.trits
		e1 := o.ternaryEval(x, w, d1)
		if !(e1 < e) {
			o.trits = save
			break
		}
		d, e = d1, e1
	}
	encodeTernary(o.t, y, &o.trits, d)
}

// ternaryEval sets o.trits (value+1) to the best trits for d ≥ 0 and
// returns the weighted error.
func (o *optimizer) ternaryEval(x, w []float32, d float32) float64 {
	var e float64
	half := float64(d) / 2
	for i, v := range x {
		t := int32(0)
		if d > 0 && math.Abs(float64(v)) > half {
			t = 1
			if v < 0 {
				t = -1
			}
		}
		o.trits[i] = uint8(t + 1)
		diff := float64(float32(t)*d) - float64(v)
		e += float64(w[i]) * diff * diff
	}
	return e
}
