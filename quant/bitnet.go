package quant

import (
	"fmt"
	"math"
)

// BitNetScale is the per-tensor scale of BitNet b1.58: the mean absolute
// value of w (0 for an empty slice). It is accumulated in float64.
func BitNetScale(w []float32) float32 {
	if len(w) == 0 {
		return 0
	}
	var s float64
	for _, v := range w {
		s += math.Abs(float64(v))
	}
	return float32(s / float64(len(w)))
}

// bitnetTrit is clip(round(v/scale), −1, 1) with round half away from zero;
// 0 when scale is 0.
func bitnetTrit(v, scale float32) int32 {
	if scale == 0 {
		return 0
	}
	return clampInt(int32(math.Round(float64(v/scale))), -1, 1)
}

// QuantizeBitNet quantizes the rows of src (each rowLen long) into dst as
// BitNet b1.58 does, in the layout of t (TQ1_0 or TQ2_0): one scale for the
// whole tensor (normally BitNetScale of it, the mean |W|), the weights
// W_q = clip(round(W/scale), −1, 1) (round half away from zero, the
// division in float32), and every block's d set to scale in fp16, so that
// Dequantize gives exactly d·W_q. scale must be finite and non-negative;
// with scale 0 every weight becomes 0. The lengths follow QuantizeRef's
// rules.
func QuantizeBitNet(t Type, dst []byte, src []float32, rowLen int, scale float32) error {
	if t != TQ1_0 && t != TQ2_0 {
		return fmt.Errorf("quant: bitnet quantization needs TQ1_0 or TQ2_0, got %s", t)
	}
	if !(scale >= 0) || math.IsInf(float64(scale), 1) {
		return fmt.Errorf("quant: bitnet quantization to %s: scale %g is not finite and non-negative", t, scale)
	}
	if _, err := shape(t, rowLen, len(src), len(dst)); err != nil {
		return fmt.Errorf("quant: bitnet quantize %d values to %s: %w", len(src), t, err)
	}
	d := round16(scale)
	ts := t.TypeSize()
	var trits [qkK]uint8
	for b := 0; b < len(src)/qkK; b++ {
		x := src[b*qkK : (b+1)*qkK]
		for i, v := range x {
			trits[i] = uint8(bitnetTrit(v, scale) + 1)
		}
		encodeTernary(t, dst[b*ts:(b+1)*ts], &trits, d)
	}
	return nil
}

// TritStats describes the ternary weights W_q = clip(round(w/scale), −1, 1)
// of QuantizeBitNet: the fraction of zeros, and the empirical entropy of the
// trit stream in bits per weight, −Σ p·log2 p over the frequencies of −1, 0
// and +1. The entropy is the lower bound on the size of any lossless coder
// of the trits that treats them as independent symbols (at most log2 3 ≈
// 1.585; TQ1_0 stores 1.6 bits a trit, TQ2_0 2). An empty w gives 0, 0.
func TritStats(w []float32, scale float32) (zeroFrac, entropyBits float64) {
	if len(w) == 0 {
		return 0, 0
	}
	var counts [3]int
	for _, v := range w {
		counts[bitnetTrit(v, scale)+1]++
	}
	n := float64(len(w))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			entropyBits -= p * math.Log2(p)
		}
	}
	return float64(counts[1]) / n, entropyBits
}
