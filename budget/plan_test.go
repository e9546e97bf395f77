package budget

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func measured(rng *rand.Rand, n int) ([]Measured, *Sensitivity) {
	s := &Sensitivity{Alpha: 1, S: map[string]float64{}}
	var ms []Measured
	for i := range n {
		name := string(rune('a' + i))
		w := int64(256 * (1 + rng.IntN(8)))
		m := Measured{Name: name, Weights: w}
		for _, bits := range []float64{2.625, 3.4375, 4.5, 5.5, 6.5625, 8.5, 16} {
			m.Points = append(m.Points, Point{Type: "t" + string(rune('0'+len(m.Points))), Bytes: int64(float64(w) * bits / 8), Err: math.Pow(2, -2*bits) * (0.8 + 0.4*rng.Float64())})
		}
		ms = append(ms, m)
		s.S[name] = rng.ExpFloat64()
	}
	return ms, s
}

func TestMakePlan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	ms, s := measured(rng, 20)
	var weights int64
	for _, m := range ms {
		weights += m.Weights
	}
	const fixed = 4 * 100
	weights += 100
	prev := math.Inf(1)
	for _, bpw := range []float64{3, 4, 5, 6, 8} {
		p, err := MakePlan(ms, s, fixed, weights, Goal{TargetBPW: bpw})
		if err != nil {
			t.Fatal(err)
		}
		var b int64 = fixed
		var d float64
		for i, pt := range p.Tensors {
			if pt.Name != ms[i].Name {
				t.Fatalf("tensor %d is %s, want %s", i, pt.Name, ms[i].Name)
			}
			b += pt.Bytes
			d += pt.PredictedKLD
		}
		if b != p.Bytes || math.Abs(d-p.PredictedKLD) > 1e-12 || p.BitsPerWeight > bpw || float64(b)*8/float64(weights) != p.BitsPerWeight {
			t.Fatalf("%.1f bpw: plan says %d bytes %.4f bpw KLD %g, its tensors %d bytes KLD %g", bpw, p.Bytes, p.BitsPerWeight, p.PredictedKLD, b, d)
		}
		if p.PredictedKLD >= prev {
			t.Fatalf("%.1f bpw: KLD %g not below the smaller budget's %g", bpw, p.PredictedKLD, prev)
		}
		prev = p.PredictedKLD
		// The KL bound of this plan gives a plan no larger.
		q, err := MakePlan(ms, s, fixed, weights, Goal{MaxKLD: p.PredictedKLD})
		if err != nil {
			t.Fatal(err)
		}
		if q.PredictedKLD > p.PredictedKLD || q.Bytes > p.Bytes+int64(q.Gap)+1 {
			t.Fatalf("KLD bound %g: plan of %d bytes, KLD %g; the size budget's plan %d bytes", p.PredictedKLD, q.Bytes, q.PredictedKLD, p.Bytes)
		}
	}
	if _, err := MakePlan(ms, s, fixed, weights, Goal{TargetBPW: 1}); !errors.Is(err, ErrInfeasible) {
		t.Fatalf("1 bpw: %v, want ErrInfeasible", err)
	}
	for _, g := range []Goal{{}, {TargetBPW: 4, MaxKLD: 0.1}, {TargetBPW: -1}, {MaxKLD: math.NaN()}} {
		if _, err := MakePlan(ms, s, fixed, weights, g); err == nil {
			t.Errorf("goal %+v accepted", g)
		}
	}
	delete(s.S, "a")
	if _, err := MakePlan(ms, s, fixed, weights, Goal{TargetBPW: 5}); err == nil {
		t.Error("tensor without a sensitivity accepted")
	}
}
