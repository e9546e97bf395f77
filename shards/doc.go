// Package shards will hold the shard plan (which tensors of a checkpoint go
// into which unit of work) and the per-shard pipeline: rotate, quantize and
// encode one layer. It has no Temporal imports.
package shards
