// Package kernels holds the arithmetic of the forward pass's linear
// layers: float32 dot products with fused multiply-adds, the quantization
// of activations to ggml's Q8_0, Q8_1 and Q8_K blocks, and integer dot
// products of quantized weight rows with quantized activations, one per
// weight type, the way llama.cpp's CPU backend computes them.
//
// Every kernel exists twice: a portable Go version, which is the reference
// and the fallback, and on amd64 an AVX2/FMA version in Go assembly chosen
// at run time when the CPU has AVX2, FMA and F16C (HasAVX2). The two give
// bit-identical results: integer sums are exact, and every float operation
// (each fused multiply-add, each addition of the final reduction) happens in
// the same order in both, so a result does not depend on the machine, the
// number of goroutines or how tokens are batched. Lanes: a dot product keeps
// eight float32 partial sums; element i of a float row goes to lane i mod 8,
// element e of a 32- or 256-value quantized block to lane (e mod 32)/4. The
// eight lanes are reduced as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
//
// AVX-512 is not implemented: the development machines have none and no
// emulator was available to test such code.
//
// go generate is not used: the assembly is written by hand
// (float_amd64.s, qdot_amd64.s).
package kernels
