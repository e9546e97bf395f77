package quant

import (
	"bytes"
	"testing"
)

// FuzzDequantize feeds arbitrary bytes to every codec: Dequantize must not
// panic, must accept exactly the lengths that are whole rows and refuse the
// others, must decode the same bytes to the same bits twice, and quantizing
// what it decoded (NaNs and infinities included) must not panic either.
//
//	go test ./quant/ -run '^$' -fuzz FuzzDequantize -fuzztime 30s
func FuzzDequantize(f *testing.F) {
	f.Add(uint8(0), uint8(0), []byte{})
	f.Add(uint8(4), uint8(0), bytes.Repeat([]byte{0xff}, 144))
	f.Add(uint8(6), uint8(1), bytes.Repeat([]byte{0x7c, 0x00, 0x01}, 140))
	f.Add(uint8(10), uint8(0), bytes.Repeat([]byte{0xfe, 0x7f}, 33))
	f.Add(uint8(2), uint8(3), []byte("not a whole block"))
	types := Types()
	f.Fuzz(func(t *testing.T, typeIdx, blocks uint8, data []byte) {
		typ := types[int(typeIdx)%len(types)]
		rowLen := typ.BlockSize() * (1 + int(blocks%4))
		rowSize, err := typ.RowSize(rowLen)
		if err != nil {
			t.Fatalf("%s.RowSize(%d): %v", typ, rowLen, err)
		}
		nrows := len(data) / rowSize
		whole := len(data)%rowSize == 0
		dst := make([]float32, nrows*rowLen)
		err = Dequantize(typ, dst, data, rowLen)
		if whole != (err == nil) {
			t.Fatalf("%s: %d bytes, row size %d: error %v", typ, len(data), rowSize, err)
		}
		if err := Dequantize(typ, make([]float32, len(dst)+1), data, rowLen); err == nil {
			t.Fatalf("%s: a destination one float too long was accepted", typ)
		}
		if !whole {
			return
		}
		again := make([]float32, len(dst))
		if err := Dequantize(typ, again, data, rowLen); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(floatBytes(dst), floatBytes(again)) {
			t.Fatalf("%s: decoding is not deterministic", typ)
		}
		q := make([]byte, len(data))
		if err := refQuantize(typ, q, dst, rowLen); err != nil {
			t.Fatalf("%s: re-quantizing: %v", typ, err)
		}
	})
}
