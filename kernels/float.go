package kernels

import "fmt"

// tileAcc is the number of lanes of one tile: three rows by four tokens
// of eight lanes.
const tileAcc = 3 * 4 * 8

// kChunkF32 is the number of columns a tile works through at a time.
const kChunkF32 = 512

// lanes8 is the eight partial sums of a dot product.
type lanes8 = [8]float32

// reduce8 adds eight lanes in the fixed order of every kernel:
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), which is what the assembly's
// extract-high-half, move-high-pair, shuffle sequence computes.
func reduce8(l *lanes8) float32 {
	v0, v1, v2, v3 := l[0]+l[4], l[1]+l[5], l[2]+l[6], l[3]+l[7]
	return (v0 + v2) + (v1 + v3)
}

// dotF32Lanes accumulates lane j ← fma(w[i], x[i], lane j) for i ≡ j
// (mod 8), i < n, in increasing i; n is a multiple of 8.
func dotF32Lanes(w, x []float32, n int, l *lanes8) {
	w, x = w[:n], x[:n]
	for i := 0; i < n; i += 8 {
		for j := range 8 {
			l[j] = fma32(w[i+j], x[i+j], l[j])
		}
	}
}

// DotF32 returns Σ w[i]·x[i] over len(w) values (x at least as long): eight
// fused multiply-add lanes over the first multiple of 8 values (lane i mod
// 8), reduced with reduce8, then one fused multiply-add per remaining
// value. Every kernel of this package that multiplies float32 rows computes
// exactly this value.
func DotF32(w, x []float32) float32 { return dotF32(w, x, HasAVX2) }

// dotF32 is DotF32 with the assembly kernel (asm) or the portable loop.
func dotF32(w, x []float32, asm bool) float32 {
	n := len(w)
	x = x[:n]
	n8 := n &^ 7
	var l lanes8
	if asm && n8 > 0 {
		tileF32(&w[0], 0, &x[0], 0, n8, 1, 1, l[:])
	} else {
		dotF32Lanes(w, x, n8, &l)
	}
	s := reduce8(&l)
	for i := n8; i < n; i++ {
		s = fma32(w[i], x[i], s)
	}
	return s
}

// MatF32 computes dst[t*dstStride+r] = DotF32(w[r*C:(r+1)*C], x[t*C:(t+1)*C])
// for r < rows and t < T: a block of weight rows against T token rows.
// The assembly kernel works on tiles of three rows by four tokens; every
// output is bit-identical to DotF32 whatever the tiling.
func MatF32(dst []float32, dstStride int, w []float32, rows, C int, x []float32, T int) error {
	return matF32(dst, dstStride, w, rows, C, x, T, HasAVX2)
}

// matF32 is MatF32 with the assembly kernels (asm) or the portable loops.
func matF32(dst []float32, dstStride int, w []float32, rows, C int, x []float32, T int, asm bool) error {
	if rows < 0 || T < 0 || C <= 0 || len(w) < rows*C || len(x) < T*C || (T > 0 && rows > 0 && len(dst) < (T-1)*dstStride+rows) {
		return fmt.Errorf("kernels: f32 matmul of %d rows × %d tokens (%d columns): buffers too small (w %d, x %d, dst %d)", rows, T, C, len(w), len(x), len(dst))
	}
	if rows == 0 || T == 0 {
		return nil
	}
	n8 := C &^ 7
	groups := (rows + 2) / 3
	acc := make([]float32, groups*tileAcc)
	for t := 0; t < T; t += 4 {
		nt := min(4, T-t)
		clear(acc)
		if asm && n8 > 0 {
			// Chunks of the columns keep the four token rows in L1 while
			// every weight row of the block streams past them; each lane
			// still adds its products in increasing column order.
			for k0 := 0; k0 < n8; k0 += kChunkF32 {
				kn := min(kChunkF32, n8-k0)
				for r := 0; r < rows; r += 3 {
					tileF32(&w[r*C+k0], C, &x[t*C+k0], C, kn, min(3, rows-r), nt, acc[(r/3)*tileAcc:])
				}
			}
		} else {
			for r := range rows {
				for k := range nt {
					dotF32Lanes(w[r*C:], x[(t+k)*C:], n8, (*lanes8)(acc[(r/3)*tileAcc+(r%3*4+k)*8:]))
				}
			}
		}
		for r := range rows {
			wr := w[r*C : (r+1)*C]
			for k := range nt {
				xt := x[(t+k)*C : (t+k+1)*C]
				s := reduce8((*lanes8)(acc[(r/3)*tileAcc+(r%3*4+k)*8:]))
				for c := n8; c < C; c++ {
					s = fma32(wr[c], xt[c], s)
				}
				dst[(t+k)*dstStride+r] = s
			}
		}
	}
	return nil
}

// AxpyF32 sets dst[i] = fma(a, x[i], dst[i]) for i < len(dst) (x at least
// as long): one rounding per element, so the result does not depend on
// the vector width.
func AxpyF32(dst []float32, a float32, x []float32) { axpyF32(dst, a, x, HasAVX2) }

func axpyF32(dst []float32, a float32, x []float32, asm bool) {
	n := len(dst)
	x = x[:n]
	n8 := 0
	if asm {
		n8 = n &^ 7
		if n8 > 0 {
			axpy8(&dst[0], a, &x[0], n8)
		}
	}
	for i := n8; i < n; i++ {
		dst[i] = fma32(a, x[i], dst[i])
	}
}
