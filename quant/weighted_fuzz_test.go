package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// FuzzQuantizeWeighted feeds arbitrary float32 rows (NaN, ±Inf, subnormals
// and huge values included) and an importance derived from the input to
// every importance-weighted reference quantizer and to Quantize: neither
// may panic, both must be deterministic, and on rows whose values and
// squares are finite Quantize must not be worse than QuantizeRefWeighted in
// the weighted error.
//
//	go test ./quant/ -run '^$' -fuzz FuzzQuantizeWeighted -fuzztime 30s
func FuzzQuantizeWeighted(f *testing.F) {
	f.Add(uint8(0), uint16(0), []byte{})
	f.Add(uint8(4), uint16(7), bytes.Repeat([]byte{0x00, 0x00, 0x80, 0x3f}, 256))
	f.Add(uint8(9), uint16(3), bytes.Repeat([]byte{0x01, 0x00, 0xc0, 0x7f, 0x00, 0x00, 0x80, 0x7f}, 128))
	f.Fuzz(func(t *testing.T, typeIdx uint8, impSeed uint16, data []byte) {
		typ := weightedTypes[int(typeIdx)%len(weightedTypes)]
		rowLen := typ.BlockSize() * (1 + int(impSeed%3))
		n := len(data) / 4 / rowLen * rowLen
		if n == 0 {
			return
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		imp := make([]float32, rowLen)
		for c := range imp {
			// finite, non-negative, some zero: |x| of a shifted element, capped
			v := abs32(x[(c*7+int(impSeed))%n])
			if !(v < 1e6) {
				v = 0
			}
			imp[c] = v
		}
		rs, _ := typ.RowSize(rowLen)
		ref, again, opt := make([]byte, n/rowLen*rs), make([]byte, n/rowLen*rs), make([]byte, n/rowLen*rs)
		if err := QuantizeRefWeighted(typ, ref, x, rowLen, imp); err != nil {
			t.Fatal(err)
		}
		if err := QuantizeRefWeighted(typ, again, x, rowLen, imp); err != nil || !bytes.Equal(ref, again) {
			t.Fatalf("%s: QuantizeRefWeighted is not deterministic (%v)", typ, err)
		}
		if err := Quantize(typ, opt, x, rowLen, imp); err != nil {
			t.Fatal(err)
		}
		for _, v := range x {
			if !(abs32(v) < 1e18) {
				return // non-finite or squares that overflow: only no-panic is asked
			}
		}
		yr, yo := make([]float32, n), make([]float32, n)
		if err := Dequantize(typ, yr, ref, rowLen); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(typ, yo, opt, rowLen); err != nil {
			t.Fatal(err)
		}
		bs := typ.BlockSize()
		for b := 0; b < n/bs; b++ {
			lo, hi := b*bs, (b+1)*bs
			c := lo % rowLen
			er := weightedSE(yr[lo:hi], x[lo:hi], imp[c:c+bs])
			eo := weightedSE(yo[lo:hi], x[lo:hi], imp[c:c+bs])
			if eo > er*(1+1e-9) && !math.IsInf(er, 0) && !math.IsNaN(er) {
				t.Fatalf("%s block %d: Quantize error %g above QuantizeRefWeighted's %g", typ, b, eo, er)
			}
		}
	})
}
