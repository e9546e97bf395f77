package quant

import "math"

// The inner loop of the optimised searches: put every element of a
// (sub-)block on a uniform grid of levels and accumulate, in one pass, the
// weighted error and the sums a least-squares refit of the grid needs.
// gridStats has an AVX assembly version (optkern_amd64.s, used when the CPU
// has AVX2, fixed at start-up) and the portable gridStatsGo below, which
// computes the same float32 operations in the same order, so the two give
// identical results (TestGridStatsAsm).

// gridParams describes one grid. Element v gets the stored level
//
//	u = min(max(floor(float32(v+off)·ie + bias), 0), qmax)
//
// and the reconstruction x̂ = float32(e·(u − qoff)) − off, as the K-quant
// decoders compute it (for the symmetric types off = 0 and bias = qoff + ½;
// for the types with mins qoff = 0 and bias = ½).
type gridParams struct {
	off, ie, bias, qmax, e, qoff float32
}

// gridSums are the float32 sums of one pass, with l = u − qoff:
// Σ w·(x̂ − x)², Σ w·l, Σ w·l², Σ w·l·x.
type gridSums [4]float32

// useGridAsm says whether gridStats runs the assembly kernel.
var useGridAsm = gridAsmAvailable()

// gridStats fills s for x (and weights w, len(w) ≥ len(x)) on the grid c and
// stores the stored levels u in L (len(L) ≥ len(x)).
func gridStats(x, w []float32, c *gridParams, s *gridSums, L []int32) {
	n := len(x)
	if useGridAsm && n > 0 && n%8 == 0 {
		_, _ = w[n-1], L[n-1]
		gridStats8(&x[0], &w[0], n, c, s, &L[0])
		return
	}
	gridStatsGo(x, w, c, s, L)
}

// gridStatsGo is the portable gridStats: eight lanes (element i in lane
// i mod 8) reduced as the assembly does.
func gridStatsGo(x, w []float32, c *gridParams, s *gridSums, L []int32) {
	var acc [4][8]float32
	w, L = w[:len(x)], L[:len(x)]
	for i, v := range x {
		f := float32(float32(v+c.off)*c.ie) + c.bias
		u := min(max(float32(math.Floor(float64(f))), 0), c.qmax)
		L[i] = int32(u)
		l := u - c.qoff
		d := float32(float32(c.e*l)-c.off) - v
		wl := float32(w[i] * l)
		k := i & 7
		acc[0][k] += float32(float32(w[i]*d) * d)
		acc[1][k] += wl
		acc[2][k] += float32(wl * l)
		acc[3][k] += float32(wl * v)
	}
	for j := range acc {
		a := &acc[j]
		s0, s1, s2, s3 := a[0]+a[4], a[1]+a[5], a[2]+a[6], a[3]+a[7]
		s[j] = (s0 + s2) + (s1 + s3)
	}
}

// gridErr is gridStats's error alone (s[0]), without the levels and the
// other sums: the coordinate descent's trial grids need nothing else.
func gridErr(x, w []float32, c *gridParams) float32 {
	n := len(x)
	if useGridAsm && n > 0 && n%8 == 0 {
		_ = w[n-1]
		return gridErr8(&x[0], &w[0], n, c)
	}
	return gridErrGo(x, w, c)
}

// gridErrGo is the portable gridErr, the error of gridStatsGo.
func gridErrGo(x, w []float32, c *gridParams) float32 {
	var acc [8]float32
	w = w[:len(x)]
	for i, v := range x {
		f := float32(float32(v+c.off)*c.ie) + c.bias
		u := min(max(float32(math.Floor(float64(f))), 0), c.qmax)
		d := float32(float32(c.e*(u-c.qoff))-c.off) - v
		acc[i&7] += float32(float32(w[i]*d) * d)
	}
	s0, s1, s2, s3 := acc[0]+acc[4], acc[1]+acc[5], acc[2]+acc[6], acc[3]+acc[7]
	return (s0 + s2) + (s1 + s3)
}
