//go:build !amd64

package infer

// dot4Lanes computes the four interleaved partial sums of dot for one
// weight row w and four token rows over the first n values (n a multiple
// of 4, at most every slice's length): acc[4k+j] is token k's partial sum
// s_j. This is the portable version of the amd64 assembly.
func dot4Lanes(w, x0, x1, x2, x3 []float32, n int, acc *[16]float32) {
	*acc = [16]float32{}
	for k, x := range [4][]float32{x0, x1, x2, x3} {
		for i := 0; i+4 <= n; i += 4 {
			for j := range 4 {
				acc[4*k+j] += float32(w[i+j] * x[i+j])
			}
		}
	}
}

// dot8Lanes is dot4Lanes for eight tokens whose rows start stride values
// apart in x (token k's row is x[k*stride:]), n a multiple of 4 and
// len(x) ≥ 7*stride+n: acc[4k+j] is token k's partial sum s_j.
func dot8Lanes(w, x []float32, stride, n int, acc *[32]float32) {
	*acc = [32]float32{}
	for k := range 8 {
		xk := x[k*stride : k*stride+n]
		for i := 0; i+4 <= n; i += 4 {
			for j := range 4 {
				acc[4*k+j] += float32(w[i+j] * xk[i+j])
			}
		}
	}
}
