package budget

import (
	"fmt"
	"math"
	"sort"
)

// Sensitivity turns a tensor's quantization error into predicted damage:
// D(t, c) = S_t · err(t, c)^α, where err is the importance-weighted
// relative squared error of tensor t quantized to c (Σ_j imp_j Σ_i (w−ŵ)² /
// Σ_j imp_j Σ_i w², columns j, rows i) and S_t the tensor's sensitivity. To
// second order the output KL divergence is a quadratic form in the weight
// error, so for errors of a fixed shape it is proportional to their squared
// size: α = 1. Fit estimates α and every S_t from measured end-to-end KL
// divergences (the model exllamav3 uses for its allocation).
type Sensitivity struct {
	Alpha float64            `json:"alpha"`
	S     map[string]float64 `json:"s"`
}

// Measurement is one measured point: tensor t quantized with error Err
// (alone, every other tensor at full precision) caused a mean KL
// divergence KLD.
type Measurement struct {
	Tensor string  `json:"tensor"`
	Type   string  `json:"type"`
	Err    float64 `json:"err"`
	KLD    float64 `json:"kld"`
}

// Predict returns S_t · err^α.
func (s *Sensitivity) Predict(tensor string, err float64) (float64, error) {
	st, ok := s.S[tensor]
	if !ok {
		return 0, fmt.Errorf("budget: no sensitivity measured for tensor %q", tensor)
	}
	if err <= 0 {
		return 0, nil
	}
	return st * math.Pow(err, s.Alpha), nil
}

// Fit estimates the model from measurements with positive Err and KLD. α is
// the within-tensor slope of log KLD on log Err (pooled over tensors with
// two or more distinct errors); with none, α = alpha0. S_t is then the
// geometric-mean fit of the tensor's points.
func Fit(ms []Measurement, alpha0 float64) (*Sensitivity, error) {
	// Tensors in order of first appearance: the sums below are taken in a
	// fixed order, so the fit is the same bits for the same measurements
	// (map iteration order would change the last bits of α run to run).
	by := map[string][]Measurement{}
	var order []string
	for _, m := range ms {
		if !(m.Err > 0) || !(m.KLD > 0) || math.IsInf(m.Err, 0) || math.IsInf(m.KLD, 0) {
			continue
		}
		if _, ok := by[m.Tensor]; !ok {
			order = append(order, m.Tensor)
		}
		by[m.Tensor] = append(by[m.Tensor], m)
	}
	if len(by) == 0 {
		return nil, fmt.Errorf("budget: no usable measurements (need Err > 0 and KLD > 0)")
	}
	var sxy, sxx float64
	for _, name := range order {
		pts := by[name]
		if len(pts) < 2 {
			continue
		}
		var mx, my float64
		for _, p := range pts {
			mx += math.Log(p.Err)
			my += math.Log(p.KLD)
		}
		mx /= float64(len(pts))
		my /= float64(len(pts))
		for _, p := range pts {
			dx := math.Log(p.Err) - mx
			sxy += dx * (math.Log(p.KLD) - my)
			sxx += dx * dx
		}
	}
	s := &Sensitivity{Alpha: alpha0, S: map[string]float64{}}
	if sxx > 1e-12 {
		s.Alpha = sxy / sxx
	}
	for _, name := range order {
		pts := by[name]
		var m float64
		for _, p := range pts {
			m += math.Log(p.KLD) - s.Alpha*math.Log(p.Err)
		}
		s.S[name] = math.Exp(m / float64(len(pts)))
	}
	return s, nil
}

// Spearman is the rank correlation of x and y (average ranks for ties).
func Spearman(x, y []float64) (float64, error) {
	if len(x) != len(y) || len(x) < 2 {
		return 0, fmt.Errorf("budget: rank correlation of %d and %d values", len(x), len(y))
	}
	rx, ry := ranks(x), ranks(y)
	var mx, my float64
	for i := range rx {
		mx += rx[i]
		my += ry[i]
	}
	mx /= float64(len(rx))
	my /= float64(len(ry))
	var sxy, sxx, syy float64
	for i := range rx {
		dx, dy := rx[i]-mx, ry[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0, fmt.Errorf("budget: rank correlation of constant values")
	}
	return sxy / math.Sqrt(sxx*syy), nil
}

func ranks(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	r := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && v[idx[j+1]] == v[idx[i]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for k := i; k <= j; k++ {
			r[idx[k]] = avg
		}
		i = j + 1
	}
	return r
}
