package quant

import (
	"encoding/binary"
	"math"
)

// The optimised i-quant quantizer. The grids leave little to search beyond
// what ggml does, so Quantize for an i-quant works on ggml's own blocks:
//
//  1. Candidates: ggml's search run with the reference weighting (the
//     importance when there is one; for IQ2_XXS, IQ2_XS and IQ1_S without
//     one, an importance of 1), without an importance where the type allows
//     it, and with weights equal to the error's own (the importance per
//     column, or 1, in place of ggml's importance·√(σ² + x²)).
//  2. Each candidate block is refined for the error actually minimised,
//     Σ w·(x − x̂)²: the integer group scales and the fp16 super-block scale
//     are refitted in closed form, alternately, then every grid point is
//     re-chosen at its group's final (quantized) scale among the point it
//     has and the grid neighbours of its rounded levels — ggml snaps the
//     points at the unquantized scale and never revisits them — and the
//     scales are refitted once more.
//  3. Of all candidates, refined or not, the block with the lowest weighted
//     error (decoded exactly) is kept, so the result is never worse than the
//     reference block, nor than ggml's unweighted block.

// iqLayout gives the optimiser access to one i-quant's block fields.
type iqLayout struct {
	// Scale groups: n of them, each covering glen values, with integer
	// codes in [0, cmax] and multiplier a + b·code of the super-block scale.
	n, glen, cmax int
	a, b          float32
	code          func(blk []byte, g int) int
	setCode       func(blk []byte, g, c int)
	// Grid points: dim values each, in a table tb.
	dim     int
	tb      func() *iqTable
	index   func(blk []byte, p int) int
	setIdx  func(blk []byte, p, k int)
	signs   func(blk []byte, p int) uint8 // sign bits of the point's values (IQ2, IQ3)
	shift   func(blk []byte, p int) float32
	explSgn bool // signs follow x (IQ2_S, IQ3_S); otherwise they are kept
	// The super-block scale as fp16 bits.
	d    func(blk []byte) uint16
	setD func(blk []byte, h uint16)
}

func dFirst(blk []byte) uint16         { return binary.LittleEndian.Uint16(blk) }
func setDFirst(blk []byte, h uint16)   { binary.LittleEndian.PutUint16(blk, h) }
func nib(b byte, hi int) int           { return int(b>>(4*hi)) & 0xf }
func setNib(b *byte, hi int, v int)    { *b = *b&^(0xf<<(4*hi)) | byte(v)<<(4*hi) }
func le16(b []byte) uint16             { return binary.LittleEndian.Uint16(b) }
func put16(b []byte, v uint16)         { binary.LittleEndian.PutUint16(b, v) }
func le32(b []byte) uint32             { return binary.LittleEndian.Uint32(b) }
func put32(b []byte, v uint32)         { binary.LittleEndian.PutUint32(b, v) }
func iq1mD(blk []byte) uint16          { return iq1mScaleBits(blk[48:56]) }
func iq1mSetD(blk []byte, h uint16)    { iq1mSetScaleBits(blk[48:56], h) }
func iq3Sign4(s uint8, half int) uint8 { return s >> (4 * half) & 0xf }

// iq1mScaleBits and iq1mSetScaleBits read and write IQ1_M's fp16 scale in
// the top nibbles of its scale words.
func iq1mScaleBits(sc []byte) uint16 {
	return le16(sc)>>12 | le16(sc[2:])>>8&0x00f0 | le16(sc[4:])>>4&0x0f00 | le16(sc[6:])&0xf000
}

func iq1mSetScaleBits(sc []byte, h uint16) {
	for k := range 4 {
		w := le16(sc[2*k:])&0x0fff | (h>>(4*k)&0xf)<<12
		put16(sc[2*k:], w)
	}
}

var iqLayouts = map[Type]*iqLayout{
	IQ2_XXS: {
		n: 8, glen: 32, cmax: 15, a: 0.125, b: 0.25,
		code:    func(blk []byte, g int) int { return int(le32(blk[2+8*g+4:]) >> 28) },
		setCode: func(blk []byte, g, c int) { put32(blk[2+8*g+4:], le32(blk[2+8*g+4:])&0x0fffffff|uint32(c)<<28) },
		dim:     8, tb: iq2xxsTable,
		index:  func(blk []byte, p int) int { return int(blk[2+8*(p/4)+p%4]) },
		setIdx: func(blk []byte, p, k int) { blk[2+8*(p/4)+p%4] = byte(k) },
		signs:  func(blk []byte, p int) uint8 { return iqSigns(uint8(le32(blk[2+8*(p/4)+4:]) >> (7 * (p % 4)))) },
		d:      dFirst, setD: setDFirst,
	},
	IQ2_XS: {
		n: 16, glen: 16, cmax: 15, a: 0.125, b: 0.25,
		code:    func(blk []byte, g int) int { return nib(blk[66+g/2], g%2) },
		setCode: func(blk []byte, g, c int) { setNib(&blk[66+g/2], g%2, c) },
		dim:     8, tb: iq2xsTable,
		index:  func(blk []byte, p int) int { return int(le16(blk[2+2*p:]) & 511) },
		setIdx: func(blk []byte, p, k int) { put16(blk[2+2*p:], le16(blk[2+2*p:])&^511|uint16(k)) },
		signs:  func(blk []byte, p int) uint8 { return iqSigns(uint8(le16(blk[2+2*p:]) >> 9)) },
		d:      dFirst, setD: setDFirst,
	},
	IQ2_S: {
		n: 16, glen: 16, cmax: 15, a: 0.125, b: 0.25,
		code:    func(blk []byte, g int) int { return nib(blk[74+g/2], g%2) },
		setCode: func(blk []byte, g, c int) { setNib(&blk[74+g/2], g%2, c) },
		dim:     8, tb: iq2sTable,
		index: func(blk []byte, p int) int { return int(blk[2+p]) | int(blk[66+p/4]>>(2*(p%4))&3)<<8 },
		setIdx: func(blk []byte, p, k int) {
			blk[2+p] = byte(k)
			blk[66+p/4] = blk[66+p/4]&^(3<<(2*(p%4))) | byte(k>>8)<<(2*(p%4))
		},
		signs:   func(blk []byte, p int) uint8 { return blk[34+p] },
		explSgn: true,
		d:       dFirst, setD: setDFirst,
	},
	IQ3_XXS: {
		n: 8, glen: 32, cmax: 15, a: 0.25, b: 0.5,
		code:    func(blk []byte, g int) int { return int(le32(blk[66+4*g:]) >> 28) },
		setCode: func(blk []byte, g, c int) { put32(blk[66+4*g:], le32(blk[66+4*g:])&0x0fffffff|uint32(c)<<28) },
		dim:     4, tb: iq3xxsTable,
		index:  func(blk []byte, p int) int { return int(blk[2+p]) },
		setIdx: func(blk []byte, p, k int) { blk[2+p] = byte(k) },
		signs: func(blk []byte, p int) uint8 {
			s := iqSigns(uint8(le32(blk[66+4*(p/8):]) >> (7 * (p % 8 / 2))))
			return iq3Sign4(s, p%2)
		},
		d: dFirst, setD: setDFirst,
	},
	IQ3_S: {
		n: 8, glen: 32, cmax: 15, a: 1, b: 2,
		code:    func(blk []byte, g int) int { return nib(blk[106+g/2], g%2) },
		setCode: func(blk []byte, g, c int) { setNib(&blk[106+g/2], g%2, c) },
		dim:     4, tb: iq3sTable,
		index: func(blk []byte, p int) int { return int(blk[2+p]) | int(blk[66+p/8]>>(p%8)&1)<<8 },
		setIdx: func(blk []byte, p, k int) {
			blk[2+p] = byte(k)
			blk[66+p/8] = blk[66+p/8]&^(1<<(p%8)) | byte(k>>8)<<(p%8)
		},
		signs:   func(blk []byte, p int) uint8 { return iq3Sign4(blk[74+p/2], p%2) },
		explSgn: true,
		d:       dFirst, setD: setDFirst,
	},
	IQ1_S: {
		n: 8, glen: 32, cmax: 7, a: 1, b: 2,
		code:    func(blk []byte, g int) int { return int(le16(blk[34+2*g:]) >> 12 & 7) },
		setCode: func(blk []byte, g, c int) { put16(blk[34+2*g:], le16(blk[34+2*g:])&^(7<<12)|uint16(c)<<12) },
		dim:     8, tb: iq1sTable,
		index: func(blk []byte, p int) int { return int(blk[2+p]) | int(le16(blk[34+2*(p/4):])>>(3*(p%4))&7)<<8 },
		setIdx: func(blk []byte, p, k int) {
			blk[2+p] = byte(k)
			o := 34 + 2*(p/4)
			put16(blk[o:], le16(blk[o:])&^(7<<(3*(p%4)))|uint16(k>>8)<<(3*(p%4)))
		},
		shift: func(blk []byte, p int) float32 {
			if le16(blk[34+2*(p/4):])&0x8000 != 0 {
				return -iq1Delta
			}
			return iq1Delta
		},
		d: dFirst, setD: setDFirst,
	},
	IQ1_M: {
		n: 16, glen: 16, cmax: 7, a: 1, b: 2,
		code: func(blk []byte, g int) int { return int(le16(blk[48+2*(g/4):]) >> (3 * (g % 4)) & 7) },
		setCode: func(blk []byte, g, c int) {
			o := 48 + 2*(g/4)
			put16(blk[o:], le16(blk[o:])&^(7<<(3*(g%4)))|uint16(c)<<(3*(g%4)))
		},
		dim: 8, tb: iq1sTable,
		index: func(blk []byte, p int) int { return int(blk[p]) | int(blk[32+p/2]>>(4*(p%2))&7)<<8 },
		setIdx: func(blk []byte, p, k int) {
			blk[p] = byte(k)
			blk[32+p/2] = blk[32+p/2]&^(7<<(4*(p%2))) | byte(k>>8)<<(4*(p%2))
		},
		shift: func(blk []byte, p int) float32 {
			if blk[32+p/2]>>(4*(p%2))&8 != 0 {
				return -iq1Delta
			}
			return iq1Delta
		},
		d: iq1mD, setD: iq1mSetD,
	},
}

// iqOptimizer holds one Quantize call's scratch buffers for an i-quant.
type iqOptimizer struct {
	t     Type
	lay   *iqLayout
	ref   weightedRef
	ts    int
	cands [][]byte // row candidates
	pure  []float32
	best  []byte
	work  []byte
	deq   []float32
	unit  []float32 // the block decoded with d = 1
	// refineFn is refine, or refineIQ4XS for IQ4_XS.
	refineFn func(blk []byte, x, w []float32) bool
}

// quantizeIQ is Quantize for the i-quants (see the comment at the top).
func quantizeIQ(t Type, dst []byte, src []float32, rowLen int, importance []float32) {
	o := &iqOptimizer{t: t, lay: iqLayouts[t], ref: weightedRefs[t], ts: t.TypeSize()}
	if t == IQ4_XS {
		o.refineFn = refineIQ4XS
	} else {
		o.refineFn = o.refine
	}
	rs := rowLen / qkK * o.ts
	o.best, o.work = make([]byte, o.ts), make([]byte, o.ts)
	o.deq, o.unit = make([]float32, qkK), make([]float32, qkK)
	o.pure = make([]float32, rowLen)
	w := importance
	if w == nil {
		w = onesImportance(rowLen)
	}
	var imps [][]float32
	switch {
	case importance != nil && !t.NeedsImportance():
		imps = [][]float32{importance, nil}
	case importance != nil:
		imps = [][]float32{importance}
	case t.NeedsImportance():
		imps = [][]float32{w}
	default:
		imps = [][]float32{nil}
	}
	o.cands = make([][]byte, len(imps)+1)
	for i := range o.cands {
		o.cands[i] = make([]byte, rs)
	}
	for r := 0; r < len(src)/rowLen; r++ {
		row := src[r*rowLen : (r+1)*rowLen]
		out := dst[r*rs : (r+1)*rs]
		for i, imp := range imps {
			o.ref(o.cands[i], row, imp)
		}
		o.pureWeights(row, w)
		o.ref(o.cands[len(imps)], row, o.pure)
		for b := 0; b < rowLen/qkK; b++ {
			o.block(out[b*o.ts:(b+1)*o.ts], b, row[b*qkK:(b+1)*qkK], w[b*qkK:(b+1)*qkK])
		}
	}
}

// pureWeights sets o.pure so that ggml's weights importance·√(σ² + x²)
// become w itself: w/√(σ² + x²) per element, with σ² the super-block's
// (2Σx²/256, or Σx²/256 for IQ2_XXS and IQ2_XS).
func (o *iqOptimizer) pureWeights(row, w []float32) {
	for b := 0; b < len(row)/qkK; b++ {
		x := row[b*qkK : (b+1)*qkK]
		sigma2 := sumSquares(x) / qkK
		if o.t != IQ2_XXS && o.t != IQ2_XS {
			sigma2 = 2 * sumSquares(x) / qkK
		}

		for i, v := range x {
			s := sqrtf(sigma2 + float32(v*v))
			p := float32(0)
			if s > 0 && !math.IsInf(float64(s), 0) {
				p = w[b*qkK+i] / s
			}
			o.pure[b*qkK+i] = p
		}
	}
}

// block writes the best of the candidates' block b (and their refinements)
// for x under the weights w into y.
func (o *iqOptimizer) block(y []byte, b int, x, w []float32) {
	copy(y, o.cands[0][b*o.ts:(b+1)*o.ts])
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return
		}
	}
	best := o.err(y, x, w)
	for i, c := range o.cands {
		blk := c[b*o.ts : (b+1)*o.ts]
		if i > 0 {
			if e := o.err(blk, x, w); e < best {
				best = e
				copy(y, blk)
			}
		}
		copy(o.work, blk)
		if o.refineFn(o.work, x, w) {
			if e := o.err(o.work, x, w); e < best {
				best = e
				copy(y, o.work)
			}
		}
	}
}

// err is the block's weighted squared error, decoded exactly.
func (o *iqOptimizer) err(blk []byte, x, w []float32) float64 {
	o.t.codec().dequantize(o.deq, blk)
	return weightedSE(o.deq, x, w)
}

// refine improves blk in place for Σ w·(x − x̂)² (step 2); it reports
// false when there is nothing to refine (a zero or non-finite scale).
func (o *iqOptimizer) refine(blk []byte, x, w []float32) bool {
	l := o.lay
	d := fp16ToFP32(l.d(blk))
	if !(d > 0) || math.IsInf(float64(d), 0) {
		return false
	}
	o.fitScales(blk, x, w)
	o.resnap(blk, x, w)
	o.fitScales(blk, x, w)
	return true
}

// unitValues decodes blk with d = 1 and every scale code's multiplier
// divided out, into o.unit: the values v with x̂ = d·m(code)·v.
func (o *iqOptimizer) unitValues(blk []byte) {
	l := o.lay
	h := l.d(blk)
	l.setD(blk, 0x3C00)
	o.t.codec().dequantize(o.unit, blk)
	l.setD(blk, h)
	for g := range l.n {
		m := l.a + l.b*float32(l.code(blk, g))
		for i := g * l.glen; i < (g+1)*l.glen; i++ {
			o.unit[i] /= m
		}
	}
}

// fitScales refits the group codes and the super-block scale by three
// rounds of alternating least squares.
func (o *iqOptimizer) fitScales(blk []byte, x, w []float32) {
	l := o.lay
	o.unitValues(blk)
	d := float64(fp16ToFP32(l.d(blk)))
	for range 3 {
		// Codes given d.
		for g := range l.n {
			var sxv, svv float64
			for i := g * l.glen; i < (g+1)*l.glen; i++ {
				v := float64(o.unit[i])
				sxv += float64(w[i]) * v * float64(x[i])
				svv += float64(w[i]) * v * v
			}
			if svv <= 0 || d <= 0 {
				continue
			}
			m := sxv / svv / d
			c := int(math.Round((m - float64(l.a)) / float64(l.b)))
			l.setCode(blk, g, max(0, min(l.cmax, c)))
		}
		// d given the codes.
		var sxu, suu float64
		for g := range l.n {
			m := float64(l.a + l.b*float32(l.code(blk, g)))
			for i := g * l.glen; i < (g+1)*l.glen; i++ {
				u := m * float64(o.unit[i])
				sxu += float64(w[i]) * u * float64(x[i])
				suu += float64(w[i]) * u * u
			}
		}
		if suu <= 0 || sxu <= 0 {
			return
		}
		d = sxu / suu
		h := fp32ToFP16(float32(d))
		if h >= 0x7C00 {
			return
		}
		l.setD(blk, h)
		d = float64(fp16ToFP32(h))
	}
}

// resnap re-chooses every grid point at its group's final scale.
func (o *iqOptimizer) resnap(blk []byte, x, w []float32) {
	l := o.lay
	tb := l.tb()
	d := fp16ToFP32(l.d(blk))
	bitsPer := 2
	if l.dim == 4 {
		bitsPer = 3
	}
	levels := make([]int8, l.dim)
	xs := make([]float32, l.dim) // x as the grid sees it (sign removed)
	for p := 0; p < qkK/l.dim; p++ {
		lo := p * l.dim
		g := lo / l.glen
		s := d * (l.a + l.b*float32(l.code(blk, g)))
		if !(s > 0) || math.IsInf(float64(s), 0) {
			continue
		}
		xp, wp := x[lo:lo+l.dim], w[lo:lo+l.dim]
		var shift float32
		var sg uint8
		if l.shift != nil {
			shift = l.shift(blk, p)
			copy(xs, xp)
		} else {
			sg = l.signs(blk, p)
			if l.explSgn {
				sg = 0
				for i, v := range xp {
					if v < 0 {
						sg |= 1 << i
					}
				}
			}
			for i, v := range xp {
				if sg>>i&1 != 0 {
					v = -v
				}
				xs[i] = v
			}
		}
		for i, v := range xs {
			levels[i] = nearestLevel(tb.vals, v/s-shift)
		}
		cur := l.index(blk, p)
		bestK, bestE := cur, o.pointErr(tb, cur, xs, wp, s, shift)
		try := func(k int) {
			if e := o.pointErr(tb, k, xs, wp, s, shift); e < bestE {
				bestK, bestE = k, e
			}
		}
		key := iqKey(levels, bitsPer)
		if gi := tb.kmap[key]; gi >= 0 {
			try(int(gi))
		} else {
			for _, k := range tb.near(key) {
				try(int(k))
			}
		}
		if bestK != cur {
			l.setIdx(blk, p, bestK)
		}
		if l.explSgn {
			o.setSigns(blk, p, sg)
		}
	}
}

// nearestLevel is the index of the value of vals (ascending) nearest to v.
func nearestLevel(vals []float32, v float32) int8 {
	best, bd := 0, float32(math.Inf(1))
	for l, c := range vals {
		if e := abs32(c - v); e < bd {
			best, bd = l, e
		}
	}
	return int8(best)
}

// setSigns stores explicit sign bits for point p (IQ2_S, IQ3_S).
func (o *iqOptimizer) setSigns(blk []byte, p int, sg uint8) {
	switch o.t {
	case IQ2_S:
		blk[34+p] = sg
	case IQ3_S:
		b := &blk[74+p/2]
		*b = *b&^(0xf<<(4*(p%2))) | sg<<(4*(p%2))
	}
}

// pointErr is Σ w·(s·q − x)² for grid point k, q its coordinate value
// (2l+1-coded magnitude for IQ2/IQ3 as the dequantizer's grid value, or the
// shifted ternary value for IQ1).
func (o *iqOptimizer) pointErr(tb *iqTable, k int, xs, w []float32, s, shift float32) float64 {
	var e float64
	for i := range xs {
		var q float32
		if o.lay.shift != nil {
			q = float32(int8(iq1sGrid[k]>>(8*i))) + shift
		} else {
			q = o.gridValue(k, i)
		}
		diff := float64(s)*float64(q) - float64(xs[i])
		e += float64(w[i]) * diff * diff
	}
	return e
}

// gridValue is coordinate i of grid point k as the dequantizer reads it.
func (o *iqOptimizer) gridValue(k, i int) float32 {
	switch o.t {
	case IQ2_XXS:
		return float32(uint8(iq2xxsGrid[k] >> (8 * i)))
	case IQ2_XS:
		return float32(uint8(iq2xsGrid[k] >> (8 * i)))
	case IQ2_S:
		return float32(uint8(iq2sGrid[k] >> (8 * i)))
	case IQ3_XXS:
		return float32(uint8(iq3xxsGrid[k] >> (8 * i)))
	default:
		return float32(uint8(iq3sGrid[k] >> (8 * i)))
	}
}

// refineIQ4XS improves an IQ4_XS block for Σ w·(x − x̂)²: alternately the
// sub-block scale codes and d are refitted in closed form and every value
// takes its nearest grid level at its sub-block's final scale. It reports
// false when the block has no usable scale.
func refineIQ4XS(blk []byte, x, w []float32) bool {
	d := float64(getF16(blk))
	if d == 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		return false
	}
	g := &iq4nlGrid
	var q [qkK]uint8
	for ib := 0; ib < 8; ib++ {
		qs := blk[8+16*ib:]
		for j := 0; j < 16; j++ {
			q[32*ib+j], q[32*ib+16+j] = qs[j]&0xf, qs[j]>>4
		}
	}
	for range 3 {
		// Codes given d and the levels.
		for ib := 0; ib < 8; ib++ {
			var sxv, svv float64
			for i := 32 * ib; i < 32*(ib+1); i++ {
				v := float64(g[q[i]])
				sxv += float64(w[i]) * v * float64(x[i])
				svv += float64(w[i]) * v * v
			}
			if svv > 0 {
				c := int(math.Round(sxv/svv/d)) + 32
				setIQ4XSScaleCode(blk, ib, max(0, min(63, c)))
			}
		}
		// d given the codes.
		var sxu, suu float64
		for ib := 0; ib < 8; ib++ {
			m := float64(iq4xsScaleCode(blk, ib) - 32)
			for i := 32 * ib; i < 32*(ib+1); i++ {
				u := m * float64(g[q[i]])
				sxu += float64(w[i]) * u * float64(x[i])
				suu += float64(w[i]) * u * u
			}
		}
		if suu <= 0 {
			break
		}
		h := fp32ToFP16(float32(sxu / suu))
		if h&0x7C00 == 0x7C00 || fp16ToFP32(h) == 0 {
			break
		}
		putF16(blk, fp16ToFP32(h))
		d = float64(fp16ToFP32(h))
		// Levels given the scales.
		for ib := 0; ib < 8; ib++ {
			dl := float32(d) * float32(iq4xsScaleCode(blk, ib)-32)
			if dl == 0 {
				continue
			}
			idl := 1 / dl
			for i := 32 * ib; i < 32*(ib+1); i++ {
				q[i] = bestIndexInt8(g, idl*x[i])
			}
		}
	}
	for ib := 0; ib < 8; ib++ {
		qs := blk[8+16*ib:]
		for j := 0; j < 16; j++ {
			qs[j] = q[32*ib+j] | q[32*ib+16+j]<<4
		}
	}
	return true
}
