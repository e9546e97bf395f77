// Package infer runs Llama-family decoders (llama, mistral, qwen2, qwen3)
// in pure Go and measures them: perplexity under two protocols, KL
// divergence and top-1 agreement against a reference, with sums that merge
// exactly across a distributed evaluation.
//
// Weights are reached through the Linear interface, one row block at a
// time, so that quantized weights can be dequantized block by block and are
// never expanded whole; LoadModel builds dense float32 weights from a
// checkpoint. Forward evaluates a window of tokens at once with causal
// grouped-query attention, RoPE (rope_theta, llama3 scaling, Hugging Face
// rotate_half pairing), RMSNorm, Qwen2 q/k/v biases, Qwen3 QK-norm and a
// SiLU-gated MLP. Work is spread over goroutines by output rows, heads and
// tokens; every output value is computed by one goroutine with a fixed
// summation order, so results are bit-identical whatever the number of
// workers.
//
// Windows cuts token ids into windows by protocol (ProtocolFull,
// ProtocolLlamaCpp); Evaluate scores a subset of windows and returns Sums;
// Merge combines Sums and Sums.Result aggregates them. A reference is
// either a second model (ModelReference, exact KL) or saved top-k
// log-probabilities (LogProbWriter, ReadLogProbs; approximate KL, see
// KLTopK). Options.Act simulates per-token activation quantization,
// optionally after an online Hadamard rotation. Generate continues a
// prompt greedily with a key/value cache. RotatedWeights builds the
// weights of a checkpoint after the rotation plan of package rotate, to
// check that the rotated model computes the same function. NOTES.md gives
// the protocols and measured numbers.
package infer
