package infer

import (
	"context"
	"fmt"
	"slices"
)

// kvCache holds, for every layer, the keys (after RoPE) and values of the
// positions a model has run so far, n·kv_dim values each.
type kvCache struct {
	k, v [][]float32
	kd   int
	n    int
}

// newKVCache returns an empty cache for a model's layers.
func newKVCache(layers, kvDim int) *kvCache {
	return &kvCache{k: make([][]float32, layers), v: make([][]float32, layers), kd: kvDim}
}

// add appends the keys and values of new positions to layer l and returns
// the layer's keys and values of every position, old and new.
func (c *kvCache) add(l int, k, v []float32) (kAll, vAll []float32) {
	c.k[l] = append(c.k[l], k...)
	c.v[l] = append(c.v[l], v...)
	return c.k[l], c.v[l]
}

// truncate forgets every position from n on (used to undo a failed step).
func (c *kvCache) truncate(n int) {
	for l := range c.k {
		c.k[l] = c.k[l][:min(len(c.k[l]), n*c.kd)]
		c.v[l] = c.v[l][:min(len(c.v[l]), n*c.kd)]
	}
	c.n = n
}

// Generate continues prompt greedily: it runs the prompt once, then
// repeatedly appends the most probable next token (the lowest id on ties)
// and runs only that token against a key/value cache, until n tokens have
// been generated or a token of stopAt comes out. It returns the generated
// tokens without the prompt; a stop token ends the generation and is not
// included, so a result shorter than n means a stop token was reached.
//
// The prompt must not be empty (for a Llama model it starts with BOS). The
// logits of every step are bit-identical to the last row of Forward over
// the whole sequence so far, so the result is that of re-running the
// window at every step, and it does not depend on the number of workers.
// The model's activation-quantization options apply. When the config has
// max_position_embeddings, the prompt plus n tokens must fit in it.
func Generate(ctx context.Context, m *Model, prompt []int32, n int, stopAt []int32) ([]int32, error) {
	cfg := m.cfg
	if len(prompt) == 0 {
		return nil, fmt.Errorf("infer: generate: empty prompt (start it with BOS)")
	}
	if n < 0 {
		return nil, fmt.Errorf("infer: generate: negative token count %d", n)
	}
	if limit := cfg.MaxPositionEmbeddings; limit > 0 && len(prompt)+n > limit {
		return nil, fmt.Errorf("infer: generate: %d prompt tokens + %d new tokens exceed the model's max_position_embeddings %d", len(prompt), n, limit)
	}
	out := make([]int32, 0, n)
	if n == 0 {
		return out, nil
	}
	cache := newKVCache(cfg.NumLayers, cfg.KVDim())
	in := prompt
	for len(out) < n {
		logits, err := m.forward(ctx, in, cache, true)
		if err != nil {
			return nil, fmt.Errorf("infer: generate: step %d (position %d): %w", len(out), cache.n, err)
		}
		next := int32(argmax(logits))
		if slices.Contains(stopAt, next) {
			break
		}
		out = append(out, next)
		in = []int32{next}
	}
	return out, nil
}
