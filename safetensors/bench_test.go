package safetensors_test

import (
	"math/rand/v2"
	"testing"

	"github.com/ohms-project/adaptq/safetensors"
)

func randBF16(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		h := safetensors.FloatToBF16(float32(r.NormFloat64() * 0.02))
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

// BenchmarkBF16ToF32 converts a 256 MiB BF16 tensor (MB/s of BF16 input).
func BenchmarkBF16ToF32(b *testing.B) {
	src := randBF16(128 << 20)
	dst := make([]float32, 128<<20)
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for b.Loop() {
		safetensors.BF16ToF32(dst, src)
	}
}

// BenchmarkF16ToF32 converts a 256 MiB F16 tensor (MB/s of F16 input).
func BenchmarkF16ToF32(b *testing.B) {
	src := randBF16(128 << 20) // bit patterns are as good as any for timing
	dst := make([]float32, 128<<20)
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for b.Loop() {
		safetensors.F16ToF32(dst, src)
	}
}
