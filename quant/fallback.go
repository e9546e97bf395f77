package quant

import "fmt"

// Fallbacks is the ordered list of types to try, after t, for rows whose
// length t cannot hold: llama.cpp's tensor_type_fallback (the table in the
// package documentation), one fallback type and then F16. The 32-block
// types have only F16 and the float types, whose block size is 1, none. A
// 256-block type for which llama.cpp defines no fallback has none either
// (FitType then refuses rows it cannot hold, as llama-quantize does).
func Fallbacks(t Type) []Type {
	switch t {
	case IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS:
		return []Type{IQ4_NL, F16}
	case Q2_K, Q3_K, TQ1_0, TQ2_0:
		return []Type{Q4_0, F16}
	case Q4_K:
		return []Type{Q5_0, F16}
	case Q5_K:
		return []Type{Q5_1, F16}
	case Q6_K:
		return []Type{Q8_0, F16}
	}
	if bs := t.BlockSize(); bs > 1 && bs <= 32 {
		return []Type{F16}
	}
	return nil
}

// FitType is the type llama.cpp writes for a tensor of type t whose rows
// hold rowLen values: t if rowLen is a multiple of t's block size,
// otherwise the first of Fallbacks(t) that fits. It fails for an
// unsupported type, a row length below 1, and a row no type of the ladder
// holds (a 256-block type without a fallback), with a wrapped
// *RowLengthError.
func FitType(t Type, rowLen int) (Type, error) {
	if !t.Valid() {
		return 0, fmt.Errorf("quant: unsupported type id %d", uint32(t))
	}
	if rowLen <= 0 {
		return 0, fmt.Errorf("quant: row length %d is not positive", rowLen)
	}
	for _, c := range append([]Type{t}, Fallbacks(t)...) {
		if rowLen%c.BlockSize() == 0 {
			return c, nil
		}
	}
	return 0, fmt.Errorf("quant: %w", &RowLengthError{Type: t, RowLen: rowLen, BlockSize: t.BlockSize()})
}
