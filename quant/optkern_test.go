package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGridStatsAsm checks that the assembly kernels give gridStatsGo's
// levels and sums, and gridErr its error, bit for bit on random blocks and grids (levels clamped at
// both ends, zero weights, symmetric and asymmetric grids).
func TestGridStatsAsm(t *testing.T) {
	if !useGridAsm {
		t.Skip("no AVX2: only the portable kernel runs here")
	}
	rng := rand.New(rand.NewPCG(5, 8))
	for trial := 0; trial < 20000; trial++ {
		n := 8 * (1 + rng.IntN(4))
		x, w := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * math.Exp(rng.NormFloat64()))
			if rng.IntN(8) > 0 {
				w[i] = float32(rng.ExpFloat64())
			}
		}
		qmax := float32([]int{3, 7, 15, 31, 63, 255}[rng.IntN(6)])
		c := gridParams{e: float32(rng.ExpFloat64() * 0.3), qmax: qmax, bias: 0.5}
		if rng.IntN(2) == 0 {
			c.qoff = float32(math.Floor(float64(qmax+1) / 2))
			c.bias = c.qoff + 0.5
		} else {
			c.off = float32(rng.ExpFloat64())
		}
		c.ie = float32(1/float64(c.e)) * float32(0.8+0.4*rng.Float64())
		var sa, sg gridSums
		la, lg := make([]int32, n), make([]int32, n)
		gridStats8(&x[0], &w[0], n, &c, &sa, &la[0])
		gridStatsGo(x, w, &c, &sg, lg)
		for i := range la {
			if la[i] != lg[i] {
				t.Fatalf("trial %d: level %d: asm %d, Go %d (x %g, grid %+v)", trial, i, la[i], lg[i], x[i], c)
			}
		}
		for j := range sa {
			if math.Float32bits(sa[j]) != math.Float32bits(sg[j]) {
				t.Fatalf("trial %d: sum %d: asm %g, Go %g (grid %+v)", trial, j, sa[j], sg[j], c)
			}
		}
		ea, eg := gridErr8(&x[0], &w[0], n, &c), gridErrGo(x, w, &c)
		if math.Float32bits(ea) != math.Float32bits(sg[0]) || math.Float32bits(eg) != math.Float32bits(sg[0]) {
			t.Fatalf("trial %d: gridErr asm %g, Go %g, gridStats %g (grid %+v)", trial, ea, eg, sg[0], c)
		}
	}
}

// BenchmarkGridStats times one pass over a sub-block of 32 (the Q4_K and
// Q5_K sub-block) with the kernel in use and with the portable one.
//
//	go test ./quant -run '^$' -bench GridStats -cpu 1
func BenchmarkGridStats(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x, w := make([]float32, 32), make([]float32, 32)
	for i := range x {
		x[i], w[i] = float32(rng.NormFloat64()), float32(rng.ExpFloat64())
	}
	c := gridParams{off: 2, ie: 4, bias: 0.5, qmax: 15, e: 0.25}
	L := make([]int32, 32)
	var s gridSums
	b.Run("kernel", func(b *testing.B) {
		b.SetBytes(4 * 32)
		for range b.N {
			gridStats(x, w, &c, &s, L)
		}
	})
	b.Run("err", func(b *testing.B) {
		b.SetBytes(4 * 32)
		for range b.N {
			s[0] = gridErr(x, w, &c)
		}
	})
	b.Run("go", func(b *testing.B) {
		b.SetBytes(4 * 32)
		for range b.N {
			gridStatsGo(x, w, &c, &s, L)
		}
	})
}
