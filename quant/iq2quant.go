package quant

import "encoding/binary"

// Reference quantizers of IQ2_XXS, IQ2_XS and IQ2_S: ggml's
// quantize_row_iq2_xxs_impl, quantize_row_iq2_xs_impl and
// quantize_row_iq2_s_impl. Each group of 8 values is folded to magnitudes
// (the signs stored apart), a search over trial scales snaps the groups to
// the grid (the nearest grid point when the rounded levels are on it, else
// the best of the key's neighbours), the best trial's least-squares scale
// becomes the group scale, and the group scales are coded in 4 bits under
// the fp16 super-block scale max/31 (times a fudge factor for IQ2_S).

// iq2KMax is the number of levels the IQ2 searches round to (kMaxQ).
const iq2KMax = 3

// iqSnapAll snaps every group of 8 (IQ2) or 4 (IQ3) values of xval at the
// inverse scale id, writing the levels to L and the on-grid flags to onGrid
// (nil to skip them).
func iqSnapAll(tb *iqTable, xval, w, waux []float32, id float32, kmax int32, bitsPer int, L []int8, onGrid []bool) {
	scale := 1 / id
	dim := tb.dim
	for k := 0; k < len(xval)/dim; k++ {
		_, on := iqSnap(tb, xval[dim*k:dim*(k+1)], waux[dim*k:dim*(k+1)], id, scale, kmax, bitsPer, L[dim*k:dim*(k+1)])
		if onGrid != nil {
			onGrid[k] = on
		}
	}
}

// iqTrials is the trial-scale search shared by the IQ2 and IQ3 quantizers:
// for is in [−n, n], the inverse scale (2·kmax−1 + is·step)/ref snaps every
// group; the trial with the largest (Σ w·x·q)²/Σ w·q² sets scale to its
// least-squares value and its levels to L (and its on-grid flags). scale
// keeps its start value when no trial has Σ w·q² > 0.
func iqTrials(tb *iqTable, xval, w, waux []float32, ref float32, n int, step float32, kmax int32, bitsPer int,
	scale float32, L, laux []int8, onGrid, onAux []bool) float32 {
	var best float32
	for is := -n; is <= n; is++ {
		id := (float32(2*kmax-1) + float32(float32(is)*step)) / ref
		iqSnapAll(tb, xval, w, waux, id, kmax, bitsPer, laux, onAux)
		sumqx, sumq2 := oddSums(xval, w, laux)
		if sumq2 > 0 && sumqx*sumqx > best*sumq2 {
			scale = sumqx / sumq2
			best = scale * sumqx
			copy(L, laux)
			copy(onGrid, onAux)
		}
	}
	return scale
}

// iqRefit re-snaps, at the final scale, the groups that are off the grid
// (all groups when onGrid is nil), sets their levels from the grid point
// chosen, and returns the least-squares scale of the result (scale itself
// when Σ w·q² is 0).
func iqRefit(tb *iqTable, xval, w, waux []float32, scale float32, kmax int32, bitsPer int, L []int8, onGrid []bool) float32 {
	id := 1 / scale
	dim := tb.dim
	for k := 0; k < len(xval)/dim; k++ {
		if onGrid != nil && onGrid[k] {
			continue
		}
		g := L[dim*k : dim*(k+1)]
		if gi, _ := iqSnap(tb, xval[dim*k:dim*(k+1)], waux[dim*k:dim*(k+1)], id, scale, kmax, bitsPer, g); gi >= 0 {
			iqSetLevels(tb, gi, g)
		}
	}
	sumqx, sumq2 := oddSums(xval, w, L)
	if sumq2 > 0 {
		return sumqx / sumq2
	}
	return scale
}

// iqScaleNibble is the 4-bit code of a group scale s under the inverse
// super-block scale id: nearest_int(0.5·(id·s − 1)) in [0, 15].
func iqScaleNibble(id, s float32) uint8 {
	return uint8(clampInt(nearestInt(0.5*(float32(id*s)-1)), 0, 15))
}

// gridIndexOr0 is the grid index of L, or 0 where ggml would abort (levels
// off the grid, which only NaN input produces).
func gridIndexOr0(tb *iqTable, L []int8, bitsPer int) int {
	return max(iqGridIndex(tb, L, bitsPer), 0)
}

func quantizeRowIQ2XXS(dst []byte, x, importance []float32) {
	tb := iq2xxsTable()
	var (
		scales       [8]float32
		weight, xval [32]float32
		waux         [32]float32
		L, laux      [32]int8
		lqp          [32]uint8
		signs        [4]uint8
		q2           [16]uint32
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ2XXS : (ibl+1)*blockIQ2XXS]
		putF16(y, 0)
		q2 = [16]uint32{}
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(sumSquares(xbl) / qkK)
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			iqWeights(weight[:], xb, importance, qkK*ibl+32*ib, sigma2)
			for i := range waux {
				waux[i] = sqrtf(weight[i])
			}
			for k := 0; k < 4; k++ {
				signs[k] = foldSigns(xval[8*k:], xb[8*k:], weight[8*k:], true) & 127
			}
			max := maxOf(xval[:])
			if max < groupMaxEps {
				scales[ib] = 0
				continue
			}
			scale := makeQpQuants(iq2KMax+1, xval[:], lqp[:], weight[:])
			for i := range L {
				L[i] = int8(lqp[i])
			}
			effMax := scale * iq2KMax
			if effMax <= 0 {
				scales[ib] = 0
				continue
			}
			scale = iqTrials(tb, xval[:], weight[:], waux[:], effMax, 6, 0.1, iq2KMax, 2, scale, L[:], laux[:], nil, nil)
			if scale > 0 {
				scale = iqRefit(tb, xval[:], weight[:], waux[:], scale, iq2KMax, 2, L[:], nil)
			}
			if scale < 0 {
				scale = -scale
				flipSigns(signs[:], true)
			}
			for k := 0; k < 4; k++ {
				gi := gridIndexOr0(tb, L[8*k:8*k+8], 2)
				q2[2*ib] |= uint32(gi) << (8 * k)
				q2[2*ib+1] |= uint32(signs[k]) << (7 * k)
			}
			scales[ib] = scale
			maxScale = maxf(maxScale, scale)
		}
		qs := y[2:]
		if maxScale == 0 {
			clear(qs)
			continue
		}
		d := maxScale / 31
		putF16(y, d)
		id := 1 / d
		for ib := 0; ib < 8; ib++ {
			q2[2*ib+1] |= uint32(iqScaleNibble(id, scales[ib])) << 28
		}
		for i, v := range q2 {
			binary.LittleEndian.PutUint32(qs[4*i:], v)
		}
	}
}

// iq2Group16 is the search shared by IQ2_XS and IQ2_S for one group of 16
// values under the weights w: it returns the group scale, with the levels
// in L and the sign bits in signs (7-bit indices for IQ2_XS, xs true; 8
// explicit bits for IQ2_S), and ok false for a group ggml skips as all
// zero.
func iq2Group16(tb *iqTable, xb, w []float32, xs bool, L *[16]int8, signs *[2]uint8) (scale float32, ok bool) {
	var xval, waux [16]float32
	var laux [16]int8
	var onGrid, onAux [2]bool
	for i := range waux {
		waux[i] = sqrtf(w[i])
	}
	for k := 0; k < 2; k++ {
		s := foldSigns(xval[8*k:], xb[8*k:], w[8*k:], xs)
		if xs {
			s &= 127
		}
		signs[k] = s
	}
	max := maxOf(xval[:])
	*L = [16]int8{}
	eps := groupMaxEps
	if !xs {
		eps = groupMaxEpsIQ2S
	}
	if max < eps {
		return 0, false
	}
	scale = max / (2*iq2KMax - 1)
	onGrid = [2]bool{true, true}
	scale = iqTrials(tb, xval[:], w, waux[:], max, 9, 0.1, iq2KMax, 2, scale, L[:], laux[:], onGrid[:], onAux[:])
	if (!onGrid[0] || !onGrid[1]) && scale > 0 {
		// Off-grid groups are re-snapped at the best scale; their levels
		// stay the rounded ones when those land on the grid.
		id := 1 / scale
		for k := 0; k < 2; k++ {
			if !onGrid[k] {
				iqSnap(tb, xval[8*k:8*k+8], waux[8*k:8*k+8], id, scale, iq2KMax, 2, L[8*k:8*k+8])
			}
		}
		if sumqx, sumq2 := oddSums(xval[:], w, L[:]); sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	if scale < 0 {
		scale = -scale
		flipSigns(signs[:], xs)
	}
	return scale, true
}

func quantizeRowIQ2XS(dst []byte, x, importance []float32) {
	tb := iq2xsTable()
	var (
		scales [16]float32
		weight [16]float32
		L      [16]int8
		signs  [2]uint8
		q2     [32]uint16
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ2XS : (ibl+1)*blockIQ2XS]
		putF16(y, 0)
		q2 = [32]uint16{}
		sc := y[2+64 : 2+64+8]
		clear(sc)
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(sumSquares(xbl) / qkK)
		for ib := 0; ib < 16; ib++ {
			xb := xbl[16*ib : 16*ib+16]
			iqWeights(weight[:], xb, importance, qkK*ibl+16*ib, sigma2)
			scale, ok := iq2Group16(tb, xb, weight[:], true, &L, &signs)
			scales[ib] = scale
			if !ok {
				continue
			}
			for k := 0; k < 2; k++ {
				q2[2*ib+k] = uint16(gridIndexOr0(tb, L[8*k:8*k+8], 2)) | uint16(signs[k])<<9
			}
			maxScale = maxf(maxScale, scale)
		}
		if maxScale == 0 {
			clear(y[2 : 2+64])
			continue
		}
		d := maxScale / 31
		putF16(y, d)
		id := 1 / d
		for ib := 0; ib < 16; ib++ {
			sc[ib/2] |= iqScaleNibble(id, scales[ib]) << (4 * (ib % 2))
		}
		for i, v := range q2 {
			binary.LittleEndian.PutUint16(y[2+2*i:], v)
		}
	}
}

func quantizeRowIQ2S(dst []byte, x, importance []float32) {
	tb := iq2sTable()
	var (
		scales [16]float32
		weight [16]float32
		L      [16]int8
		signs  [2]uint8
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ2S : (ibl+1)*blockIQ2S]
		clear(y)
		qs, sgn, qh, sc := y[2:34], y[34:66], y[66:74], y[74:82]
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(2 * sumSquares(xbl) / qkK)
		for ib := 0; ib < 16; ib++ {
			xb := xbl[16*ib : 16*ib+16]
			if importance != nil {
				iqWeights(weight[:], xb, importance, qkK*ibl+16*ib, sigma2)
			} else {
				for i, v := range xb {
					weight[i] = float32(0.25*sigma2) + float32(v*v)
				}
			}
			scale, ok := iq2Group16(tb, xb, weight[:], false, &L, &signs)
			scales[ib] = scale
			if !ok {
				continue
			}
			for k := 0; k < 2; k++ {
				gi := gridIndexOr0(tb, L[8*k:8*k+8], 2)
				i8 := 2*ib + k
				qs[i8] = byte(gi)
				qh[i8/4] |= byte(gi>>8) << (2 * (i8 % 4))
				sgn[i8] = signs[k]
			}
			maxScale = maxf(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		putF16(y, d*0.9875)
		id := 1 / d
		for ib := 0; ib < 16; ib++ {
			sc[ib/2] |= iqScaleNibble(id, scales[ib]) << (4 * (ib % 2))
		}
	}
}
