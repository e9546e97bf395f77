package quant

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// benchImportance is an importance for the benchmark matrix's 11 008
// columns: Σx² of 64 random activation vectors, one column in 40 30×
// heavier.
var benchImportance = sync.OnceValue(func() []float32 {
	rng := rand.New(rand.NewPCG(11008, 64))
	imp := make([]float32, benchRowLen)
	for c := range imp {
		h := 1.0
		if rng.IntN(40) == 0 {
			h = 30
		}
		for range 64 {
			a := rng.NormFloat64() * h
			imp[c] += float32(a * a)
		}
	}
	return imp
})

// BenchmarkQuantizeRefWeighted measures QuantizeRefWeighted (ggml's
// importance-weighted reference quantizers) on one goroutine; MB/s counts
// the float32 input bytes.
//
//	go test ./quant -run '^$' -bench 'QuantizeRefWeighted|GGMLQuantizeWeighted' -cpu 1
func BenchmarkQuantizeRefWeighted(b *testing.B) {
	src, imp := benchMatrix(), benchImportance()
	for _, typ := range weightedTypes {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, benchRows*benchRowSize(b, typ))
			b.SetBytes(int64(4 * len(src)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := QuantizeRefWeighted(typ, dst, src, benchRowLen, imp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, 4*len(src), len(src))
		})
	}
}

// BenchmarkGGMLQuantizeWeighted times ggml_quantize_chunk with the same
// importance matrix inside the oracle process (op 6), like
// BenchmarkGGMLQuantize: read ggml-MB/s and ggml-cpu-MB/s.
func BenchmarkGGMLQuantizeWeighted(b *testing.B) {
	o := startOracle(b)
	src, imp := benchMatrix(), benchImportance()
	payload := append(floatBytes(imp), floatBytes(src)...)
	for _, typ := range weightedTypes {
		b.Run(typ.String(), func(b *testing.B) {
			wall, cpu := o.time(b, 6, typ, benchRows, benchRowLen, b.N, payload)
			bytes := 4 * float64(len(src)) * float64(b.N)
			b.ReportMetric(bytes/wall.Seconds()/1e6, "ggml-MB/s")
			b.ReportMetric(bytes/cpu.Seconds()/1e6, "ggml-cpu-MB/s")
		})
	}
}

// BenchmarkQuantizeOptWeighted is BenchmarkQuantizeOpt with the importance.
// Each iteration takes seconds: run with -benchtime 1x.
func BenchmarkQuantizeOptWeighted(b *testing.B) {
	src, imp := benchMatrix(), benchImportance()
	for _, typ := range weightedTypes {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, benchRows*benchRowSize(b, typ))
			b.SetBytes(int64(4 * len(src)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := Quantize(typ, dst, src, benchRowLen, imp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, 4*len(src), len(src))
		})
	}
}

// BenchmarkQuantizeOptWeightedRows is BenchmarkQuantizeOptWeighted on the
// first 256 rows of the benchmark matrix (2.8 M values): short enough to
// repeat and alternate with another build on a shared machine.
//
//	go test ./quant -run '^$' -bench QuantizeOptWeightedRows -benchtime 2x -cpu 1
func BenchmarkQuantizeOptWeightedRows(b *testing.B) {
	const rows = 256
	src, imp := benchMatrix()[:rows*benchRowLen], benchImportance()
	for _, typ := range []Type{Q2_K, Q3_K, Q4_K, Q5_K, Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, rows*benchRowSize(b, typ))
			b.SetBytes(int64(4 * len(src)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := Quantize(typ, dst, src, benchRowLen, imp); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, 4*len(src), len(src))
		})
	}
}
