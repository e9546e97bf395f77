package quant

import (
	"fmt"
	"strings"
)

// Type is a ggml tensor type id, as written in GGUF tensor infos.
type Type uint32

// The supported ggml types, with ggml's ids (enum ggml_type in ggml.h).
const (
	F32   Type = 0  // 32-bit IEEE float, stored as is
	F16   Type = 1  // 16-bit IEEE half float
	Q4_0  Type = 2  // 32-element blocks: fp16 scale, 4-bit quants
	Q4_1  Type = 3  // 32-element blocks: fp16 scale and min, 4-bit quants
	Q5_0  Type = 6  // 32-element blocks: fp16 scale, 5-bit quants
	Q5_1  Type = 7  // 32-element blocks: fp16 scale and min, 5-bit quants
	Q8_0  Type = 8  // 32-element blocks: fp16 scale, 8-bit quants
	Q2_K  Type = 10 // 256-element super-blocks, 2-bit quants with 4-bit scales and mins
	Q3_K  Type = 11 // 256-element super-blocks, 3-bit quants with 6-bit scales
	Q4_K  Type = 12 // 256-element super-blocks, 4-bit quants with 6-bit scales and mins
	Q5_K  Type = 13 // 256-element super-blocks, 5-bit quants with 6-bit scales and mins
	Q6_K  Type = 14 // 256-element super-blocks, 6-bit quants with 8-bit scales
	BF16  Type = 30 // bfloat16
	TQ1_0 Type = 34 // 256-element ternary blocks, 1.6875 bits per weight
	TQ2_0 Type = 35 // 256-element ternary blocks, 2.0625 bits per weight

	// The i-quants (iq*.go): 256-element super-blocks whose groups of 4 or
	// 8 values are indices into fixed codebook grids.
	IQ2_XXS Type = 16 // 2.0625 bpw: 8-value points of a 256-point grid, parity-completed signs
	IQ2_XS  Type = 17 // 2.3125 bpw: 8-value points of a 512-point grid, 4-bit scales per 16
	IQ3_XXS Type = 18 // 3.0625 bpw: 4-value points of a 256-point grid, parity-completed signs
	IQ1_S   Type = 19 // 1.5625 bpw: 8 ternary values per point of a 2048-point grid, shift ±1/8
	IQ3_S   Type = 21 // 3.4375 bpw: 4-value points of a 512-point grid, explicit signs
	IQ2_S   Type = 22 // 2.5625 bpw: 8-value points of a 1024-point grid, explicit signs
	IQ1_M   Type = 29 // 1.75 bpw: IQ1_S's grid, a shift per 8 values, 3-bit scales per 16
	IQ4_XS  Type = 23 // 4.25 bpw: IQ4_NL's grid on 256-element super-blocks, 6-bit scales per 32

	IQ4_NL Type = 20 // 32-element blocks: fp16 scale, 4-bit indices into a non-uniform grid
)

// qkK is the super-block size of the K-quants and ternary types (QK_K).
const qkK = 256

// codec describes one type: its block geometry and its row functions. The
// functions are called with whole blocks only: len(src) a multiple of
// blockSize and len(dst) the matching number of bytes (or floats).
type codec struct {
	name       string
	blockSize  int
	typeSize   int
	quantize   func(dst []byte, src []float32)
	dequantize func(dst []float32, src []byte)
}

// codecs is a read-only table indexed by Type.
var codecs = [...]codec{
	F32:   {"F32", 1, 4, quantizeRowF32, dequantizeRowF32},
	F16:   {"F16", 1, 2, quantizeRowF16, dequantizeRowF16},
	Q4_0:  {"Q4_0", 32, 18, quantizeRowQ40Ref, dequantizeRowQ40},
	Q4_1:  {"Q4_1", 32, 20, quantizeRowQ41Ref, dequantizeRowQ41},
	Q5_0:  {"Q5_0", 32, 22, quantizeRowQ50Ref, dequantizeRowQ50},
	Q5_1:  {"Q5_1", 32, 24, quantizeRowQ51Ref, dequantizeRowQ51},
	Q8_0:  {"Q8_0", 32, 34, quantizeRowQ80Ref, dequantizeRowQ80},
	Q2_K:  {"Q2_K", qkK, 84, quantizeRowQ2KRef, dequantizeRowQ2K},
	Q3_K:  {"Q3_K", qkK, 110, quantizeRowQ3KRef, dequantizeRowQ3K},
	Q4_K:  {"Q4_K", qkK, 144, quantizeRowQ4KRef, dequantizeRowQ4K},
	Q5_K:  {"Q5_K", qkK, 176, quantizeRowQ5KRef, dequantizeRowQ5K},
	Q6_K:  {"Q6_K", qkK, 210, quantizeRowQ6KRef, dequantizeRowQ6K},
	BF16:  {"BF16", 1, 2, quantizeRowBF16, dequantizeRowBF16},
	TQ1_0: {"TQ1_0", qkK, 54, quantizeRowTQ10Ref, dequantizeRowTQ10},
	TQ2_0: {"TQ2_0", qkK, 66, quantizeRowTQ20Ref, dequantizeRowTQ20},

	IQ2_XXS: {"IQ2_XXS", qkK, blockIQ2XXS, nil, dequantizeRowIQ2XXS},
	IQ2_XS:  {"IQ2_XS", qkK, blockIQ2XS, nil, dequantizeRowIQ2XS},
	IQ3_XXS: {"IQ3_XXS", qkK, blockIQ3XXS, quantizeRowIQ3XXSRef, dequantizeRowIQ3XXS},
	IQ1_S:   {"IQ1_S", qkK, blockIQ1S, nil, dequantizeRowIQ1S},
	IQ3_S:   {"IQ3_S", qkK, blockIQ3S, quantizeRowIQ3SRef, dequantizeRowIQ3S},
	IQ2_S:   {"IQ2_S", qkK, blockIQ2S, quantizeRowIQ2SRef, dequantizeRowIQ2S},
	IQ1_M:   {"IQ1_M", qkK, blockIQ1M, quantizeRowIQ1MRef, dequantizeRowIQ1M},
	IQ4_XS:  {"IQ4_XS", qkK, blockIQ4XS, quantizeRowIQ4XSRef, dequantizeRowIQ4XS},

	IQ4_NL: {"IQ4_NL", 32, 18, quantizeRowIQ4NLRef, dequantizeRowIQ4NL},
}

// Types lists every supported type in ascending id order.
func Types() []Type {
	var ts []Type
	for i := range codecs {
		if codecs[i].name != "" {
			ts = append(ts, Type(i))
		}
	}
	return ts
}

func (t Type) codec() *codec {
	if int(t) < len(codecs) && codecs[t].name != "" {
		return &codecs[t]
	}
	return nil
}

// Valid reports whether t is one of the supported types.
func (t Type) Valid() bool { return t.codec() != nil }

// String returns the type's name as llama.cpp's tools spell it ("Q4_K",
// "TQ2_0", "F16"), or "Type(n)" for an unsupported id.
func (t Type) String() string {
	if c := t.codec(); c != nil {
		return c.name
	}
	return fmt.Sprintf("Type(%d)", uint32(t))
}

// ParseType parses a type name, ignoring case ("q4_k", "Q4_K", "bf16").
func ParseType(s string) (Type, error) {
	for _, t := range Types() {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	names := make([]string, 0, len(codecs))
	for _, t := range Types() {
		names = append(names, t.String())
	}
	return 0, fmt.Errorf("quant: unknown type %q (known: %s)", s, strings.Join(names, ", "))
}

// MarshalText implements encoding.TextMarshaler with the type's name.
func (t Type) MarshalText() ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("quant: cannot marshal unsupported type id %d", uint32(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseType.
func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// BlockSize is the number of elements in one block of t (1 for the float
// types), or 0 for an unsupported type.
func (t Type) BlockSize() int {
	if c := t.codec(); c != nil {
		return c.blockSize
	}
	return 0
}

// TypeSize is the number of bytes in one block of t, or 0 for an
// unsupported type.
func (t Type) TypeSize() int {
	if c := t.codec(); c != nil {
		return c.typeSize
	}
	return 0
}

// RowLengthError reports a row length that is not a positive multiple of the
// type's block size; the errors of RowSize, FitType, QuantizeRef and
// Dequantize wrap it (use errors.As). Callers then pick a fallback type (see
// Fallbacks and FitType).
type RowLengthError struct {
	Type      Type
	RowLen    int
	BlockSize int
}

// Error names the type, its block size and the offending row length.
func (e *RowLengthError) Error() string {
	return fmt.Sprintf("%s needs rows whose length is a positive multiple of its block size %d, got a row of %d elements (see quant.Fallbacks)",
		e.Type, e.BlockSize, e.RowLen)
}

// RowSize is the number of bytes a row of n elements takes in type t. It
// fails for an unsupported type, and with a wrapped *RowLengthError when n is
// not a positive multiple of the block size.
func (t Type) RowSize(n int) (int, error) {
	rs, err := t.rowSize(n)
	if err != nil {
		return 0, fmt.Errorf("quant: %w", err)
	}
	return rs, nil
}

// rowSize is RowSize without the package prefix on errors, for callers that
// add their own context.
func (t Type) rowSize(n int) (int, error) {
	c := t.codec()
	if c == nil {
		return 0, fmt.Errorf("unsupported type id %d", uint32(t))
	}
	if n <= 0 || n%c.blockSize != 0 {
		return 0, &RowLengthError{Type: t, RowLen: n, BlockSize: c.blockSize}
	}
	return n / c.blockSize * c.typeSize, nil
}

// shape checks a buffer pair for QuantizeRef and Dequantize and returns the
// number of rows.
func shape(t Type, rowLen, nElems, nBytes int) (int, error) {
	rowSize, err := t.rowSize(rowLen)
	if err != nil {
		return 0, err
	}
	if nElems%rowLen != 0 {
		return 0, fmt.Errorf("%d float values are not a whole number of rows of %d", nElems, rowLen)
	}
	nrows := nElems / rowLen
	if want := nrows * rowSize; nBytes != want {
		return 0, fmt.Errorf("%d rows of %d elements take %d bytes, the byte buffer has %d", nrows, rowLen, want, nBytes)
	}
	return nrows, nil
}

// QuantizeRef quantizes the rows of src (each rowLen long) into dst with
// llama.cpp's reference quantizer for t. The bytes are identical to those of
// ggml_quantize_chunk(t, src, dst, 0, nrows, rowLen, NULL). len(src) must be
// a multiple of rowLen, rowLen a multiple of t.BlockSize(), and len(dst)
// exactly nrows*RowSize(rowLen).
func QuantizeRef(t Type, dst []byte, src []float32, rowLen int) error {
	if _, err := shape(t, rowLen, len(src), len(dst)); err != nil {
		return fmt.Errorf("quant: quantize %d values to %s: %w", len(src), t, err)
	}
	if t.codec().quantize == nil {
		return fmt.Errorf("quant: quantize %d values to %s: %w", len(src), t, ErrNeedsImportance)
	}
	t.codec().quantize(dst, src)
	return nil
}

// Dequantize decodes the rows of src (each rowLen elements long once
// decoded) into dst, bit-identical to ggml's to_float for t. len(dst) must be
// a multiple of rowLen, rowLen a multiple of t.BlockSize(), and len(src)
// exactly nrows*RowSize(rowLen). Any byte content is accepted.
func Dequantize(t Type, dst []float32, src []byte, rowLen int) error {
	if _, err := shape(t, rowLen, len(dst), len(src)); err != nil {
		return fmt.Errorf("quant: dequantize %d bytes of %s: %w", len(src), t, err)
	}
	t.codec().dequantize(dst, src)
	return nil
}
