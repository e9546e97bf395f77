// Package quant holds adaptq's GGUF block codecs: it turns rows of float32
// weights into the byte layout of a ggml tensor type and back.
//
// # Types
//
// The Type values are ggml's own type ids (enum ggml_type in ggml.h), so a
// Type can be written to a GGUF file as is:
//
//	F32 (0)  F16 (1)  Q4_0 (2)  Q4_1 (3)  Q5_0 (6)  Q5_1 (7)  Q8_0 (8)
//	Q2_K (10)  Q3_K (11)  Q4_K (12)  Q5_K (13)  Q6_K (14)  IQ4_NL (20)
//	BF16 (30)  TQ1_0 (34)  TQ2_0 (35)
//	IQ2_XXS (16)  IQ2_XS (17)  IQ3_XXS (18)  IQ1_S (19)  IQ3_S (21)
//	IQ2_S (22)  IQ4_XS (23)  IQ1_M (29)
//
// # I-quants
//
// The i-quants (iq.go) code groups of 8 or 4 values as points of fixed
// codebook grids (iqgrids.go, read back from llama.cpp's library by
// TestIQGridsFromOracle); IQ4_XS (iq4xs.go) is IQ4_NL's 16-level grid on
// 256-element super-blocks with 6-bit sub-block scales. Dequantize decodes
// them bit for bit like ggml. Their reference quantizers (iq1quant.go,
// iq2quant.go, iq3quant.go, iq4xs.go)
// reproduce ggml_quantize_chunk byte for byte without an importance matrix
// (QuantizeRef) and with one (QuantizeRefWeighted). llama.cpp refuses
// IQ2_XXS, IQ2_XS and IQ1_S without an importance matrix
// (Type.NeedsImportance); QuantizeRef returns ErrNeedsImportance for them.
// The grid search tables of ggml's iq2xs_init_impl and iq3xs_init_impl (a
// key per rounded level vector, the neighbour lists of the keys off the
// grid) are computed from the grids once per process at first use
// (iqtables.go). On rows with NaN or ±Inf, or whose sum of squares
// overflows float32, ggml's i-quant searches abort (a failed GGML_ASSERT);
// QuantizeRef and QuantizeRefWeighted return deterministic bytes there
// instead (IQ4_XS matches ggml on those rows too).
//
// Quantize for an i-quant (iqopt.go) starts from ggml's blocks, computed
// with the reference weighting, without an importance where the type allows
// one, and with weights equal to the error's own; it refits the integer
// group scales and the fp16 super-block scale in closed form, re-chooses
// each grid point at its group's quantized scale among its grid neighbours,
// and keeps per block the candidate of least weighted error (never worse
// than the reference block). With an importance, the reference for IQ2_XXS,
// IQ2_XS and IQ1_S is QuantizeRefWeighted with that importance; without
// one, with an importance of 1.
//
// # Reference quantizers
//
// QuantizeRef reproduces llama.cpp's reference quantizers byte for byte: its
// output is identical to ggml_quantize_chunk with no importance matrix
// (imatrix == NULL), and Dequantize is identical, bit for bit, to the type's
// to_float trait. For most types ggml_quantize_chunk then runs the type's
// quantize_row_*_ref; for IQ4_NL it runs quantize_iq4_nl, whose scale search
// (ntry = 7) quantize_row_iq4_nl_ref skips, and QuantizeRef follows
// ggml_quantize_chunk. The package's oracle test checks both against the
// libggml-base.so that node-llama-cpp ships (see NOTES.md). Byte-exactness
// rests on doing every float operation in float32, in the order C does it,
// with each product rounded before it is added (no fused multiply-add), on
// ggml's nearest_int rounding (adding 12582912 = 1.5·2^23), on C's roundf and
// lroundf (half away from zero), and on ggml's software fp32→fp16 conversion
// (round to nearest even, NaN → 0x7E00 with the sign kept). Rows holding NaN
// or ±Inf come out as ggml's do too on amd64 (elsewhere the float-to-int
// conversion of NaN and out-of-range values is the platform's, in Go as in
// C).
//
// Each block type has its own pair of functions (quantizeRowQ4KRef and
// dequantizeRowQ4K, …) that work on a whole number of blocks; the exported
// functions check lengths and dispatch.
//
// # Importance-weighted reference quantizers
//
// QuantizeRefWeighted(t, dst, src, rowLen, importance) is
// ggml_quantize_chunk(t, src, dst, 0, nrows, rowLen, importance), byte for
// byte: the importance matrix of one tensor, one value per column of its
// rows (rowLen of them, shared by every row; what llama-quantize passes,
// the imatrix's Σx²/count), goes into each type's quantize_row_*_impl as
// quant_weights. Those fit every block with per-element weights
// importance[c]·sqrt(σ² + x²) — σ² the row's mean square for Q4_0, Q4_1,
// Q5_0 and Q5_1, twice the super-block's for Q3_K, Q4_K, Q5_K and the
// 32-block of IQ4_NL, once the super-block's for Q2_K; Q6_K uses the
// importance itself — with make_qx_quants (Q4_0, Q5_0, Q3_K, Q6_K),
// make_qkx3_quants (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) and, for the K-quants'
// sub-block scales, make_qp_quants or make_qx_quants weighted by the
// sub-blocks' summed weights. Q8_0, TQ1_0, TQ2_0 and the float types
// ignore the importance in ggml (Type.IgnoresImportance); for them, and
// for a nil importance, QuantizeRefWeighted is QuantizeRef. The oracle
// test checks every type against the library with random, partly zero,
// all-zero and Σx²-of-activations importances.
//
// # Optimised quantizers
//
// Quantize writes the same layouts as QuantizeRef with a lower, or at worst
// equal, squared error, optionally weighted per column by an importance
// vector (an imatrix). It searches the scales of each block (the per-block
// d of Q8_0, Q4_0, Q5_0, IQ4_NL, TQ1_0 and TQ2_0; d and the min of Q4_1
// and Q5_1; the sub-block scales and mins and the fp16 super-block scales
// of the K-quants) to minimise the weighted error, and keeps, block by
// block, whichever of its block and the reference quantizer's block
// decodes with the lower weighted error. The reference is QuantizeRef
// without an importance and QuantizeRefWeighted (ggml's own
// importance-weighted result) with one, so Quantize is never worse than
// either, in the error it is given, by construction. See docs/CODECS.md
// for the measured errors and speeds.
//
// # BitNet b1.58
//
// QuantizeBitNet writes TQ1_0 or TQ2_0 with one scale for the whole tensor
// (BitNetScale: the mean |W|) and W_q = clip(round(W/scale), −1, 1);
// TritStats reports the fraction of zero trits and their entropy.
//
// # Rows that do not fit the block size
//
// A row whose length is not a multiple of its type's block size is refused
// with an error wrapping a *RowLengthError; the caller then picks another
// type. The fallback ladder is llama.cpp's, tensor_type_fallback in
// src/llama-quant.cpp of the release node-llama-cpp 3.21.1 was built from:
// one fallback type by the type asked for, then F16 when the fallback does
// not fit either.
//
//	IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (256) → IQ4_NL (32) → F16
//	Q2_K, Q3_K, TQ1_0, TQ2_0                     (256) → Q4_0   (32) → F16
//	Q4_K                                         (256) → Q5_0   (32) → F16
//	Q5_K                                         (256) → Q5_1   (32) → F16
//	Q6_K                                         (256) → Q8_0   (32) → F16
//	Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL          (32) → F16
//	F16, BF16, F32                                 (1)   fit every row
//
// (llama.cpp also sends IQ4_XS to IQ4_NL and Q2_0 to Q4_0; it has no
// fallback for other 256-block types and stops there, as FitType does.)
// Fallbacks lists a type's ladder and FitType walks it for a given row
// length: FitType(t, n) is the type llama-quantize writes for a tensor of
// type t with rows of n values.
package quant
