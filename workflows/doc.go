// Package workflows will hold adaptq's deterministic Temporal orchestration:
// planning a model into shards, fanning QuantizeShard activities out in a
// bounded window, stitching the GGUF and running the distributed evaluation.
// Workflows never touch tensor bytes; they pass object keys, sizes and
// checksums only.
package workflows
