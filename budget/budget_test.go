package budget

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// randomTensors makes n tensors with 2–5 candidates whose damage falls
// roughly as 2^(−2·bits), with noise so that hulls are not trivial.
func randomTensors(rng *rand.Rand, n int) []Tensor {
	ts := make([]Tensor, n)
	for i := range ts {
		size := int64(100 + rng.IntN(900))
		sens := rng.ExpFloat64()
		k := 2 + rng.IntN(4)
		for j := range k {
			bits := 2 + float64(j)*1.5 + rng.Float64()
			ts[i].Candidates = append(ts[i].Candidates, Candidate{
				Name:   string(rune('A' + j)),
				Bytes:  int64(float64(size) * bits / 8),
				Damage: sens * math.Pow(2, -2*bits) * (0.5 + rng.Float64()),
			})
		}
	}
	return ts
}

// brute enumerates every allocation.
func brute(ts []Tensor, visit func(bytes int64, damage float64)) {
	var rec func(i int, b int64, d float64)
	rec = func(i int, b int64, d float64) {
		if i == len(ts) {
			visit(b, d)
			return
		}
		for _, c := range ts[i].Candidates {
			rec(i+1, b+c.Bytes, d+c.Damage)
		}
	}
	rec(0, 0, 0)
}

func totals(ts []Tensor, a Allocation) (int64, float64) {
	var b int64
	var d float64
	for i, c := range a.Choice {
		b += ts[i].Candidates[c].Bytes
		d += ts[i].Candidates[c].Damage
	}
	return b, d
}

func TestMinDamageAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := range 300 {
		ts := randomTensors(rng, 1+rng.IntN(6))
		var lo, hi int64
		for _, tn := range ts {
			mn, mx := tn.Candidates[0].Bytes, tn.Candidates[0].Bytes
			for _, c := range tn.Candidates {
				mn, mx = min(mn, c.Bytes), max(mx, c.Bytes)
			}
			lo, hi = lo+mn, hi+mx
		}
		budget := lo + rng.Int64N(hi-lo+1)
		a, err := MinDamage(ts, budget)
		if err != nil {
			t.Fatal(err)
		}
		b, d := totals(ts, a)
		if b != a.Bytes || math.Abs(d-a.Damage) > 1e-12 || b > budget {
			t.Fatalf("trial %d: allocation totals %d/%g, reported %d/%g, budget %d", trial, b, d, a.Bytes, a.Damage, budget)
		}
		opt := math.Inf(1)
		brute(ts, func(bb int64, dd float64) {
			if bb <= budget {
				opt = min(opt, dd)
			}
		})
		if a.Bound > opt+1e-12 || a.Damage < opt-1e-12 || a.Damage-opt > a.Gap+1e-12 {
			t.Fatalf("trial %d: bound %g ≤ optimum %g ≤ damage %g (gap %g) violated", trial, a.Bound, opt, a.Damage, a.Gap)
		}
	}
}

func TestMinBytesAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for trial := range 300 {
		ts := randomTensors(rng, 1+rng.IntN(6))
		var best, worst float64
		for _, tn := range ts {
			mn, mx := math.Inf(1), 0.0
			for _, c := range tn.Candidates {
				mn, mx = min(mn, c.Damage), max(mx, c.Damage)
			}
			best, worst = best+mn, worst+mx
		}
		maxD := best + rng.Float64()*(worst-best)
		a, err := MinBytes(ts, maxD)
		if err != nil {
			t.Fatal(err)
		}
		b, d := totals(ts, a)
		if b != a.Bytes || d > maxD+1e-12 {
			t.Fatalf("trial %d: allocation %d bytes damage %g over budget %g", trial, b, d, maxD)
		}
		opt := int64(math.MaxInt64)
		brute(ts, func(bb int64, dd float64) {
			if dd <= maxD {
				opt = min(opt, bb)
			}
		})
		if a.Bound > float64(opt)+1e-9 || a.Bytes < opt || float64(a.Bytes-opt) > a.Gap+1e-9 {
			t.Fatalf("trial %d: bound %g ≤ optimum %d ≤ bytes %d (gap %g) violated", trial, a.Bound, opt, a.Bytes, a.Gap)
		}
	}
}

func TestInfeasibleAndBadInput(t *testing.T) {
	ts := []Tensor{{Name: "w", Candidates: []Candidate{{"Q4_K", 100, 0.1}, {"Q8_0", 200, 0.01}}}}
	if _, err := MinDamage(ts, 99); !errors.Is(err, ErrInfeasible) {
		t.Fatalf("MinDamage under the smallest size: %v", err)
	}
	if _, err := MinBytes(ts, 0.001); !errors.Is(err, ErrInfeasible) {
		t.Fatalf("MinBytes under the least damage: %v", err)
	}
	if _, err := MinDamage([]Tensor{{Name: "x"}}, 1); err == nil {
		t.Fatal("a tensor without candidates was accepted")
	}
	if _, err := MinDamage([]Tensor{{Name: "x", Candidates: []Candidate{{"F16", 10, math.NaN()}}}}, 100); err == nil {
		t.Fatal("a NaN damage was accepted")
	}
	// Dominated candidates (bigger and worse) are never chosen.
	ts = []Tensor{{Name: "w", Candidates: []Candidate{{"Q4_K", 100, 0.1}, {"BAD", 150, 0.2}, {"Q8_0", 200, 0.01}}}}
	a, err := MinDamage(ts, 160)
	if err != nil || a.Choice[0] != 0 {
		t.Fatalf("chose %v (%v)", a.Choice, err)
	}
}

// BenchmarkMinDamage: a 70B-sized problem (80 layers × 7 tensors, 12
// candidates each).
func BenchmarkMinDamage(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	ts := randomTensors(rng, 560)
	for i := range ts {
		for len(ts[i].Candidates) < 12 {
			ts[i].Candidates = append(ts[i].Candidates, randomTensors(rng, 1)[0].Candidates...)
		}
	}
	var lo int64
	for _, tn := range ts {
		m := tn.Candidates[0].Bytes
		for _, c := range tn.Candidates {
			m = min(m, c.Bytes)
		}
		lo += m
	}
	for b.Loop() {
		if _, err := MinDamage(ts, lo*2); err != nil {
			b.Fatal(err)
		}
	}
}
