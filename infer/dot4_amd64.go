package infer

// dot4Lanes computes the four interleaved partial sums of dot for one
// weight row w and four token rows over the first n values (n a multiple
// of 4, at most every slice's length), with SSE: acc[4k+j] is token k's
// partial sum s_j. The products and sums are the same IEEE float32
// operations in the same order as dot's, so the results are bit-identical
// to the portable loop in dot4_other.go.
//
//go:noescape
func dot4Lanes(w, x0, x1, x2, x3 []float32, n int, acc *[16]float32)

// dot8Lanes is dot4Lanes for eight tokens whose rows start stride values
// apart in x (token k's row is x[k*stride:]), n a multiple of 4 and
// len(x) ≥ 7*stride+n: acc[4k+j] is token k's partial sum s_j.
//
//go:noescape
func dot8Lanes(w, x []float32, stride, n int, acc *[32]float32)
