package hadamard

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// The LLaMA-7B FFN shape: a 4096 × 11008 BF16 matrix (down_proj in
// Hugging Face order), 86.5 MiB of BF16.
const (
	bf16Rows = 4096
	bf16Cols = 11008
)

// bf16Matrix returns the matrix as little-endian BF16 bytes (Gaussian
// values rounded to bfloat16).
func bf16Matrix() []byte {
	rng := rand.New(rand.NewPCG(4096, 11008))
	b := make([]byte, 2*bf16Rows*bf16Cols)
	for i := 0; i < bf16Rows*bf16Cols; i++ {
		u := math.Float32bits(float32(0.02 * rng.NormFloat64()))
		u += 0x7fff + (u>>16)&1 // round to nearest even
		binary.LittleEndian.PutUint16(b[2*i:], uint16(u>>16))
	}
	return b
}

// widenBF16 converts little-endian BF16 bytes to float32.
func widenBF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// BenchmarkRotateBF16x4096x11008 applies the randomized Hadamard rotation to
// a 4096 × 11008 BF16 matrix on one goroutine. MB/s counts the BF16 input
// bytes (2 per element); f32-MB/s the float32 bytes rotated. Sub-benchmarks:
// "rows" multiplies every row by the size-11008 rotation (W·Q, Hadamard
// blocks of 256), widening the BF16 row into a float32 buffer first, as the
// pipeline reads it; "rows-f32" does the same on an already widened float32
// matrix; "cols" computes Qᵀ·W with the size-4096 rotation (one full
// H_4096), which is what the pipeline does to LLaMA-7B's down_proj. Run:
//
//	go test ./hadamard -run '^$' -bench RotateBF16 -cpu 1
func BenchmarkRotateBF16x4096x11008(b *testing.B) {
	raw := bf16Matrix()
	data := make([]float32, bf16Rows*bf16Cols)
	widenBF16(data, raw)
	report := func(b *testing.B) {
		b.ReportMetric(4*float64(len(data))*float64(b.N)/b.Elapsed().Seconds()/1e6, "f32-MB/s")
	}
	b.Run("rows", func(b *testing.B) {
		r, err := New(bf16Cols, 1, 1)
		if err != nil {
			b.Fatal(err)
		}
		row := make([]float32, bf16Cols)
		b.SetBytes(int64(len(raw)))
		b.ResetTimer()
		for b.Loop() {
			for i := 0; i < bf16Rows; i++ {
				widenBF16(row, raw[2*i*bf16Cols:2*(i+1)*bf16Cols])
				if err := r.MulRight(row, 1, bf16Cols); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b)
	})
	b.Run("rows-f32", func(b *testing.B) {
		r, err := New(bf16Cols, 1, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(raw)))
		b.ResetTimer()
		for b.Loop() {
			if err := r.MulRight(data, bf16Rows, bf16Cols); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("cols", func(b *testing.B) {
		r, err := New(bf16Rows, 1, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(raw)))
		b.ResetTimer()
		for b.Loop() {
			if err := r.MulLeftT(data, bf16Rows, bf16Cols); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
}
