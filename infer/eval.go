package infer

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// RefToken is a reference model's distribution for one scored position,
// either in full or as its top k entries.
type RefToken struct {
	// LogProbs, when non-nil, is the full log-softmax over the vocabulary;
	// KL divergence against it is exact.
	LogProbs []float32
	// TopIDs and TopLogProbs are the k most probable tokens (descending
	// probability, ties by ascending id) and their log-probabilities; used
	// when LogProbs is nil. KL divergence against them is the top-k
	// approximation described in NOTES.md and at KLTopK.
	TopIDs      []int32
	TopLogProbs []float32
	// RestLogProb is log(1 − Σ exp(TopLogProbs)), the log of the reference's
	// probability mass outside the top k (−Inf when there is none).
	RestLogProb float32
	// TargetLogProb is the reference log-probability of the actual next
	// token (for the reference's perplexity).
	TargetLogProb float32
	// Argmax is the reference's most probable token (lowest id on ties).
	Argmax int32
}

// Reference supplies a reference distribution for every scored position of
// a window, in position order.
type Reference interface {
	// Window returns one RefToken per scored position of w
	// (w.First ≤ p < w.End), in order.
	Window(ctx context.Context, w Window) ([]RefToken, error)
}

// ModelReference is a Reference computed by running a second model on the
// same windows (exact KL).
type ModelReference struct {
	Model *Model
}

// Window runs the reference model on w and returns its full log-softmax at
// each scored position.
func (r ModelReference) Window(ctx context.Context, w Window) ([]RefToken, error) {
	logits, err := r.Model.Forward(ctx, w.Input)
	if err != nil {
		return nil, fmt.Errorf("reference model: window %d: %w", w.Index, err)
	}
	V := r.Model.cfg.VocabSize
	out := make([]RefToken, w.Scored())
	parallelFor(len(out), r.Model.workers(), func(i int) {
		p := w.First + i
		row := logits[p*V : (p+1)*V]
		lse := logSumExp(row)
		lp := make([]float32, V)
		for j, v := range row {
			lp[j] = float32(logProb32(v, lse))
		}
		out[i] = RefToken{
			LogProbs:      lp,
			RestLogProb:   float32(math.Inf(-1)),
			TargetLogProb: lp[w.Input[p+1]],
			Argmax:        int32(argmax(row)),
		}
	})
	return out, nil
}

// EvalOptions configure Evaluate.
type EvalOptions struct {
	// Reference, when set, adds KL divergence, top-1 agreement and the
	// reference's perplexity to the sums.
	Reference Reference
	// Record, when set, receives the evaluated model's top-k
	// log-probabilities of every window, to be used as a reference later.
	Record *LogProbWriter
}

// Evaluate runs m over the windows (any subset of a protocol's windows, in
// any order) and returns their mergeable sums.
func Evaluate(ctx context.Context, m *Model, windows []Window, opts EvalOptions) (*Sums, error) {
	s := &Sums{Reference: opts.Reference != nil}
	V := m.cfg.VocabSize
	if sl, ok := opts.Reference.(*SavedLogProbs); ok && sl.Vocab != V {
		return nil, fmt.Errorf("infer: saved log-probs are for a vocabulary of %d, the model has %d", sl.Vocab, V)
	}
	if opts.Record != nil && opts.Record.vocab != V {
		return nil, fmt.Errorf("infer: log-prob writer is for a vocabulary of %d, the model has %d", opts.Record.vocab, V)
	}
	for _, w := range windows {
		if w.First < 0 || w.End <= w.First || w.End > len(w.Input)-1 {
			return nil, fmt.Errorf("infer: window %d: scored range [%d, %d) invalid for %d input tokens", w.Index, w.First, w.End, len(w.Input))
		}
		logits, err := m.Forward(ctx, w.Input)
		if err != nil {
			return nil, fmt.Errorf("evaluate window %d: %w", w.Index, err)
		}
		var ref []RefToken
		if opts.Reference != nil {
			if ref, err = opts.Reference.Window(ctx, w); err != nil {
				return nil, fmt.Errorf("evaluate window %d: %w", w.Index, err)
			}
			if len(ref) != w.Scored() {
				return nil, fmt.Errorf("evaluate window %d: reference has %d positions, window scores %d", w.Index, len(ref), w.Scored())
			}
		}
		n := w.Scored()
		nll := make([]float64, n)
		refNLL := make([]float64, n)
		kl := make([]float64, n)
		hit := make([]bool, n)
		var rec []RefToken
		if opts.Record != nil {
			rec = make([]RefToken, n)
		}
		parallelFor(n, m.workers(), func(i int) {
			p := w.First + i
			row := logits[p*V : (p+1)*V]
			lse := logSumExp(row)
			nll[i] = lse - float64(row[w.Input[p+1]])
			if rec != nil {
				rec[i] = topK(row, lse, opts.Record.k, w.Input[p+1])
			}
			if ref == nil {
				return
			}
			r := &ref[i]
			refNLL[i] = -float64(r.TargetLogProb)
			hit[i] = int32(argmax(row)) == r.Argmax
			if r.LogProbs != nil {
				kl[i] = klFull(r.LogProbs, row, lse)
			} else {
				kl[i] = KLTopK(r, row, lse)
			}
		})
		for i := range n {
			if math.IsNaN(nll[i]) || math.IsNaN(kl[i]) {
				return nil, fmt.Errorf("evaluate window %d: NaN log-likelihood or KL divergence at position %d", w.Index, w.First+i)
			}
		}
		ws := WindowSums{Index: w.Index, Tokens: n}
		for i := range n {
			ws.NLL += nll[i]
		}
		if ref != nil {
			ws.TokenKL = kl
			for i := range n {
				ws.RefNLL += refNLL[i]
				ws.KL += kl[i]
				if hit[i] {
					ws.Top1++
				}
			}
		}
		if opts.Record != nil {
			if err := opts.Record.WriteWindow(w, rec); err != nil {
				return nil, fmt.Errorf("evaluate window %d: %w", w.Index, err)
			}
		}
		s.Windows = append(s.Windows, ws)
	}
	slices.SortFunc(s.Windows, func(a, b WindowSums) int { return a.Index - b.Index })
	for i := 1; i < len(s.Windows); i++ {
		if s.Windows[i].Index == s.Windows[i-1].Index {
			return nil, fmt.Errorf("infer: window %d evaluated twice", s.Windows[i].Index)
		}
	}
	return s, nil
}

// logSumExp returns log Σ exp(x) in float64.
func logSumExp(x []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

// logProb32 is the log-probability of a logit given the row's log-sum-exp,
// rounded to float32 as references store it, so that a model compared with
// itself has a KL divergence of exactly 0.
func logProb32(logit float32, lse float64) float64 {
	return float64(float32(float64(logit) - lse))
}

// argmax returns the index of the largest value (the lowest on ties).
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// klFull is KL(P‖Q) = Σ_v p_v (log p_v − log q_v) with P the reference
// (log-probabilities refLP) and Q the model (logits row, log-sum-exp lse).
func klFull(refLP, row []float32, lse float64) float64 {
	var kl float64
	row = row[:len(refLP)]
	for v, lp := range refLP {
		if math.IsInf(float64(lp), -1) {
			continue
		}
		p := math.Exp(float64(lp))
		kl += p * (float64(lp) - logProb32(row[v], lse))
	}
	return max(kl, 0)
}

// KLTopK approximates KL(P‖Q) when only the reference's top k
// log-probabilities are known: the k tokens and one bucket "all others" are
// treated as a distribution of k+1 outcomes,
//
//	KL_k = Σ_{i∈top k} p_i (log p_i − log q_i) + P_r (log P_r − log Q_r),
//
// with P_r = exp(ref.RestLogProb) and Q_r = 1 − Σ_{i∈top k} q_i. By the
// log-sum inequality KL_k ≤ KL(P‖Q), with equality when the reference puts
// no mass outside the top k or when the model's distribution outside the
// top k is proportional to the reference's. row holds the model's logits
// and lse their log-sum-exp.
func KLTopK(ref *RefToken, row []float32, lse float64) float64 {
	var kl, qTop float64
	for i, id := range ref.TopIDs {
		lp := float64(ref.TopLogProbs[i])
		lq := logProb32(row[id], lse)
		qTop += math.Exp(lq)
		if math.IsInf(lp, -1) {
			continue
		}
		kl += math.Exp(lp) * (lp - lq)
	}
	if lr := float64(ref.RestLogProb); !math.IsInf(lr, -1) {
		lqRest := math.Inf(-1)
		if qTop < 1 {
			lqRest = float64(float32(math.Log1p(-qTop)))
		}
		lqRest = max(lqRest, -69) // Q_r ≥ 1e-30: the model's rounding cannot make KL infinite
		kl += math.Exp(lr) * (lr - lqRest)
	}
	return max(kl, 0)
}

// topK returns the k most probable tokens of a logits row (descending,
// ties by ascending id) with their log-probabilities, the log of the mass
// outside them, the target's log-probability and the argmax.
func topK(row []float32, lse float64, k int, target int32) RefToken {
	k = min(k, len(row))
	ids := make([]int32, 0, k+1)
	less := func(a, b int32) bool { // a ranks before b
		return row[a] > row[b] || (row[a] == row[b] && a < b)
	}
	for v := range row {
		id := int32(v)
		if len(ids) == k && !less(id, ids[k-1]) {
			continue
		}
		pos := len(ids)
		for pos > 0 && less(id, ids[pos-1]) {
			pos--
		}
		ids = slices.Insert(ids, pos, id)
		if len(ids) > k {
			ids = ids[:k]
		}
	}
	lps := make([]float32, k)
	var pTop float64
	for i, id := range ids {
		lp := logProb32(row[id], lse)
		lps[i] = float32(lp)
		pTop += math.Exp(lp)
	}
	rest := float32(math.Inf(-1))
	if pTop < 1 {
		rest = float32(math.Log1p(-pTop))
	}
	return RefToken{
		TopIDs: ids, TopLogProbs: lps, RestLogProb: rest,
		TargetLogProb: float32(float64(row[target]) - lse),
		Argmax:        ids[0],
	}
}
