package budget

import (
	"fmt"
	"math"
)

// Point is one measured candidate of a tensor: a type, the tensor's bytes
// at that type and its importance-weighted relative squared error.
type Point struct {
	Type  string  `json:"type"`
	Bytes int64   `json:"bytes"`
	Err   float64 `json:"err"`
}

// Measured is a quantizable tensor and its measured candidates.
type Measured struct {
	Name    string  `json:"name"`
	Weights int64   `json:"weights"`
	Points  []Point `json:"points"`
}

// Goal is what a plan must meet: at most TargetBPW bits per weight over
// the whole file (every tensor counted, norms included), or at most MaxKLD
// predicted mean KL divergence; exactly one is set.
type Goal struct {
	TargetBPW float64 `json:"target_bpw,omitempty"`
	MaxKLD    float64 `json:"max_kld,omitempty"`
}

// Validate checks that exactly one budget is set and is sensible.
func (g Goal) Validate() error {
	switch {
	case g.TargetBPW != 0 && g.MaxKLD != 0:
		return fmt.Errorf("budget: give a bits-per-weight target or a KL divergence bound, not both")
	case g.TargetBPW == 0 && g.MaxKLD == 0:
		return fmt.Errorf("budget: no budget given")
	case g.TargetBPW < 0 || math.IsNaN(g.TargetBPW) || math.IsInf(g.TargetBPW, 0):
		return fmt.Errorf("budget: bits per weight %v: want a positive number", g.TargetBPW)
	case g.MaxKLD < 0 || math.IsNaN(g.MaxKLD) || math.IsInf(g.MaxKLD, 0):
		return fmt.Errorf("budget: KL divergence %v: want a positive number", g.MaxKLD)
	}
	return nil
}

// PlanTensor is one tensor's choice in a plan.
type PlanTensor struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Bytes int64   `json:"bytes"`
	Err   float64 `json:"err"`
	// PredictedKLD is the sensitivity model's damage of this choice.
	PredictedKLD float64 `json:"predicted_kld"`
}

// Plan is a budget's allocation: a type per quantizable tensor, with the
// predicted bytes and KL divergence. It is stored beside the output and
// its types are what the shards are quantized with.
type Plan struct {
	Goal Goal `json:"goal"`
	// Weights counts every weight of the file; FixedBytes are the bytes of
	// the tensors that are not candidates (norms and biases, F32).
	Weights    int64 `json:"weights"`
	FixedBytes int64 `json:"fixed_bytes"`
	// Bytes is the predicted size of all tensor data (FixedBytes
	// included) and BitsPerWeight = Bytes·8/Weights.
	Bytes         int64   `json:"bytes"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	// PredictedKLD is the sum of the tensors' predicted KL divergences;
	// Gap bounds how far the allocation is from the optimum of the same
	// model (in KL divergence for a size budget, in bytes for a KL bound).
	PredictedKLD float64      `json:"predicted_kld"`
	Gap          float64      `json:"gap"`
	Sensitivity  *Sensitivity `json:"sensitivity"`
	Tensors      []PlanTensor `json:"tensors"`
}

// Types returns the plan's type name by tensor name.
func (p *Plan) Types() map[string]string {
	m := make(map[string]string, len(p.Tensors))
	for _, t := range p.Tensors {
		m[t.Name] = t.Type
	}
	return m
}

// MakePlan allocates one type per tensor under the goal: the least
// predicted KL divergence within TargetBPW, or the fewest bytes within
// MaxKLD. Damage is sens.Predict of each point's error; weights and
// fixedBytes describe the rest of the file.
func MakePlan(ms []Measured, sens *Sensitivity, fixedBytes, weights int64, g Goal) (*Plan, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if weights <= 0 {
		return nil, fmt.Errorf("budget: %d weights", weights)
	}
	ts := make([]Tensor, len(ms))
	for i, m := range ms {
		ts[i].Name = m.Name
		if len(m.Points) == 0 {
			return nil, fmt.Errorf("budget: tensor %s has no measured type", m.Name)
		}
		for _, p := range m.Points {
			d, err := sens.Predict(m.Name, p.Err)
			if err != nil {
				return nil, err
			}
			ts[i].Candidates = append(ts[i].Candidates, Candidate{Name: p.Type, Bytes: p.Bytes, Damage: d})
		}
	}
	var a Allocation
	var err error
	if g.TargetBPW > 0 {
		budget := int64(math.Floor(g.TargetBPW*float64(weights)/8)) - fixedBytes
		if a, err = MinDamage(ts, budget); err != nil {
			return nil, fmt.Errorf("%w (%.3f bits per weight over %d weights, %d bytes fixed)", err, g.TargetBPW, weights, fixedBytes)
		}
	} else if a, err = MinBytes(ts, g.MaxKLD); err != nil {
		return nil, err
	}
	p := &Plan{Goal: g, Weights: weights, FixedBytes: fixedBytes, Bytes: a.Bytes + fixedBytes,
		PredictedKLD: a.Damage, Gap: a.Gap, Sensitivity: sens}
	p.BitsPerWeight = float64(p.Bytes) * 8 / float64(weights)
	for i, c := range a.Choice {
		pt := ms[i].Points[c]
		p.Tensors = append(p.Tensors, PlanTensor{Name: ms[i].Name, Type: pt.Type, Bytes: pt.Bytes, Err: pt.Err, PredictedKLD: ts[i].Candidates[c].Damage})
	}
	return p, nil
}
