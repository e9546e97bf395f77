package infer

import (
	"fmt"
	"math"
	"slices"
)

// WindowSums are the sums of one evaluated window. Per-window sums are
// summed in a fixed (position) order, so they do not depend on how windows
// are distributed.
type WindowSums struct {
	Index  int     `json:"index"`
	Tokens int     `json:"tokens"`
	NLL    float64 `json:"nll"`              // Σ −log q(target), nats
	RefNLL float64 `json:"ref_nll,omitzero"` // Σ −log p_ref(target)
	KL     float64 `json:"kl,omitzero"`      // Σ KL(P_ref‖Q)
	Top1   int     `json:"top1,omitzero"`    // positions where argmax q = argmax p_ref
	// TokenKL holds the KL divergence of each scored position in order
	// (with a reference only), for exact quantiles.
	TokenKL []float64 `json:"token_kl,omitempty"`
}

// Sums are mergeable evaluation sums: the per-window sums of a set of
// windows, sorted by window index. Merging the sums of any partition of a
// protocol's windows and calling Result gives bit-for-bit the result of
// one Evaluate over all of them, because Result adds the windows in index
// order whatever their origin. Sums marshal to JSON.
type Sums struct {
	// Reference is true when the sums include a reference (KL, top-1).
	Reference bool         `json:"reference"`
	Windows   []WindowSums `json:"windows"`
}

// Merge combines the sums of disjoint sets of windows. It fails when a
// window appears twice or when some parts have a reference and others not.
func Merge(parts ...*Sums) (*Sums, error) {
	out := &Sums{}
	for i, p := range parts {
		if p == nil {
			return nil, fmt.Errorf("infer: merge: part %d is nil", i)
		}
		if i == 0 {
			out.Reference = p.Reference
		} else if p.Reference != out.Reference {
			return nil, fmt.Errorf("infer: merge: part %d has reference=%v, part 0 has %v", i, p.Reference, out.Reference)
		}
		out.Windows = append(out.Windows, p.Windows...)
	}
	slices.SortFunc(out.Windows, func(a, b WindowSums) int { return a.Index - b.Index })
	for i := 1; i < len(out.Windows); i++ {
		if out.Windows[i].Index == out.Windows[i-1].Index {
			return nil, fmt.Errorf("infer: merge: window %d appears twice", out.Windows[i].Index)
		}
	}
	return out, nil
}

// Result is the aggregate of an evaluation.
type Result struct {
	Windows int   `json:"windows"`
	Tokens  int64 `json:"tokens"`
	// NLL is the mean negative log-likelihood in nats; PPL = exp(NLL).
	NLL float64 `json:"nll"`
	PPL float64 `json:"ppl"`
	// The fields below are set only with a reference.
	Reference bool    `json:"reference"`
	RefPPL    float64 `json:"ref_ppl,omitzero"`
	// PPLRatio is PPL / RefPPL.
	PPLRatio float64 `json:"ppl_ratio,omitzero"`
	// KL divergence of the model from the reference per scored token:
	// mean, median, 99th percentile and maximum (quantiles by linear
	// interpolation between order statistics, position q·(n−1)).
	KLMean   float64 `json:"kl_mean,omitzero"`
	KLMedian float64 `json:"kl_median,omitzero"`
	KLP99    float64 `json:"kl_p99,omitzero"`
	KLMax    float64 `json:"kl_max,omitzero"`
	// Top1 is the fraction of scored tokens whose argmax agrees with the
	// reference's.
	Top1 float64 `json:"top1,omitzero"`
}

// Result aggregates the sums, adding windows in index order.
func (s *Sums) Result() Result {
	var r Result
	var nll, refNLL, kl float64
	var top1 int64
	var kls []float64
	for _, w := range s.Windows {
		r.Windows++
		r.Tokens += int64(w.Tokens)
		nll += w.NLL
		refNLL += w.RefNLL
		kl += w.KL
		top1 += int64(w.Top1)
		kls = append(kls, w.TokenKL...)
	}
	if r.Tokens == 0 {
		return r
	}
	n := float64(r.Tokens)
	r.NLL = nll / n
	r.PPL = math.Exp(r.NLL)
	if !s.Reference {
		return r
	}
	r.Reference = true
	r.RefPPL = math.Exp(refNLL / n)
	r.PPLRatio = r.PPL / r.RefPPL
	r.KLMean = kl / n
	r.Top1 = float64(top1) / n
	slices.Sort(kls)
	r.KLMedian = quantile(kls, 0.5)
	r.KLP99 = quantile(kls, 0.99)
	if len(kls) > 0 {
		r.KLMax = kls[len(kls)-1]
	}
	return r
}

// quantile interpolates linearly between the order statistics of sorted
// values at position q·(n−1).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i] + f*(sorted[i+1]-sorted[i])
}
