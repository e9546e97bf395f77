package quant

// IQ4_XS: IQ4_NL's non-uniform 16-level grid (iq4nlGrid) on 256-element
// super-blocks of 8 sub-blocks of 32, each with a 6-bit signed scale under
// one fp16 scale (4.25 bits per weight).
//
//	IQ4_XS block (136 bytes): d fp16 | scales_h uint16 (8 × 2 high bits)
//	                          | scales_l [4] (8 × 4 low bits) | qs [128]
//	x = d·(ls − 32)·grid[q], ls the 6-bit scale, the nibbles of each
//	sub-block's 16 bytes laid out as in IQ4_NL.

const blockIQ4XS = 136

// iq4xsScaleCode is sub-block ib's 6-bit scale code ls (the scale is ls − 32).
func iq4xsScaleCode(b []byte, ib int) int {
	return int(b[4+ib/2]>>(4*(ib%2))&0xf) | int(le16(b[2:])>>(2*ib)&3)<<4
}

// setIQ4XSScaleCode stores sub-block ib's scale code.
func setIQ4XSScaleCode(b []byte, ib, ls int) {
	b[4+ib/2] = b[4+ib/2]&^(0xf<<(4*(ib%2))) | byte(ls&0xf)<<(4*(ib%2))
	put16(b[2:], le16(b[2:])&^(3<<(2*ib))|uint16(ls>>4&3)<<(2*ib))
}

func dequantizeRowIQ4XS(dst []float32, src []byte) {
	for i := 0; i < len(src)/blockIQ4XS; i++ {
		b := src[i*blockIQ4XS : (i+1)*blockIQ4XS]
		d := getF16(b)
		y := dst[i*qkK : (i+1)*qkK]
		for ib := 0; ib < 8; ib++ {
			dl := d * float32(iq4xsScaleCode(b, ib)-32)
			qs := b[8+16*ib : 8+16*ib+16]
			o := y[32*ib : 32*ib+32]
			for j := 0; j < 16; j++ {
				o[j] = dl * float32(iq4nlGrid[qs[j]&0xf])
				o[j+16] = dl * float32(iq4nlGrid[qs[j]>>4])
			}
		}
	}
}

// quantizeRowIQ4XS is ggml's quantize_iq4_xs (quantize_row_iq4_nl_impl on
// super-blocks of 256 with ntry = 7): IQ4_NL's scale search per sub-block
// of 32 (weights importance·√(σ² + x²) with σ² = 2·Σx²/256, or x² without
// an importance), the sub-block scales coded as nearest_int(scale/d) in
// [−32, 31] under d = −(the scale of largest magnitude)/32, and each value
// indexed at its sub-block's coded scale.
func quantizeRowIQ4XS(dst []byte, x, importance []float32) {
	var (
		scales [8]float32
		weight [32]float32
	)
	g := &iq4nlGrid
	for ibl := 0; ibl < len(x)/qkK; ibl++ {
		y := dst[ibl*blockIQ4XS : (ibl+1)*blockIQ4XS]
		xbl := x[qkK*ibl : qkK*(ibl+1)]
		sigma2 := float32(sumSquares(xbl) * (2.0 / qkK))
		clear(y[8:])
		putF16(y, 0)
		var maxScale, amaxScale float32
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			iqWeights(weight[:], xb, importance, qkK*ibl+32*ib, sigma2)
			d := iq4nlScale(xb, weight[:], 7)
			scales[ib] = d
			if ad := abs32(d); ad > amaxScale {
				amaxScale, maxScale = ad, d
			}
		}
		put16(y[2:], 0)
		d := -maxScale / 32
		putF16(y, d)
		var id float32
		if d != 0 {
			id = 1 / d
		}
		for ib := 0; ib < 8; ib++ {
			l := clampInt(nearestInt(id*scales[ib]), -32, 31)
			dl := d * float32(l)
			var idl float32
			if dl != 0 {
				idl = 1 / dl
			}
			xb := xbl[32*ib : 32*ib+32]
			qs := y[8+16*ib : 8+16*ib+16]
			for j := 0; j < 16; j++ {
				qs[j] = bestIndexInt8(g, float32(idl*xb[j])) | bestIndexInt8(g, float32(idl*xb[j+16]))<<4
			}
			setIQ4XSScaleCode(y, ib, int(l+32))
		}
	}
}

// quantizeRowIQ4XSRef is ggml_quantize_chunk for IQ4_XS without an
// importance matrix.
func quantizeRowIQ4XSRef(dst []byte, src []float32) { quantizeRowIQ4XS(dst, src, nil) }
