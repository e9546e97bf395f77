package infer

import (
	"context"
	"fmt"
	"math"

	"github.com/ohms-project/adaptq/kernels"
	"github.com/ohms-project/adaptq/model"
)

// ropeTable holds the rotary inverse frequencies of one head (head_dim/2
// values), after llama3 scaling when the config asks for it.
type ropeTable struct {
	invFreq []float32
}

// newRopeTable computes inv_freq[i] = theta^(-2i/head_dim) in float32, as
// Hugging Face transformers does, then applies llama3 rope scaling:
// wavelengths 2π/f shorter than original_max/high_freq_factor are kept,
// those longer than original_max/low_freq_factor are divided by factor, and
// those in between are interpolated with
// s = (original_max/wavelen − low)/(high − low), f ← (1−s)·f/factor + s·f.
func newRopeTable(cfg *model.Config) *ropeTable {
	half := cfg.HeadDim / 2
	inv := make([]float32, half)
	for i := range inv {
		exp := float32(2*i) / float32(cfg.HeadDim)
		inv[i] = float32(1 / math.Pow(cfg.RopeTheta, float64(exp)))
	}
	if rs := cfg.RopeScaling; rs != nil && rs.Type == "llama3" {
		old := float64(rs.OriginalMaxPositionEmbeddings)
		lowWave := old / rs.LowFreqFactor
		highWave := old / rs.HighFreqFactor
		for i, f32 := range inv {
			f := float64(f32)
			wave := 2 * math.Pi / f
			switch {
			case wave < highWave:
			case wave > lowWave:
				f /= rs.Factor
			default:
				s := (old/wave - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				f = (1-s)*f/rs.Factor + s*f
			}
			inv[i] = float32(f)
		}
	}
	return &ropeTable{invFreq: inv}
}

// cosSin returns cos and sin of the rotary angles for positions
// [pos0, pos0+T): index t*half+i, angle float32(pos0+t)·inv_freq[i]
// rounded to float32.
func (r *ropeTable) cosSin(pos0, T int) (cos, sin []float32) {
	half := len(r.invFreq)
	cos = make([]float32, T*half)
	sin = make([]float32, T*half)
	for p := range T {
		for i, f := range r.invFreq {
			a := float64(float32(pos0+p) * f)
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}

// applyRope rotates each head of x (heads·head_dim values for one token at
// position p) in Hugging Face's rotate_half convention: the pairs are
// (i, i+head_dim/2) within each head.
func applyRope(x []float32, heads, hd int, cos, sin []float32) {
	half := hd / 2
	for h := range heads {
		v := x[h*hd : (h+1)*hd]
		for i := range half {
			a, b := v[i], v[i+half]
			c, s := cos[i], sin[i]
			v[i] = float32(a*c) - float32(b*s)
			v[i+half] = float32(b*c) + float32(a*s)
		}
	}
}

// rmsNorm writes x·w/sqrt(mean(x²)+eps) to dst (float64 sum of squares in
// index order).
func rmsNorm(dst, x, w []float32, eps float64) {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(x))+eps))
	w = w[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = w[i] * float32(v*scale)
	}
}

// silu is x·sigmoid(x).
func silu(x float32) float32 {
	return float32(float64(x) / (1 + math.Exp(-float64(x))))
}

// Forward runs the model over tokens at positions 0..len(tokens)-1 with
// causal attention and returns the logits, len(tokens)×vocab values
// (row t predicts the token after tokens[t]). The result is the same for
// any number of workers.
func (m *Model) Forward(ctx context.Context, tokens []int32) ([]float32, error) {
	return m.forward(ctx, tokens, nil, false)
}

// forward runs tokens at positions pos0..pos0+len(tokens)-1, where pos0 is
// the number of positions held in cache (0 without a cache). With a cache,
// the new tokens attend to the cached keys and values as well as to each
// other, and their keys and values are appended to the cache; on error the
// cache is left as it was. With lastOnly only the last token's logits are
// computed (vocab values). Every value is computed exactly as a cacheless
// Forward over the whole sequence computes it, so the logits are
// bit-identical to the corresponding rows of Forward.
func (m *Model) forward(ctx context.Context, tokens []int32, cache *kvCache, lastOnly bool) ([]float32, error) {
	return m.run(ctx, tokens, cache, lastOnly, nil)
}

// run is forward with an optional calibration tap, which observes the
// input of every linear layer; with a tap no logits are computed (the
// result is nil), and the head's input is observed at every position when
// the tap asks for it.
func (m *Model) run(ctx context.Context, tokens []int32, cache *kvCache, lastOnly bool, tap *calibTap) (_ []float32, err error) {
	cfg := m.cfg
	T := len(tokens)
	if T == 0 {
		return nil, fmt.Errorf("infer: forward of an empty window")
	}
	pos0 := 0
	if cache != nil {
		pos0 = cache.n
		defer func() {
			if err != nil {
				cache.truncate(pos0)
			}
		}()
	}
	H, I, V := cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize
	QD, KD, hd := cfg.QDim(), cfg.KVDim(), cfg.HeadDim
	nw := m.workers()
	eps := cfg.RMSNormEps

	x := make([]float32, T*H)
	for t, tok := range tokens {
		if tok < 0 || int(tok) >= V {
			return nil, fmt.Errorf("infer: token %d at position %d is outside the vocabulary of %d", tok, t, V)
		}
		row, err := m.w.Embed.RowBlock(int(tok), 1, x[t*H:(t+1)*H])
		if err != nil {
			return nil, fmt.Errorf("infer: embedding of token %d: %w", tok, err)
		}
		copy(x[t*H:(t+1)*H], row)
	}
	cos, sin := m.rope.cosSin(pos0, T)
	half := hd / 2

	xn := make([]float32, T*H)
	scratch := make([]float32, T*max(H, I, QD))
	q := make([]float32, T*QD)
	k := make([]float32, T*KD)
	v := make([]float32, T*KD)
	att := make([]float32, T*QD)
	tmp := make([]float32, T*H)
	g := make([]float32, T*I)
	u := make([]float32, T*I)

	norm := func(dst, src, w []float32) {
		parallelFor(T, nw, func(t int) {
			rmsNorm(dst[t*H:(t+1)*H], src[t*H:(t+1)*H], w, eps)
		})
	}
	addBias := func(y, b []float32, n int) {
		if b == nil {
			return
		}
		for t := range T {
			row := y[t*n : (t+1)*n]
			for i := range row {
				row[i] += b[i]
			}
		}
	}
	for l := range m.w.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		L := &m.w.Layers[l]
		wrap := func(err error, what string) error {
			return fmt.Errorf("infer: layer %d %s: %w", l, what, err)
		}
		// Attention.
		norm(xn, x, L.AttnNorm)
		tap.observe(Site{l, SiteAttn}, xn, T, H)
		a, err := m.actInput(xn, scratch, T, H)
		if err != nil {
			return nil, wrap(err, "attention input")
		}
		if err := matMul(L.Q, q, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "q")
		}
		if err := matMul(L.K, k, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "k")
		}
		if err := matMul(L.V, v, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "v")
		}
		addBias(q, L.QBias, QD)
		addBias(k, L.KBias, KD)
		addBias(v, L.VBias, KD)
		parallelFor(T, nw, func(t int) {
			qt, kt := q[t*QD:(t+1)*QD], k[t*KD:(t+1)*KD]
			if L.QNorm != nil {
				for h := range cfg.NumHeads {
					s := qt[h*hd : (h+1)*hd]
					rmsNorm(s, s, L.QNorm, eps)
				}
				for h := range cfg.NumKVHeads {
					s := kt[h*hd : (h+1)*hd]
					rmsNorm(s, s, L.KNorm, eps)
				}
			}
			c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
			applyRope(qt, cfg.NumHeads, hd, c, s)
			applyRope(kt, cfg.NumKVHeads, hd, c, s)
		})
		kAll, vAll := k, v
		if cache != nil {
			kAll, vAll = cache.add(l, k, v)
		}
		m.attention(att, q, kAll, vAll, T, pos0)
		tap.observe(Site{l, SiteO}, att, T, QD)
		a, err = m.actInput(att, scratch, T, QD)
		if err != nil {
			return nil, wrap(err, "o input")
		}
		if err := matMul(L.O, tmp, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "o")
		}
		for i := range x {
			x[i] += tmp[i]
		}
		// MLP.
		norm(xn, x, L.MLPNorm)
		tap.observe(Site{l, SiteMLP}, xn, T, H)
		if a, err = m.actInput(xn, scratch, T, H); err != nil {
			return nil, wrap(err, "mlp input")
		}
		if err := matMul(L.Gate, g, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "gate")
		}
		if err := matMul(L.Up, u, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "up")
		}
		for i := range g {
			g[i] = silu(g[i]) * u[i]
		}
		tap.observe(Site{l, SiteDown}, g, T, I)
		if a, err = m.actInput(g, scratch, T, I); err != nil {
			return nil, wrap(err, "down input")
		}
		if err := matMul(L.Down, tmp, a, T, nw, m.opts.Exact); err != nil {
			return nil, wrap(err, "down")
		}
		for i := range x {
			x[i] += tmp[i]
		}
	}
	if cache != nil {
		cache.n += T
	}
	if tap != nil {
		if tap.head {
			parallelFor(T, nw, func(t int) {
				rmsNorm(xn[t*H:(t+1)*H], x[t*H:(t+1)*H], m.w.FinalNorm, eps)
			})
			tap.observe(Site{-1, SiteHead}, xn, T, H)
		}
		return nil, nil
	}
	out := T // rows of logits: the last out positions
	if lastOnly {
		out = 1
	}
	x, xn = x[(T-out)*H:], xn[(T-out)*H:]
	parallelFor(out, nw, func(t int) {
		rmsNorm(xn[t*H:(t+1)*H], x[t*H:(t+1)*H], m.w.FinalNorm, eps)
	})
	logits := make([]float32, out*V)
	if err := matMul(m.w.LMHead, logits, xn, out, nw, m.opts.Exact); err != nil {
		return nil, fmt.Errorf("infer: lm_head: %w", err)
	}
	return logits, nil
}

// attnBlock is the number of query positions of one attention work item.
const attnBlock = 16

// attention computes causal grouped-query attention for T queries at
// positions pos0..pos0+T-1 (q holds T rows; k and v hold pos0+T rows, all
// positions from 0): query head h at position p attends with key/value head
// h/(heads/kv_heads) over positions 0..p. Softmax in float32 with float64
// exponentials; each output is computed by one work item in a fixed order
// that does not depend on pos0. Without Options.Exact the dot products and
// the weighted sums of values use fused multiply-adds (kernels.DotF32,
// kernels.AxpyF32); with it, dot's rounding and a product rounded before
// each addition.
func (m *Model) attention(out, q, k, v []float32, T, pos0 int) {
	exact := m.opts.Exact
	cfg := m.cfg
	hd, QD, KD := cfg.HeadDim, cfg.QDim(), cfg.KVDim()
	group := cfg.NumHeads / cfg.NumKVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	nb := (T + attnBlock - 1) / attnBlock
	parallelFor(cfg.NumHeads*nb, m.workers(), func(item int) {
		h, b := item/nb, item%nb
		kvh := h / group
		p := make([]float32, pos0+T)
		for t := b * attnBlock; t < min(T, (b+1)*attnBlock); t++ {
			qt := q[t*QD+h*hd : t*QD+(h+1)*hd]
			P := pos0 + t // absolute position of the query
			mx := float32(math.Inf(-1))
			for j := 0; j <= P; j++ {
				kj := k[j*KD+kvh*hd : j*KD+(kvh+1)*hd]
				var s float32
				if exact {
					s = dot(qt, kj) * scale
				} else {
					s = kernels.DotF32(qt, kj) * scale
				}
				p[j] = s
				mx = max(mx, s)
			}
			var sum float32
			for j := 0; j <= P; j++ {
				e := float32(math.Exp(float64(p[j] - mx)))
				p[j] = e
				sum += e
			}
			inv := 1 / sum
			o := out[t*QD+h*hd : t*QD+(h+1)*hd]
			clear(o)
			for j := 0; j <= P; j++ {
				w := p[j] * inv
				vj := v[j*KD+kvh*hd : j*KD+(kvh+1)*hd]
				if !exact {
					kernels.AxpyF32(o, w, vj)
					continue
				}
				vj = vj[:len(o)]
				for d, x := range vj {
					o[d] += float32(w * x)
				}
			}
		}
	})
}
