package quant

import "encoding/binary"

// Reference quantizers of IQ3_XXS and IQ3_S: ggml's
// quantize_row_iq3_xxs_impl (grid of 256) and quantize_row_iq3_s_impl (grid
// of 512), the IQ2 search on groups of 4 values with 8 levels, over 32-value
// sub-blocks whose scales are coded in 4 bits under max/31 times a fudge
// factor (1.0125 for IQ3_XXS, 1.033 for IQ3_S).

// iq3KMax is the number of levels the IQ3 searches round to.
const iq3KMax = 8

// iq3Group32 searches one sub-block of 32 values for IQ3_XXS (xxs true: 7-bit
// parity sign indices, 31 trials) or IQ3_S (8 explicit sign bits per 8, 19
// trials, every group re-snapped at the end). It returns the scale and
// whether the sub-block was quantized (false: skipped as all zero), with
// the levels in L and the signs in signs.
func iq3Group32(tb *iqTable, xb, w []float32, xxs bool, L *[32]int8, signs *[4]uint8) (float32, bool) {
	var xval, waux [32]float32
	var laux [32]int8
	var onGrid, onAux [8]bool
	for i := range waux {
		waux[i] = sqrtf(w[i])
	}
	for k := 0; k < 4; k++ {
		s := foldSigns(xval[8*k:], xb[8*k:], w[8*k:], xxs)
		if xxs {
			s &= 127
		}
		signs[k] = s
	}
	max := maxOf(xval[:])
	*L = [32]int8{}
	ntrial := 9
	if xxs {
		if max < groupMaxEpsIQ3XXS {
			return 0, false
		}
		ntrial = 15
		onGrid = [8]bool{true, true, true, true, true, true, true, true}
	} else if max == 0 {
		return 0, false
	}
	scale := max / (2*iq3KMax - 1)
	scale = iqTrials(tb, xval[:], w, waux[:], max, ntrial, 0.2, iq3KMax, 3, scale, L[:], laux[:], onGrid[:], onAux[:])
	offGrid := false
	for _, on := range onGrid {
		offGrid = offGrid || !on
	}
	if offGrid && scale > 0 {
		only := onGrid[:]
		if !xxs {
			only = nil // IQ3_S re-snaps every group
		}
		scale = iqRefit(tb, xval[:], w, waux[:], scale, iq3KMax, 3, L[:], only)
	}
	if scale < 0 {
		scale = -scale
		flipSigns(signs[:], xxs)
	}
	return scale, true
}

func quantizeRowIQ3XXS(dst []byte, x, importance []float32) {
	tb := iq3xxsTable()
	var (
		scales [8]float32
		weight [32]float32
		L      [32]int8
		signs  [4]uint8
		ss     [8]uint32
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ3XXS : (ibl+1)*blockIQ3XXS]
		putF16(y, 0)
		q3 := y[2:66]
		clear(y[2:])
		ss = [8]uint32{}
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(2 * sumSquares(xbl) / qkK)
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			iqWeights(weight[:], xb, importance, qkK*ibl+32*ib, sigma2)
			scale, ok := iq3Group32(tb, xb, weight[:], true, &L, &signs)
			scales[ib] = scale
			if !ok {
				continue
			}
			for k := 0; k < 8; k++ {
				q3[8*ib+k] = byte(gridIndexOr0(tb, L[4*k:4*k+4], 3))
			}
			ss[ib] = uint32(signs[0]) | uint32(signs[1])<<7 | uint32(signs[2])<<14 | uint32(signs[3])<<21
			maxScale = maxf(maxScale, scale)
		}
		if maxScale == 0 {
			clear(y[2:])
			continue
		}
		d := maxScale / 31
		putF16(y, d*1.0125)
		id := 1 / d
		for ib := 0; ib < 8; ib++ {
			ss[ib] |= uint32(iqScaleNibble(id, scales[ib])) << 28
			binary.LittleEndian.PutUint32(y[66+4*ib:], ss[ib])
		}
	}
}

func quantizeRowIQ3S(dst []byte, x, importance []float32) {
	tb := iq3sTable()
	var (
		scales [8]float32
		weight [32]float32
		L      [32]int8
		signs  [4]uint8
	)
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ3S : (ibl+1)*blockIQ3S]
		clear(y)
		qs, qh, sgn, sc := y[2:66], y[66:74], y[74:106], y[106:110]
		var maxScale float32
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(2 * sumSquares(xbl) / qkK)
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			iqWeights(weight[:], xb, importance, qkK*ibl+32*ib, sigma2)
			scale, ok := iq3Group32(tb, xb, weight[:], false, &L, &signs)
			scales[ib] = scale
			if !ok {
				continue
			}
			for k := 0; k < 8; k++ {
				gi := gridIndexOr0(tb, L[4*k:4*k+4], 3)
				qs[8*ib+k] = byte(gi)
				qh[ib] |= byte(gi>>8) << k
			}
			copy(sgn[4*ib:], signs[:])
			maxScale = maxf(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		putF16(y, d*1.033)
		id := 1 / d
		for ib := 0; ib < 8; ib += 2 {
			sc[ib/2] = iqScaleNibble(id, scales[ib]) | iqScaleNibble(id, scales[ib+1])<<4
		}
	}
}
