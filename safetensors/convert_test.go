package safetensors_test

import (
	"math"
	"testing"

	"github.com/ohms-project/adaptq/safetensors"
)

func TestHalfConversions(t *testing.T) {
	// Every half value converts exactly and back.
	for h := 0; h < 1<<16; h++ {
		f := safetensors.HalfToFloat(uint16(h))
		if f != f {
			continue
		}
		if back := safetensors.FloatToHalf(f); back != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, back)
		}
	}
	for _, tc := range []struct {
		f float32
		h uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65520, 0x7c00}, {1e-8, 0}, {5.960464477539063e-08, 1},
		{2.9802322387695312e-08, 0},     // exactly half the smallest subnormal: ties to even (0)
		{float32(1 + 1.0/2048), 0x3c00}, // tie, rounds to even
		{float32(1 + 3.0/2048), 0x3c02}, // tie, rounds up to even
		{float32(math.Inf(-1)), 0xfc00},
	} {
		if got := safetensors.FloatToHalf(tc.f); got != tc.h {
			t.Errorf("FloatToHalf(%g) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	if safetensors.FloatToBF16(1.00390625) != 0x3f80 || safetensors.FloatToBF16(1.01171875) != 0x3f82 {
		t.Error("bf16 ties to even")
	}
	if b := safetensors.FloatToBF16(float32(math.NaN())); b&0x7f80 != 0x7f80 || b&0x7f == 0 {
		t.Errorf("bf16 NaN %#04x", b)
	}
	// Bulk conversions agree with the scalar ones, aligned or not.
	raw := make([]byte, 2*1001+1)
	for i := range raw {
		raw[i] = byte(i*7 + 3)
	}
	for _, off := range []int{0, 1} {
		src := raw[off : off+2000]
		a, b := make([]float32, 1000), make([]float32, 1000)
		safetensors.BF16ToF32(a, src)
		safetensors.F16ToF32(b, src)
		for i := range a {
			u := uint16(src[2*i]) | uint16(src[2*i+1])<<8
			if math.Float32bits(a[i]) != math.Float32bits(safetensors.BF16ToFloat(u)) || math.Float32bits(b[i]) != math.Float32bits(safetensors.HalfToFloat(u)) {
				t.Fatalf("offset %d element %d", off, i)
			}
		}
	}
}
