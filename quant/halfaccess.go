package quant

// HalfToFloat widens an IEEE half float (the bits of a ggml fp16 scale) to
// float32 exactly, as ggml does. It is a read-only accessor for the forward
// pass's integer kernels.
func HalfToFloat(h uint16) float32 { return fp16ToFP32(h) }

// FloatToHalf rounds a float32 to an IEEE half float (nearest even, ±Inf on
// overflow), as ggml's fp16 conversion does.
func FloatToHalf(f float32) uint16 { return fp32ToFP16(f) }

// BFloatToFloat widens a bfloat16 to float32 exactly.
func BFloatToFloat(h uint16) float32 { return bf16ToFP32(h) }

// FloatToBFloat rounds a float32 to bfloat16 (nearest even, NaNs quieted),
// as ggml does.
func FloatToBFloat(f float32) uint16 { return fp32ToBF16(f) }
