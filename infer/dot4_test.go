package infer

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDot4BitIdentical checks that dot4 and dot8 (SSE on amd64) give
// exactly the bits of calls of dot, for lengths with and without a tail, values of
// mixed magnitudes, and subnormal products.
func TestDot4BitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	val := func() float32 {
		v := float32(r.NormFloat64()) * float32(math.Pow(10, float64(r.IntN(9)-4)))
		if r.IntN(50) == 0 {
			v *= 1e-36 // subnormal products
		}
		return v
	}
	for n := 0; n <= 300; n++ {
		for range 3 {
			w := make([]float32, n)
			var xs [4][]float32
			for i := range w {
				w[i] = val()
			}
			for k := range xs {
				xs[k] = make([]float32, n+r.IntN(3)) // longer inputs are cut to len(w)
				for i := range xs[k] {
					xs[k][i] = val()
				}
			}
			x8 := make([]float32, 0, 8*(n+2))
			for range 2 {
				for k := range xs {
					x8 = append(x8, xs[k][:n]...)
					x8 = append(x8, 7, 7) // stride n+2: values beyond len(w) must not count
				}
			}
			var got8 [8]float32
			dot8(w, x8, n+2, &got8)
			for k := range got8 {
				if want := dot(w, xs[k%4][:n]); math.Float32bits(got8[k]) != math.Float32bits(want) {
					t.Fatalf("n=%d token %d: dot8 %g, dot %g", n, k, got8[k], want)
				}
			}
			got := [4]float32{}
			got[0], got[1], got[2], got[3] = dot4(w, xs[0], xs[1], xs[2], xs[3])
			for k := range xs {
				if want := dot(w, xs[k]); math.Float32bits(got[k]) != math.Float32bits(want) {
					t.Fatalf("n=%d token %d: dot4 %g (%#x), dot %g (%#x)", n, k, got[k], math.Float32bits(got[k]), want, math.Float32bits(want))
				}
			}
		}
	}
}
