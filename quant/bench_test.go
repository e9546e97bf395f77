package quant

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// The benchmark matrix: 4096 rows of 11008 (a LLaMA-7B FFN weight), Gaussian
// values with sparse large outliers, generated once outside the timers.
// 11008 = 43·256 fits every type.
const (
	benchRows   = 4096
	benchRowLen = 11008
)

var benchMatrix = sync.OnceValue(func() []float32 {
	return gaussianOutliers(rand.New(rand.NewPCG(2024, 11008)), benchRows*benchRowLen, 0.02, 0.001, 30)
})

func benchRowSize(b *testing.B, typ Type) int {
	rs, err := typ.RowSize(benchRowLen)
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

// cpuMeter reports, next to the wall-clock MB/s of SetBytes, the throughput
// by process CPU time ("cpu-MB/s"), which load from other processes on a
// shared machine does not distort, and elements per second.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	d, ok := processCPUTime()
	return cpuMeter{d, ok}
}

func (m cpuMeter) report(b *testing.B, bytes, elems int) {
	b.ReportMetric(float64(elems)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
	if end, ok := processCPUTime(); ok && m.ok && end > m.start {
		b.ReportMetric(float64(bytes)*float64(b.N)/(end-m.start).Seconds()/1e6, "cpu-MB/s")
	}
}

// BenchmarkQuantizeRef measures QuantizeRef on one goroutine; MB/s counts
// the float32 input bytes.
func BenchmarkQuantizeRef(b *testing.B) {
	src := benchMatrix()
	for _, typ := range Types() {
		if isIQ(typ) {
			continue // BenchmarkIQ*: a smaller matrix, and an imatrix where ggml needs one
		}
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, benchRows*benchRowSize(b, typ))
			b.SetBytes(int64(4 * len(src)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := QuantizeRef(typ, dst, src, benchRowLen); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, 4*len(src), len(src))
		})
	}
}

// BenchmarkDequantize measures Dequantize on one goroutine; MB/s counts the
// quantized input bytes.
func BenchmarkDequantize(b *testing.B) {
	src := benchMatrix()
	for _, typ := range Types() {
		if isIQ(typ) {
			continue // BenchmarkIQ*: a smaller matrix, and an imatrix where ggml needs one
		}
		b.Run(typ.String(), func(b *testing.B) {
			q := make([]byte, benchRows*benchRowSize(b, typ))
			if err := QuantizeRef(typ, q, src, benchRowLen); err != nil {
				b.Fatal(err)
			}
			dst := make([]float32, len(src))
			b.SetBytes(int64(len(q)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := Dequantize(typ, dst, q, benchRowLen); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, len(q), len(src))
		})
	}
}

// BenchmarkGGMLQuantize times llama.cpp's ggml_quantize_chunk on the same
// matrix, single-threaded, inside the oracle process (so the pipe transfer is
// not counted): ggml-MB/s by wall clock, ggml-cpu-MB/s by thread CPU time,
// both of float32 input. Its own ns/op includes the transfer; read the
// custom metrics. Skipped without the oracle.
func BenchmarkGGMLQuantize(b *testing.B) {
	o := startOracle(b)
	src := benchMatrix()
	for _, typ := range Types() {
		if isIQ(typ) {
			continue // BenchmarkIQ*: a smaller matrix, and an imatrix where ggml needs one
		}
		b.Run(typ.String(), func(b *testing.B) {
			wall, cpu := o.timeQuantize(b, typ, src, benchRowLen, b.N)
			bytes := 4 * float64(len(src)) * float64(b.N)
			b.ReportMetric(bytes/wall.Seconds()/1e6, "ggml-MB/s")
			b.ReportMetric(bytes/cpu.Seconds()/1e6, "ggml-cpu-MB/s")
		})
	}
}

// BenchmarkGGMLDequantize is BenchmarkGGMLQuantize for ggml's to_float;
// ggml-MB/s counts the quantized input bytes.
func BenchmarkGGMLDequantize(b *testing.B) {
	o := startOracle(b)
	src := benchMatrix()
	for _, typ := range Types() {
		if isIQ(typ) {
			continue // BenchmarkIQ*: a smaller matrix, and an imatrix where ggml needs one
		}
		if typ == F32 {
			continue // ggml-base has no to_float for F32
		}
		b.Run(typ.String(), func(b *testing.B) {
			q := make([]byte, benchRows*benchRowSize(b, typ))
			if err := QuantizeRef(typ, q, src, benchRowLen); err != nil {
				b.Fatal(err)
			}
			wall, cpu := o.timeDequantize(b, typ, q, benchRows, benchRowLen, b.N)
			bytes := float64(len(q)) * float64(b.N)
			b.ReportMetric(bytes/wall.Seconds()/1e6, "ggml-MB/s")
			b.ReportMetric(bytes/cpu.Seconds()/1e6, "ggml-cpu-MB/s")
		})
	}
}
