package quant

import (
	"encoding/binary"
	"math"
)

// fp32ToFP16 converts like ggml's software conversion (after Maratyszcza's
// FP16 library): round to nearest even, overflow to ±Inf, subnormal halves
// kept, and every NaN turned into the quiet NaN 0x7E00 with its sign. The two
// scalings and the final addition are float32 operations whose rounding does
// the work, so they must stay in float32.
func fp32ToFP16(f float32) uint16 {
	const (
		scaleToInf  = float32(0x1.0p+112)
		scaleToZero = float32(0x1.0p-110)
	)
	w := math.Float32bits(f)
	base := float32(float32(abs32(f)*scaleToInf) * scaleToZero)

	shl1 := w + w
	sign := w & 0x80000000
	bias := shl1 & 0xFF000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = math.Float32frombits((bias>>1)+0x07800000) + base
	bits := math.Float32bits(base)
	expBits := (bits >> 13) & 0x00007C00
	mantBits := bits & 0x00000FFF
	if shl1 > 0xFF000000 {
		return uint16(sign>>16) | 0x7E00
	}
	return uint16(sign>>16) | uint16(expBits+mantBits)
}

// fp16ToFP32 converts a half float to float32 the way ggml does. The result is
// exact; for NaN inputs the float32 multiplication quiets signalling NaNs as
// the x86 instruction does in ggml.
func fp16ToFP32(h uint16) float32 {
	const (
		expOffset = uint32(0xE0) << 23
		expScale  = float32(0x1.0p-112)
		magicMask = uint32(126) << 23
		magicBias = float32(0.5)
		denormCut = uint32(1) << 27
	)
	w := uint32(h) << 16
	sign := w & 0x80000000
	twoW := w + w
	if twoW < denormCut {
		d := math.Float32frombits((twoW>>17)|magicMask) - magicBias
		return math.Float32frombits(sign | math.Float32bits(d))
	}
	n := math.Float32frombits((twoW>>4)+expOffset) * expScale
	return math.Float32frombits(sign | math.Float32bits(n))
}

// fp32ToBF16 rounds to nearest even and quiets NaNs, like ggml.
func fp32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 64
	}
	return uint16((u + (0x7fff + ((u >> 16) & 1))) >> 16)
}

// bf16ToFP32 widens a bfloat16.
func bf16ToFP32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ 0x80000000) }

func getF16(b []byte) float32 { return fp16ToFP32(binary.LittleEndian.Uint16(b)) }

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, fp32ToFP16(f)) }

// quantizeRowF32 copies float32 values as little-endian bytes.
func quantizeRowF32(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// dequantizeRowF32 reads little-endian float32 values.
func dequantizeRowF32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// quantizeRowF16 is ggml_fp32_to_fp16_row.
func quantizeRowF16(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], fp32ToFP16(v))
	}
}

// dequantizeRowF16 is ggml_fp16_to_fp32_row.
func dequantizeRowF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = fp16ToFP32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// quantizeRowBF16 is ggml_fp32_to_bf16_row_ref.
func quantizeRowBF16(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], fp32ToBF16(v))
	}
}

// dequantizeRowBF16 is ggml_bf16_to_fp32_row.
func dequantizeRowBF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = bf16ToFP32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}
