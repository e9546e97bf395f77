// Package activities will hold adaptq's thin Temporal activity adapters: each
// reads its inputs from the store, calls the shards, gguf and infer packages,
// writes its outputs under idempotent keys and returns small summaries.
package activities
