// Package budget chooses one quantization type per tensor under a quality
// or size budget: the smallest file whose predicted KL divergence meets a
// bound, or the lowest predicted KL divergence at a file size.
//
// # The model
//
// Each tensor t has candidates c (a type) with a cost B(t,c) in bytes and a
// predicted damage D(t,c): the mean KL divergence of the model's output
// from the original's when t alone is quantized to c. The damage of a whole
// allocation is predicted as the sum of its tensors' damages (small,
// independent perturbations add to first order; see docs/QUALITY.md for how
// well that holds on real models). Tensors that are not quantized (norms,
// biases) are not candidates; their bytes are a constant the caller adds.
//
// # The allocation
//
// Minimising ΣD subject to ΣB ≤ budget is a multiple-choice knapsack. The
// package solves its Lagrangian relaxation exactly: for every tensor only
// the lower convex hull of its (bytes, damage) points can be optimal for
// some price λ of a byte, and the hull's segments, taken in order of
// decreasing damage saved per byte, trace every λ. A greedy walk along that
// order (skipping segments that do not fit, then continuing with smaller
// ones) gives a feasible allocation; the walk's first segment that does not
// fit, taken fractionally, gives a lower bound on the optimum. The
// allocation's Gap (its damage minus that bound) is therefore a proven
// bound on how far from optimal it is.
package budget

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Candidate is one choice for a tensor.
type Candidate struct {
	// Name identifies the choice (a type name such as "Q4_K").
	Name string `json:"name"`
	// Bytes is the tensor's size with this choice.
	Bytes int64 `json:"bytes"`
	// Damage is the predicted mean KL divergence (nats per token) caused by
	// this choice for this tensor alone; ≥ 0.
	Damage float64 `json:"damage"`
}

// Tensor is a tensor and its candidates.
type Tensor struct {
	Name       string      `json:"name"`
	Candidates []Candidate `json:"candidates"`
}

// Allocation is one candidate per tensor.
type Allocation struct {
	// Choice[i] indexes Tensors[i].Candidates.
	Choice []int `json:"choice"`
	// Bytes and Damage are the totals of the chosen candidates.
	Bytes  int64   `json:"bytes"`
	Damage float64 `json:"damage"`
	// Bound is a lower bound on the damage of any allocation within the
	// same byte budget (MinDamage), or on the bytes of any allocation
	// within the same damage budget (MinBytes, then in bytes).
	Bound float64 `json:"bound"`
	// Gap is Damage − Bound (MinDamage) or Bytes − Bound (MinBytes): how
	// far from optimal the allocation can be.
	Gap float64 `json:"gap"`
}

// ErrInfeasible is returned when no allocation meets the budget.
var ErrInfeasible = errors.New("budget: no allocation meets the budget")

// segment is one step along a tensor's hull: from hull point at to at+1,
// spending dBytes more to save dDamage.
type segment struct {
	tensor         int
	to             int // index into Candidates of the point reached
	dBytes         int64
	dDamage, slope float64
}

// hull returns the indices of the lower convex hull of a tensor's points,
// from the fewest bytes to the most, keeping only points that lower the
// damage.
func hull(cs []Candidate) []int {
	idx := make([]int, len(cs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ca, cb := cs[idx[a]], cs[idx[b]]
		if ca.Bytes != cb.Bytes {
			return ca.Bytes < cb.Bytes
		}
		return ca.Damage < cb.Damage
	})
	var h []int
	for _, i := range idx {
		c := cs[i]
		if len(h) > 0 && (cs[h[len(h)-1]].Bytes == c.Bytes || c.Damage >= cs[h[len(h)-1]].Damage) {
			continue // same size but not better, or bigger and not better
		}
		// Pop points that lie on or above the segment from their
		// predecessor to c (they are never optimal).
		for len(h) >= 2 {
			a, b := cs[h[len(h)-2]], cs[h[len(h)-1]]
			// slope(a→b) must be steeper (more damage saved per byte)
			// than slope(b→c) for b to stay.
			sab := (a.Damage - b.Damage) / float64(b.Bytes-a.Bytes)
			sbc := (b.Damage - c.Damage) / float64(c.Bytes-b.Bytes)
			if sab > sbc {
				break
			}
			h = h[:len(h)-1]
		}
		h = append(h, i)
	}
	return h
}

func check(ts []Tensor) error {
	for i, t := range ts {
		if len(t.Candidates) == 0 {
			return fmt.Errorf("budget: tensor %q has no candidates", t.Name)
		}
		for _, c := range t.Candidates {
			if c.Bytes < 0 || c.Damage < 0 || math.IsNaN(c.Damage) || math.IsInf(c.Damage, 0) {
				return fmt.Errorf("budget: tensor %d %q candidate %q: bytes %d, damage %v (want ≥ 0, finite)", i, t.Name, c.Name, c.Bytes, c.Damage)
			}
		}
	}
	return nil
}

// walk prepares the greedy walk: the starting allocation (every tensor at
// its cheapest hull point) and every hull segment in order of decreasing
// slope (ties: tensor order, then along the hull).
func walk(ts []Tensor) (start Allocation, segs []segment) {
	start.Choice = make([]int, len(ts))
	for i, t := range ts {
		h := hull(t.Candidates)
		start.Choice[i] = h[0]
		start.Bytes += t.Candidates[h[0]].Bytes
		start.Damage += t.Candidates[h[0]].Damage
		for j := 1; j < len(h); j++ {
			a, b := t.Candidates[h[j-1]], t.Candidates[h[j]]
			db, dd := b.Bytes-a.Bytes, a.Damage-b.Damage
			segs = append(segs, segment{tensor: i, to: h[j], dBytes: db, dDamage: dd, slope: dd / float64(db)})
		}
	}
	// Segments of one tensor have decreasing slopes (convex hull), so a
	// stable sort keeps each tensor's segments in hull order.
	sort.SliceStable(segs, func(a, b int) bool { return segs[a].slope > segs[b].slope })
	return start, segs
}

// MinDamage returns the allocation of least predicted damage whose bytes do
// not exceed maxBytes (near-optimal within its Gap).
func MinDamage(ts []Tensor, maxBytes int64) (Allocation, error) {
	if err := check(ts); err != nil {
		return Allocation{}, err
	}
	a, segs := walk(ts)
	if a.Bytes > maxBytes {
		return Allocation{}, fmt.Errorf("%w: the smallest allocation has %d bytes, the budget is %d", ErrInfeasible, a.Bytes, maxBytes)
	}
	// pos[t] is how far along its hull tensor t has come; a segment is
	// taken only in order, after its predecessors on the same hull.
	blocked := make([]bool, len(ts))
	a.Bound = math.NaN()
	for _, s := range segs {
		if blocked[s.tensor] {
			continue
		}
		left := maxBytes - a.Bytes
		if s.dBytes > left {
			if math.IsNaN(a.Bound) {
				// The Lagrangian (fractional) optimum stops inside this
				// segment: a lower bound on every integral allocation.
				a.Bound = a.Damage - s.dDamage*float64(left)/float64(s.dBytes)
			}
			blocked[s.tensor] = true // later segments of this hull need this one first
			continue
		}
		a.Choice[s.tensor] = s.to
		a.Bytes += s.dBytes
		a.Damage -= s.dDamage
	}
	if math.IsNaN(a.Bound) {
		a.Bound = a.Damage // every segment fit: the best hull point of every tensor
	}
	a.Gap = a.Damage - a.Bound
	return a, nil
}

// MinBytes returns the allocation of fewest bytes whose predicted damage
// does not exceed maxDamage (near-optimal within its Gap, in bytes).
func MinBytes(ts []Tensor, maxDamage float64) (Allocation, error) {
	if err := check(ts); err != nil {
		return Allocation{}, err
	}
	a, segs := walk(ts)
	var best float64
	for _, t := range ts {
		h := hull(t.Candidates)
		best += t.Candidates[h[len(h)-1]].Damage
	}
	if best > maxDamage {
		return Allocation{}, fmt.Errorf("%w: the least damage reachable is %.4g, the budget is %.4g", ErrInfeasible, best, maxDamage)
	}
	a.Bound = float64(a.Bytes)
	for _, s := range segs {
		if a.Damage <= maxDamage {
			break
		}
		need := a.Damage - maxDamage
		if s.dDamage >= need {
			// The fractional optimum ends inside this segment.
			a.Bound = float64(a.Bytes) + float64(s.dBytes)*need/s.dDamage
		} else {
			a.Bound = float64(a.Bytes + s.dBytes)
		}
		a.Choice[s.tensor] = s.to
		a.Bytes += s.dBytes
		a.Damage -= s.dDamage
	}
	a.Gap = float64(a.Bytes) - a.Bound
	return a, nil
}
