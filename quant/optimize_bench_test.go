package quant

import "testing"

// optBenchTypes are the types Quantize searches (for the others it is
// QuantizeRef).
var optBenchTypes = []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, TQ1_0, TQ2_0}

// BenchmarkQuantizeOpt measures the optimised Quantize (no importance) on
// the 4096 × 11008 benchmark matrix, one goroutine; MB/s counts the float32
// input bytes. Each iteration takes seconds: run with -benchtime 1x.
//
//	go test ./quant -run '^$' -bench 'QuantizeOpt|DequantizeOpt' -benchtime 1x -cpu 1
func BenchmarkQuantizeOpt(b *testing.B) {
	src := benchMatrix()
	for _, typ := range optBenchTypes {
		b.Run(typ.String(), func(b *testing.B) {
			dst := make([]byte, benchRows*benchRowSize(b, typ))
			b.SetBytes(int64(4 * len(src)))
			b.ResetTimer()
			m := startCPU()
			for range b.N {
				if err := Quantize(typ, dst, src, benchRowLen, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			m.report(b, 4*len(src), len(src))
		})
	}
}

// BenchmarkDequantizeOpt measures Dequantize of the optimised quantizers'
// output (the decoder is the same as for the reference bytes); MB/s counts
// the quantized input bytes.
func BenchmarkDequantizeOpt(b *testing.B) {
	src := benchMatrix()
	for _, typ := range optBenchTypes {
		b.Run(typ.String(), func(b *testing.B) {
			q := make([]byte, benchRows*benchRowSize(b, typ))
			if err := Quantize(typ, q, src, benchRowLen, nil); err != nil {
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
