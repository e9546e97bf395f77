package probe

import (
	"context"
	"fmt"
	"math"

	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/quant"
)

// Options configure Measure.
type Options struct {
	// Types are the candidate types (DefaultTypes when nil).
	Types []quant.Type
	// ProbeType is the type every tensor is probed at end to end (the KL
	// divergence of the model with that tensor alone quantized); Q4_0 when
	// zero, whose 32-value blocks hold the rows of every Llama-family
	// tensor.
	ProbeType quant.Type
	// AlphaType and AlphaEvery: every AlphaEvery-th target (by
	// Target.Index; 0: none) is
	// probed at AlphaType as well, which fits the exponent α of the
	// sensitivity model (budget.Fit); without them α = 1.
	AlphaType  quant.Type
	AlphaEvery int
	// Importance returns the importance of a tensor's columns by llama.cpp
	// name, or nil (uniform).
	Importance func(name string) []float32
	// Optimized measures the error-minimising quantizers' errors.
	Optimized bool
	// Progress is told after each tensor.
	Progress func(tensor string, done, total int)
}

// Report is what Measure measured.
type Report struct {
	Tensors []budget.Measured    `json:"tensors"`
	Probes  []budget.Measurement `json:"probes"`
	// Sensitivity is the model fitted to the probes. Spearman is the rank
	// correlation, over the HeldOut tensors probed at AlphaType too, of the
	// KL divergence at AlphaType predicted from the ProbeType probe alone
	// (and the pooled α) with the measured one; 0 with fewer than two.
	Sensitivity *budget.Sensitivity `json:"sensitivity"`
	Spearman    float64             `json:"spearman"`
	HeldOut     int                 `json:"held_out"`
	ProbeTokens int                 `json:"probe_tokens"`
}

// Measure measures every target at every candidate type and probes each end
// to end (see Options), then fits the sensitivity model D = S_t·err^α.
func Measure(ctx context.Context, p *Prober, targets []Target, o Options) (*Report, error) {
	rep, err := MeasureTargets(ctx, p, targets, o)
	if err != nil {
		return nil, err
	}
	if err := rep.Fit(o.probeType()); err != nil {
		return nil, err
	}
	return rep, nil
}

func (o Options) probeType() quant.Type {
	if o.ProbeType == 0 {
		return quant.Q4_0
	}
	return o.ProbeType
}

// MeasureTargets is Measure without the fit: the measurements of some of a
// model's targets (a fleet's unit of work), to be merged (Merge) and
// fitted (Report.Fit) with the others'.
func MeasureTargets(ctx context.Context, p *Prober, targets []Target, o Options) (*Report, error) {
	types := o.Types
	if types == nil {
		types = DefaultTypes
	}
	probeT := o.probeType()
	rep := &Report{ProbeTokens: p.Tokens()}
	for i, t := range targets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var imp []float32
		if o.Importance != nil {
			imp = o.Importance(t.Name)
		}
		pts, err := Errors(t.Values, t.Rows, t.Cols, imp, types, o.Optimized)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		m := budget.Measured{Name: t.Name, Weights: int64(t.Rows) * int64(t.Cols)}
		for _, pt := range pts {
			m.Points = append(m.Points, budget.Point{Type: pt.Type.String(), Bytes: pt.Bytes, Err: pt.Err})
		}
		rep.Tensors = append(rep.Tensors, m)
		probes := []quant.Type{probeT}
		if o.AlphaEvery > 0 && t.Index%o.AlphaEvery == 0 && o.AlphaType != 0 && o.AlphaType != probeT {
			probes = append(probes, o.AlphaType)
		}
		for _, pt := range probes {
			if t.Cols%pt.BlockSize() != 0 {
				continue
			}
			vals, err := Dequantized(pt, t.Values, t.Cols, imp, o.Optimized)
			if err != nil {
				return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
			}
			kld, err := p.KLD(ctx, t, vals)
			if err != nil {
				return nil, err
			}
			e := math.NaN()
			for _, q := range pts {
				if q.Type == pt {
					e = q.Err
				}
			}
			if math.IsNaN(e) {
				return nil, fmt.Errorf("tensor %s: probe type %s is not among the candidates", t.Name, pt)
			}
			rep.Probes = append(rep.Probes, budget.Measurement{Tensor: t.Name, Type: pt.String(), Err: e, KLD: kld})
		}
		if o.Progress != nil {
			o.Progress(t.Name, i+1, len(targets))
		}
	}
	return rep, nil
}

// Merge joins the measurements of disjoint sets of targets, in the order
// given (unfitted: call Fit).
func Merge(parts ...*Report) (*Report, error) {
	out := &Report{}
	seen := map[string]bool{}
	for _, r := range parts {
		if out.ProbeTokens != 0 && r.ProbeTokens != out.ProbeTokens {
			return nil, fmt.Errorf("probe: merging measurements on %d and %d tokens", out.ProbeTokens, r.ProbeTokens)
		}
		out.ProbeTokens = r.ProbeTokens
		for _, t := range r.Tensors {
			if seen[t.Name] {
				return nil, fmt.Errorf("probe: tensor %s measured twice", t.Name)
			}
			seen[t.Name] = true
		}
		out.Tensors = append(out.Tensors, r.Tensors...)
		out.Probes = append(out.Probes, r.Probes...)
	}
	return out, nil
}

// Fit fits the sensitivity model to the report's probes (probeT is the type
// every tensor was probed at) and measures its held-out rank correlation.
func (rep *Report) Fit(probeT quant.Type) error {
	s, err := budget.Fit(rep.Probes, 1)
	if err != nil {
		return err
	}
	// A tensor whose probe moved nothing measurable gets the smallest
	// sensitivity measured, so that it still has a damage.
	least := math.Inf(1)
	for _, v := range s.S {
		least = min(least, v)
	}
	for _, t := range rep.Tensors {
		if _, ok := s.S[t.Name]; !ok {
			s.S[t.Name] = least
		}
	}
	rep.Sensitivity = s
	// Held out: predict each AlphaType probe from its tensor's ProbeType
	// probe alone (S_t = KLD/err^α there) and the pooled α.
	single := map[string]float64{}
	for _, pr := range rep.Probes {
		if pr.Type == probeT.String() && pr.Err > 0 {
			single[pr.Tensor] = pr.KLD / math.Pow(pr.Err, s.Alpha)
		}
	}
	var pred, meas []float64
	for _, pr := range rep.Probes {
		st, ok := single[pr.Tensor]
		if pr.Type == probeT.String() || !ok {
			continue
		}
		pred, meas = append(pred, st*math.Pow(pr.Err, s.Alpha)), append(meas, pr.KLD)
	}
	rep.HeldOut = len(pred)
	if len(pred) >= 2 {
		if r, err := budget.Spearman(pred, meas); err == nil {
			rep.Spearman = r
		}
	}
	return nil
}
