package infer

import (
	"context"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// benchForward runs m.Forward over tokens b.N times and reports tokens/s.
func benchForward(b *testing.B, m *Model, toks []int32) {
	b.Helper()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Forward(ctx, toks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(toks)*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkForwardStories260K is one ctx-256 window of the fixture.
func BenchmarkForwardStories260K(b *testing.B) {
	m := loadFixture(b, fixtureF32)
	benchForward(b, m, fixtureWindows(b, ProtocolFull, 256)[0].Input)
}

// BenchmarkForwardSynthetic is a larger random model (hidden 512,
// intermediate 1536, 8 heads / 4 kv heads, 4 layers, vocab 8192) at ctx 256.
func BenchmarkForwardSynthetic(b *testing.B) {
	cfg := &model.Config{
		ModelType: "llama", HiddenSize: 512, IntermediateSize: 1536, NumLayers: 4,
		NumHeads: 8, NumKVHeads: 4, HeadDim: 64, VocabSize: 8192,
		RMSNormEps: 1e-5, RopeTheta: 10000,
	}
	m, err := NewModel(cfg, synthWeights(cfg, 1), Options{})
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]int32, 256)
	for i := range toks {
		toks[i] = int32(i * 31 % cfg.VocabSize)
	}
	benchForward(b, m, toks)
}

// BenchmarkForward7BLayer is one decoder layer of llama-2-7b's shape
// (hidden 4096, intermediate 11008, 32 heads, vocabulary cut to 512) with
// random weights quantized to Q4_K (lm_head Q6_K), over a 256-token window,
// in the default (integer) mode. Building the weights takes a while.
func BenchmarkForward7BLayer(b *testing.B) {
	cfg := &model.Config{
		ModelType: "llama", HiddenSize: 4096, IntermediateSize: 11008, NumLayers: 1,
		NumHeads: 32, NumKVHeads: 32, HeadDim: 128, VocabSize: 512,
		RMSNormEps: 1e-5, RopeTheta: 10000,
	}
	w := quantizedWeights(b, synthWeights(cfg, 1), quant.Q4_K)
	m, err := NewModel(cfg, w, Options{})
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]int32, 256)
	for i := range toks {
		toks[i] = int32(i * 31 % cfg.VocabSize)
	}
	benchForward(b, m, toks)
}
