package kernels

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exactFMA32 rounds a·b+c once to float32 with big-float arithmetic.
func exactFMA32(a, b, c float32) float32 {
	var x, y, z big.Float
	x.SetFloat64(float64(a))
	y.SetFloat64(float64(b))
	z.SetFloat64(float64(c))
	x.SetPrec(1000).Mul(&x, &y)
	x.Add(&x, &z)
	f, _ := x.Float32()
	return f
}

func TestFMA32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(a, b, c float32) {
		t.Helper()
		got, want := fma32(a, b, c), exactFMA32(a, b, c)
		if math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%08x), want %g (%08x)", a, b, c, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
	for range 200000 {
		a := float32(rng.NormFloat64())
		b := float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
		c := float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
		check(a, b, c)
	}
	// Ties: c a float32, a·b exactly half an ulp of c plus a tiny residue.
	for range 20000 {
		c := float32(1 + rng.Float64())
		half := math.Exp2(-24) // half an ulp of c in [1, 2)
		a := float32(half * float64(1+rng.IntN(3)))
		b := float32(1 + float64(rng.IntN(4))*math.Exp2(-23))
		check(a, b, c)
		check(-a, b, c)
		check(a, -b, -c)
	}
	// Near and below the smallest normal float32.
	for range 20000 {
		a := float32(rng.NormFloat64() * 1e-20)
		b := float32(rng.NormFloat64() * 1e-19)
		c := float32(rng.NormFloat64() * 1e-38)
		check(a, b, c)
	}
	for _, v := range [][3]float32{{0, 0, 0}, {float32(math.Inf(1)), 1, 0}, {math.MaxFloat32, 2, 0}, {-0.0, 1, 0}} {
		check(v[0], v[1], v[2])
	}
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestDotF32Lanes checks the portable dot product against its definition
// in float64 and the assembly against the portable code, bit for bit.
func TestDotF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= 300; n++ {
		w, x := randFloats(rng, n), randFloats(rng, n)
		ref := dotF32(w, x, false)
		var exact, mag float64
		for i := range w {
			exact += float64(w[i]) * float64(x[i])
			mag += math.Abs(float64(w[i]) * float64(x[i]))
		}
		if d := math.Abs(float64(ref) - exact); d > 1e-6*mag+1e-30 {
			t.Fatalf("n=%d: dot %g, exact %g (Σ|wx| %g)", n, ref, exact, mag)
		}
		if HasAVX2 {
			if got := dotF32(w, x, true); math.Float32bits(got) != math.Float32bits(ref) {
				t.Fatalf("n=%d: assembly %g, portable %g", n, got, ref)
			}
		}
	}
}

// TestMatF32 checks that every output of the tiled matmul equals DotF32
// of its row and token, for shapes that exercise every tile and edge.
func TestMatF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, C := range []int{1, 7, 8, 31, 64, 100} {
		for rows := 1; rows <= 8; rows++ {
			for T := 1; T <= 9; T++ {
				w, x := randFloats(rng, rows*C), randFloats(rng, T*C)
				stride := rows + 3
				for _, asm := range []bool{false, true} {
					if asm && !HasAVX2 {
						continue
					}
					dst := make([]float32, T*stride)
					if err := matF32(dst, stride, w, rows, C, x, T, asm); err != nil {
						t.Fatal(err)
					}
					for tk := range T {
						for r := range rows {
							want := dotF32(w[r*C:(r+1)*C], x[tk*C:(tk+1)*C], false)
							if got := dst[tk*stride+r]; math.Float32bits(got) != math.Float32bits(want) {
								t.Fatalf("C=%d rows=%d T=%d asm=%v: out[%d][%d] = %g, want %g", C, rows, T, asm, tk, r, got, want)
							}
						}
					}
				}
			}
		}
	}
	if err := MatF32(make([]float32, 3), 3, make([]float32, 4), 2, 2, make([]float32, 4), 2); err == nil {
		t.Fatal("short dst accepted")
	}
}

// benchMatF32 reports GFLOP/s of a rows×C weight block against T tokens.
func benchMatF32(b *testing.B, rows, C, T int, asm bool) {
	rng := rand.New(rand.NewPCG(7, 8))
	w, x := randFloats(rng, rows*C), randFloats(rng, T*C)
	dst := make([]float32, T*rows)
	b.ResetTimer()
	for b.Loop() {
		if err := matF32(dst, rows, w, rows, C, x, T, asm); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(rows*C*T)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkMatF32(b *testing.B) {
	for _, bc := range []struct {
		name       string
		rows, C, T int
	}{{"48x4096x256", 48, 4096, 256}, {"15x4096x256", 15, 4096, 256}, {"30x4096x256", 30, 4096, 256}, {"48x4096x1", 48, 4096, 1}} {
		b.Run(bc.name+"/asm", func(b *testing.B) {
			if !HasAVX2 {
				b.Skip("no AVX2")
			}
			benchMatF32(b, bc.rows, bc.C, bc.T, true)
		})
		b.Run(bc.name+"/go", func(b *testing.B) { benchMatF32(b, bc.rows, bc.C, bc.T, false) })
	}
}

func TestAxpyF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := 0; n <= 70; n++ {
		x, d0 := randFloats(rng, n), randFloats(rng, n)
		a := float32(rng.NormFloat64())
		ref := append([]float32(nil), d0...)
		axpyF32(ref, a, x, false)
		for i := range ref {
			if want := exactFMA32(a, x[i], d0[i]); math.Float32bits(ref[i]) != math.Float32bits(want) {
				t.Fatalf("n=%d: portable axpy[%d] = %g, want %g", n, i, ref[i], want)
			}
		}
		if HasAVX2 {
			got := append([]float32(nil), d0...)
			axpyF32(got, a, x, true)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("n=%d: assembly axpy[%d] = %g, portable %g", n, i, got[i], ref[i])
				}
			}
		}
	}
}

// TestHalf checks the F16C conversions against the portable ones for
// every half value and rounding of random and tie values.
func TestHalf(t *testing.T) {
	if !HasAVX2 {
		t.Skip("no AVX2/F16C")
	}
	src := make([]byte, 2*65536)
	for h := range 65536 {
		src[2*h], src[2*h+1] = byte(h), byte(h>>8)
	}
	a, b := make([]float32, 65536), make([]float32, 65536)
	halfRow(a, src, true)
	halfRow(b, src, false)
	for h := range a {
		if math.Float32bits(a[h]) != math.Float32bits(b[h]) && !(a[h] != a[h] && b[h] != b[h]) {
			t.Fatalf("half %#04x: F16C %g, portable %g", h, a[h], b[h])
		}
	}
	rng := rand.New(rand.NewPCG(31, 32))
	x := randFloats(rng, 100003)
	for i := range x {
		switch i % 3 {
		case 1:
			x[i] = float32(float64(x[i]) * math.Exp2(float64(rng.IntN(60)-40)))
		case 2: // a tie between two halves
			x[i] = float32((1 + float64(rng.IntN(1024))/1024 + 1.0/2048) * math.Exp2(float64(rng.IntN(30)-15)))
		}
	}
	y := append([]float32(nil), x...)
	roundF16(x, true)
	roundF16(y, false)
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			t.Fatalf("value %d: F16C rounding %g, portable %g", i, x[i], y[i])
		}
	}
}
