package kernels

const asmAvailable = true

// tileF32 computes the eight fma lanes of rows × toks dot products
// (rows ≤ 3, toks ≤ 4) over the first n values (n a positive multiple of
// 8): weight row i starts at w + i·ws values, token k's row at x + k·xs
// values, and acc[(i*4+k)*8 : +8] holds the lanes of row i, token k, which
// the kernel continues.
// The caller guarantees every row has n values.
func tileF32(w *float32, ws int, x *float32, xs int, n, rows, toks int, acc []float32) {
	_ = acc[(rows-1)*32+(toks-1)*8+7]
	switch {
	case rows == 3 && toks == 4:
		f32Tile3x4(w, ws*4, x, xs*4, n, &acc[0])
	case rows == 3 && toks == 1:
		f32Tile3x1(w, ws*4, x, xs*4, n, &acc[0])
	case toks == 4:
		for i := range rows {
			f32Tile1x4(ptrAdd(w, i*ws), 0, x, xs*4, n, &acc[i*32])
		}
	default:
		for i := range rows {
			for k := range toks {
				f32Tile1x1(ptrAdd(w, i*ws), ptrAdd(x, k*xs), n, &acc[(i*4+k)*8])
			}
		}
	}
}

// f32Tile3x4 is the three-rows-by-four-tokens kernel; ws and xs are the
// strides in bytes.
//
//go:noescape
func f32Tile3x4(w *float32, ws int, x *float32, xs int, n int, acc *float32)

// f32Tile1x4 is the one-row-by-four-tokens kernel (ws unused).
//
//go:noescape
func f32Tile1x4(w *float32, ws int, x *float32, xs int, n int, acc *float32)

// f32Tile3x1 is the three-rows-by-one-token kernel (xs unused).
//
//go:noescape
func f32Tile3x1(w *float32, ws int, x *float32, xs int, n int, acc *float32)

// f32Tile1x1 is the one-row-one-token kernel.
//
//go:noescape
func f32Tile1x1(w *float32, x *float32, n int, acc *float32)

// axpy8 is AxpyF32 over n values, n a positive multiple of 8.
//
//go:noescape
func axpy8(dst *float32, a float32, x *float32, n int)

// halfToFloat8 widens n halves (n a positive multiple of 8).
//
//go:noescape
func halfToFloat8(dst *float32, src *uint16, n int)

// roundHalf8 rounds n values to halves in place (n a positive multiple of 8).
//
//go:noescape
func roundHalf8(x *float32, n int)
