package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/ohms-project/adaptq/quant"
)

// ActType is the form a linear layer's input takes before the dot
// products with a weight type: llama.cpp's vec_dot_type.
type ActType int

// The activation forms.
const (
	ActF32  ActType = iota // float32 as is (F32 weights)
	ActF16                 // rounded to F16 (F16 weights)
	ActBF16                // rounded to BF16 (BF16 weights)
	ActQ8_0                // 32-value blocks: fp16 scale, int8 values
	ActQ8_1                // Q8_0 plus fp16(d·Σq) per block
	ActQ8_K                // 256-value blocks: float32 scale, int8 values, sums per 16
)

// String names the form as ggml does.
func (a ActType) String() string {
	switch a {
	case ActF32:
		return "F32"
	case ActF16:
		return "F16"
	case ActBF16:
		return "BF16"
	case ActQ8_0:
		return "Q8_0"
	case ActQ8_1:
		return "Q8_1"
	case ActQ8_K:
		return "Q8_K"
	}
	return fmt.Sprintf("ActType(%d)", int(a))
}

// blockLen is the number of values of one activation block.
func (a ActType) blockLen() int {
	switch a {
	case ActQ8_0, ActQ8_1:
		return 32
	case ActQ8_K:
		return 256
	}
	return 1
}

// Acts holds T token rows of C values quantized to one ActType, as
// structure of arrays: token t's int8 values are Qs[t*C:(t+1)*C], its block
// scales D[t*C/B:(t+1)*C/B] (B the block length), for Q8_1 the block sums
// S likewise, for Q8_K the sums of every 16 values in Bsums[t*C/16:]. A
// zero Acts is ready for Quantize, which reuses its buffers.
type Acts struct {
	Type  ActType
	T, C  int
	D, S  []float32
	Qs    []int8
	Bsums []int16
}

// Quantize replaces a's contents with the T rows of x (row t is
// x[t*C:(t+1)*C]) in form typ; C must be a multiple of typ's block. Q8_0
// and Q8_1 are llama.cpp's AVX2 quantize_row_q8_0/q8_1 (d = amax/127
// rounded to fp16, q = round-half-even(x·127/amax)); Q8_K is
// quantize_row_q8_K_ref (the value of largest magnitude maps to -127·sign,
// d = 1/iscale in float32, q = min(127, round-half-even(iscale·x))).
func (a *Acts) Quantize(typ ActType, x []float32, T, C int) error {
	if len(x) < T*C {
		return fmt.Errorf("kernels: %s activations of %d tokens × %d values: x has %d values", typ, T, C, len(x))
	}
	if err := a.Reset(typ, T, C); err != nil {
		return err
	}
	for t := range T {
		a.QuantizeToken(t, x[t*C:(t+1)*C])
	}
	return nil
}

// Reset shapes a for T tokens of C values in form typ (C a multiple of the
// form's block), reusing its buffers; QuantizeToken then fills each token.
func (a *Acts) Reset(typ ActType, T, C int) error {
	B := typ.blockLen()
	if typ != ActQ8_0 && typ != ActQ8_1 && typ != ActQ8_K {
		return fmt.Errorf("kernels: %s is not an integer activation form", typ)
	}
	if T < 0 || C <= 0 || C%B != 0 {
		return fmt.Errorf("kernels: %s activations of %d tokens × %d values: the width is not a multiple of %d", typ, T, C, B)
	}
	a.Type, a.T, a.C = typ, T, C
	nb := T * C / B
	a.Qs = grow(a.Qs, T*C)
	a.D = grow(a.D, nb)
	if typ == ActQ8_1 {
		a.S = grow(a.S, nb)
	}
	if typ == ActQ8_K {
		a.Bsums = grow(a.Bsums, T*C/16)
	}
	return nil
}

// QuantizeToken quantizes token t's C values x (len(x) ≥ a.C) after
// Reset. Calls for distinct tokens may run concurrently.
func (a *Acts) QuantizeToken(t int, x []float32) {
	B := a.Type.blockLen()
	C := a.C
	for b := t * C / B; b < (t+1)*C/B; b++ {
		src := x[b*B-t*C : (b+1)*B-t*C]
		q := a.Qs[b*B : (b+1)*B]
		switch a.Type {
		case ActQ8_0, ActQ8_1:
			d, sum := quantizeQ8Block(q, src)
			a.D[b] = quant.HalfToFloat(quant.FloatToHalf(d))
			if a.Type == ActQ8_1 {
				a.S[b] = quant.HalfToFloat(quant.FloatToHalf(d * float32(sum)))
			}
		case ActQ8_K:
			a.D[b] = quantizeQ8KBlock(q, src, a.Bsums[b*16:(b+1)*16])
		}
	}
}

func grow[E any](s []E, n int) []E {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]E, n)
}

// quantizeQ8Block quantizes 32 values like llama.cpp's AVX2 Q8_0/Q8_1 row
// quantizer and returns d = amax/127 (float32, before fp16 rounding) and the
// sum of the quantized values.
func quantizeQ8Block(q []int8, x []float32) (d float32, sum int32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d = amax / 127
	var id float32
	if amax != 0 {
		id = 127 / amax
	}
	for i, v := range x {
		r := int32(math.RoundToEven(float64(v * id)))
		q[i] = int8(r)
		sum += r
	}
	return d, sum
}

// quantizeQ8KBlock quantizes 256 values like quantize_row_q8_K_ref and
// returns the block's scale; bsums receives the sums of each 16 values.
func quantizeQ8KBlock(q []int8, x []float32, bsums []int16) float32 {
	var amax, mx float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax == 0 {
		clear(q)
		clear(bsums)
		return 0
	}
	iscale := -127 / mx
	for i, v := range x {
		q[i] = int8(min(127, int32(math.RoundToEven(float64(iscale*v)))))
	}
	for j := range 16 {
		var s int16
		for _, v := range q[16*j : 16*j+16] {
			s += int16(v)
		}
		bsums[j] = s
	}
	return 1 / iscale
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// RoundF16 rounds every value of x to the nearest F16 (the activations of
// an F16 weight) in place: ggml's conversion, on AVX2 machines with F16C.
func RoundF16(x []float32) { roundF16(x, HasAVX2) }

func roundF16(x []float32, asm bool) {
	n8 := 0
	if asm {
		if n8 = len(x) &^ 7; n8 > 0 {
			roundHalf8(&x[0], n8)
		}
	}
	for i := n8; i < len(x); i++ {
		x[i] = quant.HalfToFloat(quant.FloatToHalf(x[i]))
	}
}

// HalfRow widens the little-endian IEEE halves in src (2·len(dst) bytes)
// to dst, exactly (F16 weight rows for the fused multiply-add kernels).
func HalfRow(dst []float32, src []byte) error {
	if len(src) != 2*len(dst) {
		return fmt.Errorf("kernels: %d bytes of F16 for %d values", len(src), len(dst))
	}
	halfRow(dst, src, HasAVX2)
	return nil
}

func halfRow(dst []float32, src []byte, asm bool) {
	n8 := 0
	if asm {
		if n8 = len(dst) &^ 7; n8 > 0 {
			halfToFloat8(&dst[0], (*uint16)(unsafe.Pointer(&src[0])), n8)
		}
	}
	for i := n8; i < len(dst); i++ {
		dst[i] = quant.HalfToFloat(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
}

// RoundBF16 rounds every value of x to the nearest BF16 in place.
func RoundBF16(x []float32) {
	for i, v := range x {
		x[i] = quant.BFloatToFloat(quant.FloatToBFloat(v))
	}
}
