package infer

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ohms-project/adaptq/kernels"
	"github.com/ohms-project/adaptq/quant"
)

// Linear is the weight of a linear layer, a matrix W of shape [Rows, Cols]
// in Hugging Face layout (y = W·x, one row per output feature).
//
// The forward pass only ever asks for a block of consecutive rows, expanded
// to float32, so that a quantized weight can be dequantized a row block at a
// time into a caller-owned buffer and is never expanded whole. Rows of the
// matrix are independent of each other.
type Linear interface {
	// Rows is the number of output features.
	Rows() int
	// Cols is the number of input features.
	Cols() int
	// RowBlock returns rows [first, first+n) as n*Cols() float32 values,
	// row-major. buf has room for n*Cols() values and may be used to hold
	// them; an implementation that already stores float32 rows may instead
	// return a view of its own storage. The result is read-only and is only
	// valid until buf is reused. RowBlock must be safe for concurrent use
	// with distinct buffers.
	RowBlock(first, n int, buf []float32) ([]float32, error)
}

// Dense is a Linear held as float32 values in memory.
type Dense struct {
	rows, cols int
	data       []float32
}

// NewDense wraps data, row-major of shape [rows, cols], as a Linear. The
// slice is used as is, not copied.
func NewDense(rows, cols int, data []float32) (*Dense, error) {
	if rows <= 0 || cols <= 0 || len(data) != rows*cols {
		return nil, fmt.Errorf("infer: dense weight of shape [%d %d] needs %d values, has %d", rows, cols, rows*cols, len(data))
	}
	return &Dense{rows: rows, cols: cols, data: data}, nil
}

// Rows is the number of output features.
func (d *Dense) Rows() int { return d.rows }

// Cols is the number of input features.
func (d *Dense) Cols() int { return d.cols }

// Data returns the backing row-major values (not a copy).
func (d *Dense) Data() []float32 { return d.data }

// RowBlock returns a view of rows [first, first+n); buf is not used.
func (d *Dense) RowBlock(first, n int, _ []float32) ([]float32, error) {
	if first < 0 || n < 0 || first+n > d.rows {
		return nil, fmt.Errorf("infer: rows [%d, %d) out of range of a [%d %d] weight", first, first+n, d.rows, d.cols)
	}
	return d.data[first*d.cols : (first+n)*d.cols : (first+n)*d.cols], nil
}

// dot returns Σ a[i]·b[i] over len(a) values. The order of the additions is
// fixed (four interleaved partial sums, then the tail into the first one)
// and every product is rounded to float32 before it is added (the explicit
// conversion forbids fusing into an FMA), so the result is bit-identical
// wherever it is called from. dot2 and dot4 must keep the same order per
// output.
func dot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		u, v := a[i:i+4:i+4], b[i:i+4:i+4]
		s0 += float32(u[0] * v[0])
		s1 += float32(u[1] * v[1])
		s2 += float32(u[2] * v[2])
		s3 += float32(u[3] * v[3])
	}
	for ; i < n; i++ {
		s0 += float32(a[i] * b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dot2 returns dot(w, x0) and dot(w, x1) with exactly the same rounding as
// two calls of dot, loading w once.
func dot2(w, x0, x1 []float32) (float32, float32) {
	n := len(w)
	x0, x1 = x0[:n], x1[:n]
	var a0, a1, a2, a3, b0, b1, b2, b3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		wv, u, v := w[i:i+4:i+4], x0[i:i+4:i+4], x1[i:i+4:i+4]
		w0, w1, w2, w3 := wv[0], wv[1], wv[2], wv[3]
		a0 += float32(w0 * u[0])
		a1 += float32(w1 * u[1])
		a2 += float32(w2 * u[2])
		a3 += float32(w3 * u[3])
		b0 += float32(w0 * v[0])
		b1 += float32(w1 * v[1])
		b2 += float32(w2 * v[2])
		b3 += float32(w3 * v[3])
	}
	for ; i < n; i++ {
		a0 += float32(w[i] * x0[i])
		b0 += float32(w[i] * x1[i])
	}
	return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)
}

// dot4 returns dot(w, x0), …, dot(w, x3) with exactly the same rounding
// as four calls of dot: dot4Lanes (SSE on amd64) forms the four partial
// sums of each over the first multiple of 4 values, the tail is added to
// the first partial sum, and the partial sums are combined as dot does.
func dot4(w, x0, x1, x2, x3 []float32) (float32, float32, float32, float32) {
	n := len(w)
	x0, x1, x2, x3 = x0[:n], x1[:n], x2[:n], x3[:n]
	n4 := n &^ 3
	var acc [16]float32
	dot4Lanes(w, x0, x1, x2, x3, n4, &acc)
	for i := n4; i < n; i++ {
		acc[0] += float32(w[i] * x0[i])
		acc[4] += float32(w[i] * x1[i])
		acc[8] += float32(w[i] * x2[i])
		acc[12] += float32(w[i] * x3[i])
	}
	return (acc[0] + acc[1]) + (acc[2] + acc[3]),
		(acc[4] + acc[5]) + (acc[6] + acc[7]),
		(acc[8] + acc[9]) + (acc[10] + acc[11]),
		(acc[12] + acc[13]) + (acc[14] + acc[15])
}

// dot8 writes dot(w, x[k*stride:k*stride+len(w)]) for k < 8 to out[k],
// with exactly the rounding of dot (see dot4).
func dot8(w, x []float32, stride int, out *[8]float32) {
	n := len(w)
	x = x[:7*stride+n]
	n4 := n &^ 3
	var acc [32]float32
	dot8Lanes(w, x, stride, n4, &acc)
	for i := n4; i < n; i++ {
		for k := range 8 {
			acc[4*k] += float32(w[i] * x[k*stride+i])
		}
	}
	for k := range 8 {
		a := acc[4*k : 4*k+4 : 4*k+4]
		out[k] = (a[0] + a[1]) + (a[2] + a[3])
	}
}

// blockBytes is the target size of the float32 row block a worker expands
// at once: small enough to stay in L1/L2 while every token streams past it.
const blockBytes = 32 << 10

// matMul computes dst[t*R + r] = Σ_c W[r][c]·x[t*C + c] for T tokens, with
// W of shape [R, C]. It is the one entry point of every linear layer's
// input. Work is split in row blocks over at most workers goroutines; each
// output element is computed by one call with a fixed summation order, so
// the result does not depend on the number of workers, on scheduling or on
// how many tokens are multiplied at once.
//
// With exact, W is expanded to float32 a row block at a time and every
// product is rounded to float32 before four interleaved partial sums add it
// (dot). Otherwise (the default) it computes what llama.cpp's CPU backend
// computes: quantized weights with an integer kernel stay quantized and
// meet activations quantized per block to their type's Q8_0, Q8_1 or Q8_K
// form (kernels.ActFor); float weights use fused multiply-adds
// (kernels.MatF32) on activations rounded to F16 or BF16 for those types.
func matMul(w Linear, dst, x []float32, T, workers int, exact bool) error {
	R, C := w.Rows(), w.Cols()
	if len(x) < T*C || len(dst) < T*R {
		return fmt.Errorf("infer: matmul [%d %d] × %d tokens: buffers too small (x %d, dst %d)", R, C, T, len(x), len(dst))
	}
	if exact {
		return matMulExact(w, dst, x, T, workers)
	}
	if q, ok := w.(*Quantized); ok {
		if act, ok := kernels.ActFor(q.typ); ok {
			return matMulInt(q, act, dst, x, T, workers)
		}
		switch q.typ {
		case quant.F16:
			x = roundedCopy(x[:T*C], kernels.RoundF16, workers, C)
		case quant.BF16:
			x = roundedCopy(x[:T*C], kernels.RoundBF16, workers, C)
		}
	}
	return matMulFMA(w, dst, x, T, workers)
}

// roundedCopy returns a copy of x (rows of C values) with round applied to
// every row.
func roundedCopy(x []float32, round func([]float32), workers, C int) []float32 {
	out := make([]float32, len(x))
	copy(out, x)
	parallelFor(len(x)/C, workers, func(t int) { round(out[t*C : (t+1)*C]) })
	return out
}

// fmaBlockBytes is the target size of the float32 row block of the fused
// multiply-add path: it stays in L2 while the tokens stream past it.
const fmaBlockBytes = 192 << 10

// intBlockBytes is the target size of a block of quantized rows.
const intBlockBytes = 128 << 10

// rowBlocks runs fn(first, n) over blocks of rowsPer consecutive rows of R
// (fewer when workers need more blocks) on up to workers goroutines and
// returns the first error.
func rowBlocks(R, rowsPer, multiple, workers int, newWorker func() func(first, n int) error) error {
	if workers > 1 {
		// Enough blocks that every worker gets several.
		rowsPer = min(rowsPer, max(1, (R+4*workers-1)/(4*workers)))
	}
	rowsPer = max(multiple, rowsPer/multiple*multiple)
	nBlocks := (R + rowsPer - 1) / rowsPer
	workers = max(1, min(workers, nBlocks))
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	run := func() {
		fn := newWorker()
		for {
			b := int(next.Add(1) - 1)
			if b >= nBlocks {
				return
			}
			first := b * rowsPer
			n := min(rowsPer, R-first)
			if err := fn(first, n); err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("infer: matmul rows %d-%d: %w", first, first+n-1, err) })
				next.Store(int64(nBlocks))
				return
			}
		}
	}
	if workers == 1 {
		run()
		return firstErr
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(run)
	}
	wg.Wait()
	return firstErr
}

// floatBlocks runs mul over blocks of about rowsPer rows (a multiple of
// multiple) of w expanded to float32, each worker with its own buffer.
func floatBlocks(w Linear, rowsPer, multiple, workers int, mul func(rows []float32, first, n int) error) error {
	C := w.Cols()
	return rowBlocks(w.Rows(), rowsPer, multiple, workers, func() func(first, n int) error {
		var buf []float32
		return func(first, n int) error {
			if len(buf) < n*C {
				buf = make([]float32, n*C)
			}
			rows, err := w.RowBlock(first, n, buf[:n*C])
			if err != nil {
				return err
			}
			return mul(rows, first, n)
		}
	})
}

// matMulFMA is the float path: row blocks expanded (or viewed) as float32
// and multiplied with fused multiply-adds.
func matMulFMA(w Linear, dst, x []float32, T, workers int) error {
	R, C := w.Rows(), w.Cols()
	return floatBlocks(w, fmaBlockBytes/(4*C), 3, workers, func(rows []float32, first, n int) error {
		return kernels.MatF32(dst[first:], R, rows, n, C, x, T)
	})
}

// matMulInt is the integer path: x quantized once per token to act, then
// every block of quantized rows against every token.
func matMulInt(q *Quantized, act kernels.ActType, dst, x []float32, T, workers int) error {
	R, C := q.rows, q.cols
	a, err := quantizeActs(act, x, T, C, workers)
	if err != nil {
		return err
	}
	return rowBlocks(R, intBlockBytes/q.rowBytes, 1, workers, func() func(first, n int) error {
		return func(first, n int) error {
			return kernels.MatQ(q.typ, dst[first:], R, q.data[first*q.rowBytes:(first+n)*q.rowBytes], q.rowBytes, n, a)
		}
	})
}

// quantizeActs quantizes T rows of C values to act, the tokens spread over
// workers (each token's blocks depend on that token only).
func quantizeActs(act kernels.ActType, x []float32, T, C, workers int) (*kernels.Acts, error) {
	a := &kernels.Acts{}
	if err := a.Reset(act, T, C); err != nil {
		return nil, err
	}
	parallelFor(T, workers, func(t int) { a.QuantizeToken(t, x[t*C:(t+1)*C]) })
	return a, nil
}

// matMulExact is the exact path: rows expanded to float32 a block at a time
// and multiplied by dot's rounding.
func matMulExact(w Linear, dst, x []float32, T, workers int) error {
	R, C := w.Rows(), w.Cols()
	return floatBlocks(w, max(1, blockBytes/(4*C)), 1, workers, func(rows []float32, first, n int) error {
		matMulBlock(rows, n, C, dst, R, first, x, T)
		return nil
	})
}

// matMulBlock computes the outputs of n rows starting at row first for all
// T tokens.
func matMulBlock(rows []float32, n, C int, dst []float32, R, first int, x []float32, T int) {
	t := 0
	var o [8]float32
	for ; t+8 <= T; t += 8 {
		xs := x[t*C : (t+8)*C]
		for r := range n {
			dot8(rows[r*C:(r+1)*C], xs, C, &o)
			for k, v := range o {
				dst[(t+k)*R+first+r] = v
			}
		}
	}
	for ; t+4 <= T; t += 4 {
		x0 := x[t*C : (t+1)*C]
		x1 := x[(t+1)*C : (t+2)*C]
		x2 := x[(t+2)*C : (t+3)*C]
		x3 := x[(t+3)*C : (t+4)*C]
		d0 := dst[t*R+first : t*R+first+n]
		d1 := dst[(t+1)*R+first : (t+1)*R+first+n]
		d2 := dst[(t+2)*R+first : (t+2)*R+first+n]
		d3 := dst[(t+3)*R+first : (t+3)*R+first+n]
		for r := range n {
			d0[r], d1[r], d2[r], d3[r] = dot4(rows[r*C:(r+1)*C], x0, x1, x2, x3)
		}
	}
	for ; t+2 <= T; t += 2 {
		x0 := x[t*C : (t+1)*C]
		x1 := x[(t+1)*C : (t+2)*C]
		d0 := dst[t*R+first : t*R+first+n]
		d1 := dst[(t+1)*R+first : (t+1)*R+first+n]
		for r := range n {
			d0[r], d1[r] = dot2(rows[r*C:(r+1)*C], x0, x1)
		}
	}
	for ; t < T; t++ {
		x0 := x[t*C : (t+1)*C]
		d0 := dst[t*R+first : t*R+first+n]
		for r := range n {
			d0[r] = dot(rows[r*C:(r+1)*C], x0)
		}
	}
}

// parallelFor runs fn(i) for i in [0, n) on up to workers goroutines. fn
// must write only outputs owned by i, so the result is independent of the
// schedule.
func parallelFor(n, workers int, fn func(i int)) {
	workers = max(1, min(workers, n))
	if workers == 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
