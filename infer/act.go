package infer

import (
	"fmt"
	"math"

	"github.com/ohms-project/adaptq/hadamard"
)

// fakeQuant quantizes x in place to signed integers of the given bit width
// with a symmetric absmax scale and rounds back: x ← round(x/s)·s with
// s = max|x| / (2^(bits-1)-1), round half away from zero.
func fakeQuant(x []float32, bits int) {
	qmax := float32(int(1)<<(bits-1) - 1)
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	if amax == 0 {
		return
	}
	s := amax / qmax
	inv := 1 / s
	for i, v := range x {
		q := float32(math.Round(float64(v * inv)))
		q = min(max(q, -qmax), qmax)
		x[i] = q * s
	}
}

// actInput prepares the input of a linear layer for T tokens of width C:
// when the model simulates activation quantization it rotates (Hadamard)
// and fake-quantizes a copy of x into scratch and returns it; otherwise it
// returns x itself.
func (m *Model) actInput(x, scratch []float32, T, C int) ([]float32, error) {
	a := m.opts.Act
	if a.Bits == 0 && !a.Hadamard {
		return x, nil
	}
	out := scratch[:T*C]
	copy(out, x[:T*C])
	var rot *hadamard.Rotation
	if a.Hadamard {
		rot = m.rot[C]
		if rot == nil {
			return nil, fmt.Errorf("infer: no Hadamard rotation of width %d", C)
		}
	}
	parallelFor(T, m.workers(), func(t int) {
		row := out[t*C : (t+1)*C]
		if rot != nil {
			_ = rot.Apply(row) // width checked when the rotation was built
		}
		if a.Bits > 0 {
			fakeQuant(row, a.Bits)
		}
	})
	return out, nil
}

// rotateWeights returns a copy of w whose decoder linear weights are
// multiplied on the right by Qᵀ (every row r becomes Q·r), Q the randomised
// Hadamard rotation of the weight's input width, so that
// (W·Qᵀ)·(Q·x) = W·x. Embedding, norms and lm_head are shared unchanged.
func rotateWeights(w *Weights, seed uint64, workers int) (*Weights, map[int]*hadamard.Rotation, error) {
	rots := map[int]*hadamard.Rotation{}
	get := func(n int) (*hadamard.Rotation, error) {
		if r, ok := rots[n]; ok {
			return r, nil
		}
		r, err := hadamard.New(n, seed, 0)
		if err != nil {
			return nil, fmt.Errorf("infer: Hadamard rotation of width %d: %w", n, err)
		}
		rots[n] = r
		return r, nil
	}
	out := *w
	out.Layers = make([]Layer, len(w.Layers))
	for l := range w.Layers {
		L := w.Layers[l]
		for _, p := range []*Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			r, err := get((*p).Cols())
			if err != nil {
				return nil, nil, err
			}
			if *p, err = rotateLinear(*p, r, workers); err != nil {
				return nil, nil, fmt.Errorf("infer: layer %d: %w", l, err)
			}
		}
		out.Layers[l] = L
	}
	return &out, rots, nil
}

// rotateLinear returns W·Qᵀ: a rotated copy for a Dense weight, a view
// rotating each row block as it is read otherwise.
func rotateLinear(lin Linear, r *hadamard.Rotation, workers int) (Linear, error) {
	d, ok := lin.(*Dense)
	if !ok {
		return &rotatedLinear{lin: lin, rot: r}, nil
	}
	data := make([]float32, len(d.data))
	copy(data, d.data)
	parallelFor(d.rows, workers, func(i int) {
		_ = r.Apply(data[i*d.cols : (i+1)*d.cols])
	})
	return NewDense(d.rows, d.cols, data)
}

// rotatedLinear is W·Qᵀ computed a row block at a time from W.
type rotatedLinear struct {
	lin Linear
	rot *hadamard.Rotation
}

// Rows is the number of output features.
func (r *rotatedLinear) Rows() int { return r.lin.Rows() }

// Cols is the number of input features.
func (r *rotatedLinear) Cols() int { return r.lin.Cols() }

// RowBlock reads rows of W into buf and rotates each of them by Q.
func (r *rotatedLinear) RowBlock(first, n int, buf []float32) ([]float32, error) {
	c := r.lin.Cols()
	rows, err := r.lin.RowBlock(first, n, buf)
	if err != nil {
		return nil, err
	}
	buf = buf[:n*c]
	if len(rows) > 0 && &rows[0] != &buf[0] {
		copy(buf, rows) // a view of the underlying storage: rotate a copy
	}
	for i := range n {
		if err := r.rot.Apply(buf[i*c : (i+1)*c]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}
