package quant

import (
	"encoding/binary"
	"math"
	"sort"
)

// Reference quantizers of IQ1_S and IQ1_M: ggml's quantize_row_iq1_s_impl
// and quantize_row_iq1_m_impl. With 3 values per coordinate (−1, 0, 1, all
// shifted by ±1/8) the best split of a sorted sub-block into the three
// values is found exhaustively for each shift; groups of 8 off the grid
// take the nearest of their neighbours, the sub-block scale is refitted,
// and the scales are coded in 3 bits under max/15 (IQ1_S: times 1.125;
// IQ1_M: a least-squares refit of the super-block scale, times 1.1125).

// The shifted values of a coordinate: iq1Plus for a +1/8 shift, iq1Minus
// for −1/8.
var (
	iq1Plus  = [3]float32{-1 + iq1Delta, iq1Delta, 1 + iq1Delta}
	iq1Minus = [3]float32{-1 - iq1Delta, -iq1Delta, 1 - iq1Delta}
)

// iq1SortOrder writes to idx the indices of xb in ascending order of value,
// ties in index order (glibc's qsort, a merge sort, is stable).
func iq1SortOrder(idx []int, xb []float32) {
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return xb[idx[a]] < xb[idx[b]] })
}

// iq1BestNeighbour is iq1_find_best_neighbour2: the neighbour of least
// Σ w·(scale·xx[l] − x)², whose levels it writes to L; −1 when none is below
// FLT_MAX (NaN input).
func iq1BestNeighbour(tb *iqTable, neighbours []uint16, xb, w []float32, scale float32, xx *[3]float32, L []int8) int {
	best := float32(math.MaxFloat32)
	gi := -1
	for _, k := range neighbours {
		var d2 float32
		for i, p := range tb.point(int(k)) {
			diff := float32(scale*xx[(p-1)/2]) - xb[i]
			d2 += float32(w[i] * diff * diff)
		}
		if d2 < best {
			best, gi = d2, int(k)
		}
	}
	if gi >= 0 {
		iqSetLevels(tb, gi, L)
	}
	return gi
}

// iq1Snap looks up each group of 8 levels of L on the grid (shift xxFor(k)
// for group k), taking the best neighbour for the groups off it, writes
// the grid indices to index and refits the scale when a group was off the
// grid.
func iq1Snap(tb *iqTable, xb, w []float32, scale float32, L []int8, index []uint16, xxFor func(k int) *[3]float32) float32 {
	allOn := true
	for k := range index {
		g := L[8*k : 8*k+8]
		key := iqKey(g, 2)
		gi := int(tb.kmap[key])
		if gi < 0 {
			allOn = false
			gi = max(iq1BestNeighbour(tb, tb.near(key), xb[8*k:8*k+8], w[8*k:8*k+8], scale, xxFor(k), g), 0)
		}
		index[k] = uint16(gi)
	}
	if !allOn {
		var sumqx, sumq2 float32
		for k := range index {
			xx := xxFor(k)
			for j, p := range tb.point(int(index[k])) {
				q := xx[(p-1)/2]
				sumqx += float32(w[8*k+j] * q * xb[8*k+j])
				sumq2 += float32(w[8*k+j] * q * q)
			}
		}
		if sumqx > 0 && sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale
}

func quantizeRowIQ1S(dst []byte, x, importance []float32) {
	tb := iq1sTable()
	const bs = 32
	var (
		scales     [8]float32
		shifts     [8]int8
		weight     [bs]float32
		sumx, sumw [bs + 1]float32
		idx        [bs]int
		L          [bs]int8
		index      [4]uint16
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ1S : (ibl+1)*blockIQ1S]
		clear(y)
		qs := y[2:34]
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(2 * sumSquares(xbl) / qkK)
		for ib := 0; ib < qkK/bs; ib++ {
			xb := xbl[bs*ib : bs*(ib+1)]
			iqWeights(weight[:], xb, importance, qkK*ibl+bs*ib, sigma2)
			max := maxAbsOf(xb)
			if max < groupMaxEpsIQ1S {
				scales[ib], shifts[ib] = 0, 1
				continue
			}
			iq1SortOrder(idx[:], xb)
			for j, i := range idx {
				sumx[j+1] = sumx[j] + float32(weight[i]*xb[i])
				sumw[j+1] = sumw[j] + weight[i]
			}
			bestScore, scale := float32(-math.MaxFloat32), max
			besti1, besti2, bestShift := -1, -1, 0
			for i1 := 0; i1 <= bs; i1++ {
				for i2 := i1; i2 <= bs; i2++ {
					for _, sh := range [2]int{1, -1} {
						xp := &iq1Plus
						if sh < 0 {
							xp = &iq1Minus
						}
						a, b, c := sumx[i1]-sumx[0], sumx[i2]-sumx[i1], sumx[bs]-sumx[i2]
						sumqx := float32(float32(a*xp[0])+float32(b*xp[1])) + float32(c*xp[2])
						a, b, c = sumw[i1]-sumw[0], sumw[i2]-sumw[i1], sumw[bs]-sumw[i2]
						sumq2 := float32(float32(a*xp[0]*xp[0])+float32(b*xp[1]*xp[1])) + float32(c*xp[2]*xp[2])
						if sumq2 > 0 && sumqx*sumqx > bestScore*sumq2 {
							scale = sumqx / sumq2
							bestScore = scale * sumqx
							besti1, besti2, bestShift = i1, i2, sh
						}
					}
				}
			}
			if besti1 < 0 || besti2 < 0 || bestShift == 0 {
				scales[ib], shifts[ib] = 0, 1
				continue
			}
			iq1Levels(L[:], idx[:], besti1, besti2)
			if scale < 0 {
				for j := range L {
					L[j] = 2 - L[j]
				}
				scale, bestShift = -scale, -bestShift
			}
			xx := &iq1Plus
			if bestShift != 1 {
				xx = &iq1Minus
			}
			scale = iq1Snap(tb, xb, weight[:], scale, L[:], index[:], func(int) *[3]float32 { return xx })
			var h uint16
			for k, gi := range index {
				qs[4*ib+k] = byte(gi)
				h |= gi >> 8 << (3 * k)
			}
			binary.LittleEndian.PutUint16(y[34+2*ib:], h)
			scales[ib], shifts[ib] = scale, int8(bestShift)
			maxScale = maxf(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 15
		putF16(y, d*1.125)
		id := 1 / d
		for ib := 0; ib < 8; ib++ {
			l := uint16(clampInt(nearestInt(0.5*(float32(id*scales[ib])-1)), 0, 7))
			if shifts[ib] == -1 {
				l |= 8
			}
			h := binary.LittleEndian.Uint16(y[34+2*ib:])
			binary.LittleEndian.PutUint16(y[34+2*ib:], h|l<<12)
		}
	}
}

// iq1Levels assigns level 0 to the sorted positions before i1, 1 up to i2
// and 2 after.
func iq1Levels(L []int8, idx []int, i1, i2 int) {
	for j, i := range idx {
		switch {
		case j < i1:
			L[i] = 0
		case j < i2:
			L[i] = 1
		default:
			L[i] = 2
		}
	}
}

// iq1mShift returns the shifted values of group k (0: first 8 values, 1:
// last 8) of an IQ1_M sub-block for shift code c: bit 1 of c is the first
// group's minus sign, bit 0 the second's.
func iq1mShift(c, k int) *[3]float32 {
	if (k == 0 && c < 2) || (k == 1 && c%2 == 0) {
		return &iq1Plus
	}
	return &iq1Minus
}

func quantizeRowIQ1M(dst []byte, x, importance []float32) {
	tb := iq1sTable()
	const bs = 16
	masks := [4]uint8{0x00, 0x80, 0x08, 0x88}
	var (
		scales [16]float32
		shifts [16]int
		weight [bs]float32
		idx    [bs]int
		L      [bs]int8
		index  [2]uint16
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ1M : (ibl+1)*blockIQ1M]
		clear(y)
		qs, qh, sc := y[0:32], y[32:48], y[48:56]
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(2 * sumSquares(xbl) / qkK)
		for ib := 0; ib < qkK/bs; ib++ {
			xb := xbl[bs*ib : bs*(ib+1)]
			iqWeights(weight[:], xb, importance, qkK*ibl+bs*ib, sigma2)
			max := maxAbsOf(xb)
			if max < groupMaxEpsIQ1M {
				scales[ib], shifts[ib] = 0, 0
				continue
			}
			iq1SortOrder(idx[:], xb)
			bestScore, scale := float32(-math.MaxFloat32), max
			besti1, besti2, bestK := -1, -1, -1
			for i1 := 0; i1 <= bs; i1++ {
				for i2 := i1; i2 <= bs; i2++ {
					var sumqx, sumq2 [4]float32
					for j, i := range idx {
						lv := 2
						if j < i1 {
							lv = 0
						} else if j < i2 {
							lv = 1
						}
						p, m := iq1Plus[lv], iq1Minus[lv]
						wp, wm := float32(weight[i]*p*xb[i]), float32(weight[i]*m*xb[i])
						wp2, wm2 := float32(weight[i]*p*p), float32(weight[i]*m*m)
						// Shift codes 0: (+,+) 1: (+,−) 2: (−,+) 3: (−,−) for
						// the first and second 8 values.
						if i < bs/2 {
							sumqx[0] += wp
							sumqx[1] += wp
							sumqx[2] += wm
							sumqx[3] += wm
							sumq2[0] += wp2
							sumq2[1] += wp2
							sumq2[2] += wm2
							sumq2[3] += wm2
						} else {
							sumqx[0] += wp
							sumqx[2] += wp
							sumqx[1] += wm
							sumqx[3] += wm
							sumq2[0] += wp2
							sumq2[2] += wp2
							sumq2[1] += wm2
							sumq2[3] += wm2
						}
					}
					for k := range 4 {
						if sumq2[k] > 0 && sumqx[k]*sumqx[k] > bestScore*sumq2[k] {
							scale = sumqx[k] / sumq2[k]
							bestScore = scale * sumqx[k]
							besti1, besti2, bestK = i1, i2, k
						}
					}
				}
			}
			if besti1 < 0 || besti2 < 0 || bestK < 0 {
				scales[ib], shifts[ib] = 0, 0
				continue
			}
			iq1Levels(L[:], idx[:], besti1, besti2)
			if scale < 0 {
				for j := range L {
					L[j] = 2 - L[j]
				}
				scale, bestK = -scale, 3-bestK
			}
			scale = iq1Snap(tb, xb, weight[:], scale, L[:], index[:], func(k int) *[3]float32 { return iq1mShift(bestK, k) })
			qs[2*ib] = byte(index[0])
			qs[2*ib+1] = byte(index[1])
			qh[ib] = byte(index[0]>>8) | byte(index[1]>>8)<<4
			scales[ib], shifts[ib] = scale, bestK
			maxScale = maxf(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		var sw [4]uint16
		d := maxScale / 15
		id := 1 / d
		var sumqx, sumq2 float32
		for ib := 0; ib < qkK/bs; ib++ {
			l := int(clampInt(nearestInt(0.5*(float32(id*scales[ib])-1)), 0, 7))
			sw[ib/4] |= uint16(l) << (3 * (ib % 4))
			qh[ib] |= masks[shifts[ib]]
			xb := xbl[bs*ib : bs*(ib+1)]
			iqWeights(weight[:], xb, importance, qkK*ibl+bs*ib, sigma2)
			for k := 0; k < 2; k++ {
				xx := iq1mShift(shifts[ib], k)
				gi := int(qs[2*ib+k]) + (int(qh[ib])<<(8-4*k))&0x700
				for j, p := range tb.point(gi) {
					q := xx[(p-1)/2] * float32(2*l+1)
					sumqx += float32(weight[8*k+j] * q * xb[8*k+j])
					sumq2 += float32(weight[8*k+j] * q * q)
				}
			}
		}
		if sumq2 > 0 {
			d = sumqx / sumq2
		}
		s := fp32ToFP16(d * 1.1125)
		sw[0] |= (s & 0x000f) << 12
		sw[1] |= (s & 0x00f0) << 8
		sw[2] |= (s & 0x0f00) << 4
		sw[3] |= s & 0xf000
		for k, v := range sw {
			binary.LittleEndian.PutUint16(sc[2*k:], v)
		}
	}
}
