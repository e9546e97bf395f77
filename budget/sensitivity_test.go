package budget

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFitRecoversModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const alpha = 0.9
	truth := map[string]float64{}
	var ms []Measurement
	for i := range 50 {
		name := string(rune('a'+i%26)) + string(rune('A'+i/26))
		truth[name] = rng.ExpFloat64() * 10
		for _, e := range []float64{1e-3, 4e-3, 2e-2} {
			e *= 0.5 + rng.Float64()
			kld := truth[name] * math.Pow(e, alpha) * math.Exp(rng.NormFloat64()*0.05)
			ms = append(ms, Measurement{Tensor: name, Err: e, KLD: kld})
		}
	}
	s, err := Fit(ms, 1)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s.Alpha-alpha) > 0.05 {
		t.Fatalf("alpha %.3f, want %.2f", s.Alpha, alpha)
	}
	var pred, meas []float64
	for _, m := range ms {
		p, err := s.Predict(m.Tensor, m.Err)
		if err != nil {
			t.Fatal(err)
		}
		pred, meas = append(pred, p), append(meas, m.KLD)
	}
	rho, err := Spearman(pred, meas)
	if err != nil || rho < 0.98 {
		t.Fatalf("rank correlation %.3f (%v)", rho, err)
	}
	if _, err := s.Predict("missing", 1e-3); err == nil {
		t.Fatal("predict for an unmeasured tensor did not fail")
	}
	// One point per tensor: alpha stays at the prior.
	s1, err := Fit(ms[:1], 1)
	if err != nil || s1.Alpha != 1 {
		t.Fatalf("single point: %+v %v", s1, err)
	}
}

func TestSpearman(t *testing.T) {
	if r, _ := Spearman([]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}); r != 1 {
		t.Fatalf("monotone: %v", r)
	}
	if r, _ := Spearman([]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}); r != -1 {
		t.Fatalf("reversed: %v", r)
	}
	if r, _ := Spearman([]float64{1, 1, 2, 3}, []float64{1, 2, 3, 4}); math.Abs(r-0.9486833) > 1e-6 {
		t.Fatalf("ties: %v", r)
	}
	if _, err := Spearman([]float64{1, 1}, []float64{1, 2}); err == nil {
		t.Fatal("constant input accepted")
	}
}
