package quant

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestTypeTable(t *testing.T) {
	tests := []struct {
		typ             Type
		id              uint32
		name            string
		block, typeSize int
	}{
		{F32, 0, "F32", 1, 4},
		{F16, 1, "F16", 1, 2},
		{Q4_0, 2, "Q4_0", 32, 18},
		{Q4_1, 3, "Q4_1", 32, 20},
		{Q5_0, 6, "Q5_0", 32, 22},
		{Q5_1, 7, "Q5_1", 32, 24},
		{Q8_0, 8, "Q8_0", 32, 34},
		{Q2_K, 10, "Q2_K", 256, 84},
		{Q3_K, 11, "Q3_K", 256, 110},
		{Q4_K, 12, "Q4_K", 256, 144},
		{Q5_K, 13, "Q5_K", 256, 176},
		{Q6_K, 14, "Q6_K", 256, 210},
		{BF16, 30, "BF16", 1, 2},
		{TQ1_0, 34, "TQ1_0", 256, 54},
		{TQ2_0, 35, "TQ2_0", 256, 66},
		{IQ2_XXS, 16, "IQ2_XXS", 256, 66},
		{IQ2_XS, 17, "IQ2_XS", 256, 74},
		{IQ3_XXS, 18, "IQ3_XXS", 256, 98},
		{IQ1_S, 19, "IQ1_S", 256, 50},
		{IQ3_S, 21, "IQ3_S", 256, 110},
		{IQ2_S, 22, "IQ2_S", 256, 82},
		{IQ1_M, 29, "IQ1_M", 256, 56},
		{IQ4_XS, 23, "IQ4_XS", 256, 136},
		{IQ4_NL, 20, "IQ4_NL", 32, 18},
	}
	if got := len(Types()); got != len(tests) {
		t.Errorf("Types() has %d entries, want %d", got, len(tests))
	}
	for _, tc := range tests {
		if uint32(tc.typ) != tc.id || tc.typ.String() != tc.name || tc.typ.BlockSize() != tc.block ||
			tc.typ.TypeSize() != tc.typeSize || !tc.typ.Valid() {
			t.Errorf("%s: id %d name %q block %d size %d valid %v; want %d %q %d %d",
				tc.name, uint32(tc.typ), tc.typ.String(), tc.typ.BlockSize(), tc.typ.TypeSize(), tc.typ.Valid(),
				tc.id, tc.name, tc.block, tc.typeSize)
		}
	}
	for _, bad := range []Type{4, 5, 9, 15, 31, 36, 1000} {
		if bad.Valid() || bad.BlockSize() != 0 || bad.TypeSize() != 0 || !strings.HasPrefix(bad.String(), "Type(") {
			t.Errorf("unsupported id %d: valid %v block %d size %d name %q", uint32(bad), bad.Valid(), bad.BlockSize(), bad.TypeSize(), bad)
		}
	}
}

func TestParseType(t *testing.T) {
	tests := []struct {
		in      string
		want    Type
		wantErr bool
	}{
		{"Q4_K", Q4_K, false},
		{"q4_k", Q4_K, false},
		{"q4_K", Q4_K, false},
		{"tq2_0", TQ2_0, false},
		{"TQ1_0", TQ1_0, false},
		{"bf16", BF16, false},
		{"F32", F32, false},
		{"q8_0", Q8_0, false},
		{"Q4_K_M", 0, true},
		{"", 0, true},
		{"q5_0", Q5_0, false},
		{"iq4_nl", IQ4_NL, false},
		{"q4_2", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseType(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseType(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "Q4_K") {
			t.Errorf("ParseType(%q) error should list the known types: %v", tc.in, err)
		}
	}
	for _, typ := range Types() {
		b, err := json.Marshal(map[string]Type{"t": typ})
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]Type
		if err := json.Unmarshal(b, &back); err != nil || back["t"] != typ {
			t.Errorf("%s: JSON round trip gave %v, %v (%s)", typ, back["t"], err, b)
		}
	}
	if _, err := Type(99).MarshalText(); err == nil {
		t.Error("MarshalText of an unsupported id should fail")
	}
}

func TestRowSize(t *testing.T) {
	tests := []struct {
		typ     Type
		n       int
		want    int
		wantErr bool
	}{
		{F32, 7, 28, false},
		{F16, 172, 344, false},
		{BF16, 1, 2, false},
		{Q8_0, 64, 68, false},
		{Q4_0, 512, 288, false},
		{Q4_0, 172, 0, true},
		{Q4_K, 512, 288, false},
		{Q4_K, 11008, 43 * 144, false},
		{Q4_K, 64, 0, true},
		{Q6_K, 256, 210, false},
		{TQ1_0, 4096, 16 * 54, false},
		{TQ2_0, 100, 0, true},
		{Q2_K, 0, 0, true},
		{Q8_0, -32, 0, true},
	}
	for _, tc := range tests {
		got, err := tc.typ.RowSize(tc.n)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s.RowSize(%d) = %d, %v; want %d, error %v", tc.typ, tc.n, got, err, tc.want, tc.wantErr)
			continue
		}
		if err == nil {
			continue
		}
		var rle *RowLengthError
		if !errors.As(err, &rle) || rle.Type != tc.typ || rle.RowLen != tc.n || rle.BlockSize != tc.typ.BlockSize() {
			t.Errorf("%s.RowSize(%d): error %v is not the expected *RowLengthError", tc.typ, tc.n, err)
		}
		msg := err.Error()
		for _, part := range []string{tc.typ.String(), itoa(tc.n), itoa(tc.typ.BlockSize())} {
			if !strings.Contains(msg, part) {
				t.Errorf("%s.RowSize(%d): message %q does not name %q", tc.typ, tc.n, msg, part)
			}
		}
	}
	if _, err := Type(77).RowSize(256); err == nil {
		t.Error("RowSize of an unsupported type should fail")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestFallbacks checks the ladder against llama.cpp's tensor_type_fallback
// (src/llama-quant.cpp): one fallback type, then F16.
func TestFallbacks(t *testing.T) {
	tests := []struct {
		typ    Type
		rowLen int
		ladder []Type
		fit    Type
	}{
		{Q4_K, 512, []Type{Q5_0, F16}, Q4_K},
		{Q4_K, 576, []Type{Q5_0, F16}, Q5_0}, // SmolLM2's hidden size
		{Q4_K, 896, []Type{Q5_0, F16}, Q5_0}, // Qwen2.5-0.5B's
		{Q4_K, 172, []Type{Q5_0, F16}, F16},
		{Q5_K, 96, []Type{Q5_1, F16}, Q5_1},
		{Q6_K, 64, []Type{Q8_0, F16}, Q8_0},
		{Q6_K, 172, []Type{Q8_0, F16}, F16},
		{Q2_K, 64, []Type{Q4_0, F16}, Q4_0},
		{Q3_K, 172, []Type{Q4_0, F16}, F16},
		{TQ1_0, 288, []Type{Q4_0, F16}, Q4_0},
		{TQ2_0, 256, []Type{Q4_0, F16}, TQ2_0},
		{IQ2_XXS, 576, []Type{IQ4_NL, F16}, IQ4_NL},
		{IQ1_M, 100, []Type{IQ4_NL, F16}, F16},
		{IQ3_S, 768, []Type{IQ4_NL, F16}, IQ3_S},
		{Q8_0, 172, []Type{F16}, F16},
		{Q4_0, 64, []Type{F16}, Q4_0},
		{Q4_1, 48, []Type{F16}, F16},
		{Q5_0, 96, []Type{F16}, Q5_0},
		{Q5_1, 100, []Type{F16}, F16},
		{IQ4_NL, 576, []Type{F16}, IQ4_NL},
		{F16, 3, nil, F16},
		{BF16, 3, nil, BF16},
		{F32, 3, nil, F32},
	}
	for _, tc := range tests {
		if got := Fallbacks(tc.typ); !slices.Equal(got, tc.ladder) {
			t.Errorf("Fallbacks(%s) = %v, want %v", tc.typ, got, tc.ladder)
		}
		got, err := FitType(tc.typ, tc.rowLen)
		if err != nil || got != tc.fit {
			t.Errorf("FitType(%s, %d) = %v, %v; want %v", tc.typ, tc.rowLen, got, err, tc.fit)
		}
	}
	// Every ladder of a block type shrinks the block and ends with F16; a
	// new 256-block type needs its llama.cpp fallback added to Fallbacks.
	for _, typ := range Types() {
		ladder := Fallbacks(typ)
		if typ.BlockSize() > 1 && (len(ladder) == 0 || ladder[len(ladder)-1] != F16) {
			t.Errorf("Fallbacks(%s) = %v: a block type's ladder must end with F16", typ, ladder)
		}
		for i, f := range ladder {
			if f.BlockSize() >= typ.BlockSize() || (i > 0 && f.BlockSize() >= ladder[i-1].BlockSize()) {
				t.Errorf("Fallbacks(%s) = %v: block sizes must shrink", typ, ladder)
			}
		}
	}
	if _, err := FitType(Q4_K, 0); err == nil {
		t.Error("FitType with row length 0 should fail")
	}
	if _, err := FitType(Type(5), 256); err == nil {
		t.Error("FitType of an unsupported type should fail")
	}
}

// TestLengthErrors checks that every wrong buffer length is refused.
func TestLengthErrors(t *testing.T) {
	for _, typ := range Types() {
		rowLen := 2 * max(typ.BlockSize(), 32)
		rowSize, err := typ.RowSize(rowLen)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name           string
			nFloat, nBytes int
			rowLen         int
			ok             bool
		}{
			{"exact", 3 * rowLen, 3 * rowSize, rowLen, true},
			{"empty", 0, 0, rowLen, true},
			{"bytes short", 3 * rowLen, 3*rowSize - 1, rowLen, false},
			{"bytes long", 3 * rowLen, 3*rowSize + 1, rowLen, false},
			{"partial row", 3*rowLen - 1, 3 * rowSize, rowLen, false},
			{"zero row length", rowLen, rowSize, 0, false},
			{"negative row length", rowLen, rowSize, -rowLen, false},
		}
		if typ.BlockSize() > 1 {
			tests = append(tests, struct {
				name           string
				nFloat, nBytes int
				rowLen         int
				ok             bool
			}{"row not block aligned", typ.BlockSize() + 1, typ.TypeSize(), typ.BlockSize() + 1, false})
		}
		for _, tc := range tests {
			errQ := refQuantize(typ, make([]byte, tc.nBytes), make([]float32, tc.nFloat), tc.rowLen)
			errD := Dequantize(typ, make([]float32, tc.nFloat), make([]byte, tc.nBytes), tc.rowLen)
			if (errQ == nil) != tc.ok || (errD == nil) != tc.ok {
				t.Errorf("%s %s: QuantizeRef error %v, Dequantize error %v; want ok=%v", typ, tc.name, errQ, errD, tc.ok)
			}
			if errQ != nil && !strings.Contains(errQ.Error(), typ.String()) {
				t.Errorf("%s %s: error %q does not name the type", typ, tc.name, errQ)
			}
		}
	}
	if err := QuantizeRef(Type(4), nil, nil, 32); err == nil {
		t.Error("QuantizeRef of a removed type id should fail")
	}
}

// TestRoundTrip is a sanity check that does not need the oracle: the
// relative RMS error of quantize+dequantize on N(0,1) data stays within
// bounds a little above what each format achieves.
func TestRoundTrip(t *testing.T) {
	bounds := map[Type]float64{
		F32: 0, F16: 5e-4, BF16: 3e-3, Q8_0: 0.01, Q6_K: 0.025, Q5_K: 0.05, Q4_K: 0.09,
		Q4_0: 0.11, Q4_1: 0.09, Q5_0: 0.05, Q5_1: 0.045, IQ4_NL: 0.09, Q3_K: 0.19, Q2_K: 0.36, TQ1_0: 0.85, TQ2_0: 0.85,
		IQ2_XXS: 0.36, IQ2_XS: 0.32, IQ2_S: 0.28, IQ3_XXS: 0.23, IQ3_S: 0.18, IQ1_S: 0.51, IQ1_M: 0.61, IQ4_XS: 0.09,
	}
	rng := rand.New(rand.NewPCG(11, 12))
	x := gaussianOutliers(rng, 64*512, 1, 0, 0)
	for _, typ := range Types() {
		rowSize, _ := typ.RowSize(512)
		q := make([]byte, 64*rowSize)
		if err := refQuantize(typ, q, x, 512); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(typ, y, q, 512); err != nil {
			t.Fatal(err)
		}
		var se, ss float64
		for i := range x {
			d := float64(x[i]) - float64(y[i])
			se += d * d
			ss += float64(x[i]) * float64(x[i])
		}
		if rel := math.Sqrt(se / ss); rel > bounds[typ] {
			t.Errorf("%s: relative RMS error %.4f above %.4f", typ, rel, bounds[typ])
		}
		// All-zero rows decode to zeros.
		zero := make([]float32, 512)
		if err := refQuantize(typ, q[:rowSize], zero, 512); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(typ, y[:512], q[:rowSize], 512); err != nil {
			t.Fatal(err)
		}
		for i, v := range y[:512] {
			if v != 0 {
				t.Errorf("%s: zero row decodes to %g at %d", typ, v, i)
				break
			}
		}
	}
}

// refFP16 is an independent fp32→fp16 conversion through float64 rounding
// (round to nearest even), for checking fp32ToFP16 without the oracle.
func refFP16(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	a := math.Abs(float64(f))
	switch {
	case math.IsNaN(float64(f)):
		return sign | 0x7E00
	case a >= 65520: // rounds to infinity
		return sign | 0x7C00
	case a < 0x1p-14: // subnormal half: multiples of 2^-24
		return sign | uint16(math.RoundToEven(a*0x1p24))
	}
	e := math.Floor(math.Log2(a))
	if math.Ldexp(1, int(e)) > a {
		e--
	} else if math.Ldexp(1, int(e)+1) <= a {
		e++
	}
	m := math.RoundToEven(math.Ldexp(a, 10-int(e))) // in [1024, 2048]
	return sign | (uint16(e+15)<<10 + uint16(m-1024))
}

func TestHalfConversions(t *testing.T) {
	for h := range 1 << 16 {
		f := fp16ToFP32(uint16(h))
		if math.IsNaN(float64(f)) {
			if fp32ToFP16(f) != uint16(h)&0x8000|0x7E00 {
				t.Fatalf("NaN %#04x converts back to %#04x", h, fp32ToFP16(f))
			}
			continue
		}
		if back := fp32ToFP16(f); back != uint16(h) {
			t.Fatalf("fp16 %#04x → %g → %#04x", h, f, back)
		}
		if got := bf16ToFP32(uint16(h)); math.Float32bits(got) != uint32(h)<<16 {
			t.Fatalf("bf16 %#04x widened to %#08x", h, math.Float32bits(got))
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1 << 20 {
		f := math.Float32frombits(rng.Uint32())
		if got, want := fp32ToFP16(f), refFP16(f); got != want {
			t.Fatalf("fp32ToFP16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f817fff, 0x3f81},
		{0x7f800000, 0x7f80},
		{0x7f800001, 0x7fc0}, // signalling NaN is quieted
		{0xff812345, 0xffc1},
	} {
		if got := fp32ToBF16(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("fp32ToBF16(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

func TestNearestInt(t *testing.T) {
	tests := []struct {
		in   float32
		want int32
	}{
		{0, 0}, {0.4999, 0}, {0.5, 0}, {1.5, 2}, {2.5, 2}, {-0.5, 0}, {-1.5, -2},
		{-2.5, -2}, {3.7, 4}, {-3.7, -4}, {4194303, 4194303}, {-4194303, -4194303},
	}
	for _, tc := range tests {
		if got := nearestInt(tc.in); got != tc.want {
			t.Errorf("nearestInt(%g) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want float32 }{{0.5, 1}, {-0.5, -1}, {1.5, 2}, {2.5, 3}, {-2.5, -3}, {0.49999997, 0}} {
		if got := roundf(tc.in); got != tc.want {
			t.Errorf("roundf(%g) = %g, want %g", tc.in, got, tc.want)
		}
	}
}
