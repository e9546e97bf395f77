package quant

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// The i-quant benchmarks use a smaller matrix than the others (the searches
// run at a few MB/s): 64 rows of 4096 (1 Mi values, 4 MiB of float32) from
// the same distribution, with a realistic importance (iqImportances'
// "sumsq"). IQ2_XXS, IQ2_XS and IQ1_S, which ggml quantizes only with an
// importance matrix, get it in every quantize benchmark.
//
//	go test ./quant -run '^$' -bench 'IQ' -cpu 1
const (
	iqBenchRows   = 64
	iqBenchRowLen = 4096
)

var iqBenchMatrix = sync.OnceValue(func() []float32 {
	return gaussianOutliers(rand.New(rand.NewPCG(2024, 4096)), iqBenchRows*iqBenchRowLen, 0.02, 0.001, 30)
})

// iqBenchImportance is the importance passed with -imatrix benchmarks.
func iqBenchImportance() []float32 { return iqImportances(iqBenchRowLen)["sumsq"] }

// iqBench runs f b.N times over the benchmark matrix, reporting MB/s of
// float32 input (and cpu-MB/s).
func iqBench(b *testing.B, f func(src []float32) error) {
	src := iqBenchMatrix()
	if err := f(src); err != nil { // builds the type's search tables
		b.Fatal(err)
	}
	b.SetBytes(int64(4 * len(src)))
	b.ResetTimer()
	m := startCPU()
	for range b.N {
		if err := f(src); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.report(b, 4*len(src), len(src))
}

// BenchmarkIQQuantizeRef measures the reference quantizers without an
// importance (with one for the types that need it).
func BenchmarkIQQuantizeRef(b *testing.B) {
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, iqBenchRows*typ.TypeSize()*iqBenchRowLen/qkK)
			var imp []float32
			if typ.NeedsImportance() {
				imp = iqBenchImportance()
			}
			iqBench(b, func(src []float32) error { return QuantizeRefWeighted(typ, dst, src, iqBenchRowLen, imp) })
		})
	}
}

// BenchmarkIQQuantizeRefImatrix measures the reference quantizers with an
// importance matrix.
func BenchmarkIQQuantizeRefImatrix(b *testing.B) {
	imp := iqBenchImportance()
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, iqBenchRows*typ.TypeSize()*iqBenchRowLen/qkK)
			iqBench(b, func(src []float32) error { return QuantizeRefWeighted(typ, dst, src, iqBenchRowLen, imp) })
		})
	}
}

// BenchmarkIQQuantizeOpt measures the optimised Quantize with the
// importance.
func BenchmarkIQQuantizeOpt(b *testing.B) {
	imp := iqBenchImportance()
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, iqBenchRows*typ.TypeSize()*iqBenchRowLen/qkK)
			iqBench(b, func(src []float32) error { return Quantize(typ, dst, src, iqBenchRowLen, imp) })
		})
	}
}

// BenchmarkIQDequantize measures Dequantize; MB/s counts the quantized
// bytes.
func BenchmarkIQDequantize(b *testing.B) {
	src := iqBenchMatrix()
	imp := iqBenchImportance()
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			q := make([]byte, iqBenchRows*typ.TypeSize()*iqBenchRowLen/qkK)
			if err := QuantizeRefWeighted(typ, q, src, iqBenchRowLen, imp); err != nil {
				b.Fatal(err)
			}
			dst := make([]float32, len(src))
			b.SetBytes(int64(len(q)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := Dequantize(typ, dst, q, iqBenchRowLen); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, len(q), len(src))
		})
	}
}

// BenchmarkGGMLIQQuantize times ggml_quantize_chunk on the same matrix in
// the oracle process, one thread, without an importance where ggml allows
// it: ggml-MB/s (wall) and ggml-cpu-MB/s (thread CPU) of float32 input.
// The untimed first call builds ggml's search tables.
func BenchmarkGGMLIQQuantize(b *testing.B) {
	o := startOracle(b)
	src := iqBenchMatrix()
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			var wall, cpu time.Duration
			if typ.NeedsImportance() {
				wall, cpu = o.timeQuantizeImatrix(b, typ, src, iqBenchRowLen, iqBenchImportance(), b.N)
			} else {
				wall, cpu = o.timeQuantize(b, typ, src, iqBenchRowLen, b.N)
			}
			reportGGML(b, 4*float64(len(src))*float64(b.N), wall.Seconds(), cpu.Seconds())
		})
	}
}

// BenchmarkGGMLIQQuantizeImatrix is BenchmarkGGMLIQQuantize with the
// importance matrix.
func BenchmarkGGMLIQQuantizeImatrix(b *testing.B) {
	o := startOracle(b)
	src := iqBenchMatrix()
	imp := iqBenchImportance()
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			wall, cpu := o.timeQuantizeImatrix(b, typ, src, iqBenchRowLen, imp, b.N)
			reportGGML(b, 4*float64(len(src))*float64(b.N), wall.Seconds(), cpu.Seconds())
		})
	}
}

// BenchmarkGGMLIQDequantize times ggml's to_float; ggml-MB/s counts the
// quantized bytes.
func BenchmarkGGMLIQDequantize(b *testing.B) {
	o := startOracle(b)
	src := iqBenchMatrix()
	imp := iqBenchImportance()
	for _, typ := range iqTypes {
		b.Run(typ.String(), func(b *testing.B) {
			q := make([]byte, iqBenchRows*typ.TypeSize()*iqBenchRowLen/qkK)
			if err := QuantizeRefWeighted(typ, q, src, iqBenchRowLen, imp); err != nil {
				b.Fatal(err)
			}
			wall, cpu := o.timeDequantize(b, typ, q, iqBenchRows, iqBenchRowLen, b.N)
			reportGGML(b, float64(len(q))*float64(b.N), wall.Seconds(), cpu.Seconds())
		})
	}
}

func reportGGML(b *testing.B, bytes, wall, cpu float64) {
	b.ReportMetric(bytes/wall/1e6, "ggml-MB/s")
	b.ReportMetric(bytes/cpu/1e6, "ggml-cpu-MB/s")
}
