package quant

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// iqTypes are the i-quants this package has.
var iqTypes = []Type{IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M}

// TestOracleIQDequantizeSpecialScales decodes i-quant blocks whose fp16
// scale is NaN, ±Inf, subnormal or ±0 (random content otherwise) with both
// implementations: NaN signs must match too.
func TestOracleIQDequantizeSpecialScales(t *testing.T) {
	o := startOracle(t)
	rng := rand.New(rand.NewPCG(77, 1))
	scales := []uint16{0x7c00, 0xfc00, 0x7c01, 0xfc01, 0x7e00, 0xfe00, 0x7fff, 0xffff, 0x0001, 0x8001, 0x0000, 0x8000, 0x3c00, 0x7bff}
	for _, typ := range iqTypes {
		ts := typ.TypeSize()
		nb := 8 * len(scales)
		src := make([]byte, nb*ts)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		for b := range nb {
			h := scales[b%len(scales)]
			blk := src[b*ts : (b+1)*ts]
			if typ == IQ1_M {
				// The fp16 scale sits in the top nibbles of the four scale words.
				sc := blk[48:56]
				for k := range 4 {
					w := binary.LittleEndian.Uint16(sc[2*k:])&0x0fff | (h>>(4*k)&0xf)<<12
					binary.LittleEndian.PutUint16(sc[2*k:], w)
				}
				continue
			}
			binary.LittleEndian.PutUint16(blk, h)
		}
		got := make([]float32, nb*qkK)
		if err := Dequantize(typ, got, src, qkK); err != nil {
			t.Fatal(err)
		}
		compareFloats(t, typ.String()+" special scales", got, o.dequantize(t, typ, src, nb, qkK))
	}
}
