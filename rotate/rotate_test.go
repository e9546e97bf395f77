package rotate

import (
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

const eps = 1e-6 // RMSNorm epsilon of the reference model

type config struct {
	name                string
	d, f, heads, kv, hd int
	bias                bool
}

var configs = []config{
	{name: "d64-gqa", d: 64, f: 172, heads: 4, kv: 2, hd: 16},
	{name: "d96-gqa-hd24-bias", d: 96, f: 172, heads: 4, kv: 2, hd: 24, bias: true},
	{name: "d96-mha", d: 96, f: 256, heads: 6, kv: 6, hd: 16},
	{name: "d64-mqa-bias", d: 64, f: 96, heads: 8, kv: 1, hd: 8, bias: true},
	{name: "d172-gqa", d: 172, f: 344, heads: 4, kv: 2, hd: 32},
}

func randMatrix(rng *rand.Rand, rows, cols int) *Matrix {
	m := NewMatrix(rows, cols)
	s := 1 / math.Sqrt(float64(cols))
	for i := range m.Data {
		m.Data[i] = float32(rng.NormFloat64() * s)
	}
	return m
}

func randVec(rng *rand.Rand, n int, mean, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + sd*rng.NormFloat64())
	}
	return v
}

func randLayer(rng *rand.Rand, c config) *Layer {
	l := &Layer{
		AttnNorm: randVec(rng, c.d, 1, 0.3),
		MLPNorm:  randVec(rng, c.d, 1, 0.3),
		Q:        randMatrix(rng, c.heads*c.hd, c.d),
		K:        randMatrix(rng, c.kv*c.hd, c.d),
		V:        randMatrix(rng, c.kv*c.hd, c.d),
		O:        randMatrix(rng, c.d, c.heads*c.hd),
		Gate:     randMatrix(rng, c.f, c.d),
		Up:       randMatrix(rng, c.f, c.d),
		Down:     randMatrix(rng, c.d, c.f),
	}
	if c.bias {
		l.QBias = randVec(rng, c.heads*c.hd, 0, 0.1)
		l.KBias = randVec(rng, c.kv*c.hd, 0, 0.1)
		l.VBias = randVec(rng, c.kv*c.hd, 0, 0.1)
	}
	return l
}

func cloneVec(v []float32) []float32 {
	if v == nil {
		return nil
	}
	return append([]float32(nil), v...)
}

func cloneLayer(l *Layer) *Layer {
	return &Layer{
		AttnNorm: cloneVec(l.AttnNorm), MLPNorm: cloneVec(l.MLPNorm),
		Q: l.Q.Clone(), K: l.K.Clone(), V: l.V.Clone(), O: l.O.Clone(),
		Gate: l.Gate.Clone(), Up: l.Up.Clone(), Down: l.Down.Clone(),
		QBias: cloneVec(l.QBias), KBias: cloneVec(l.KBias), VBias: cloneVec(l.VBias),
	}
}

// ---- float64 reference computations ----

func rmsNorm(x []float64, g []float32) []float64 {
	ss := 0.0
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * r * float64(g[i])
	}
	return out
}

// matVec computes W·x (+ b).
func matVec(w *Matrix, x []float64, b []float32) []float64 {
	out := make([]float64, w.Rows)
	for i := range out {
		row := w.Data[i*w.Cols : (i+1)*w.Cols]
		s := 0.0
		for j, v := range row {
			s += float64(v) * x[j]
		}
		if b != nil {
			s += float64(b[i])
		}
		out[i] = s
	}
	return out
}

func add(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

// layerForward runs one decoder layer (causal softmax attention with GQA,
// no positional encoding since q and k are not changed by the rotation,
// SwiGLU MLP) on the sequence xs.
func layerForward(l *Layer, c config, xs [][]float64) [][]float64 {
	T := len(xs)
	qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for t, x := range xs {
		n := rmsNorm(x, l.AttnNorm)
		qs[t], ks[t], vs[t] = matVec(l.Q, n, l.QBias), matVec(l.K, n, l.KBias), matVec(l.V, n, l.VBias)
	}
	group := c.heads / c.kv
	out := make([][]float64, T)
	for t := range xs {
		attn := make([]float64, c.heads*c.hd)
		for h := 0; h < c.heads; h++ {
			g := h / group
			q := qs[t][h*c.hd : (h+1)*c.hd]
			scores := make([]float64, t+1)
			mx := math.Inf(-1)
			for u := 0; u <= t; u++ {
				k := ks[u][g*c.hd : (g+1)*c.hd]
				s := 0.0
				for i := range q {
					s += q[i] * k[i]
				}
				scores[u] = s / math.Sqrt(float64(c.hd))
				mx = max(mx, scores[u])
			}
			z := 0.0
			for u := range scores {
				scores[u] = math.Exp(scores[u] - mx)
				z += scores[u]
			}
			for u := range scores {
				v := vs[u][g*c.hd : (g+1)*c.hd]
				for i := range v {
					attn[h*c.hd+i] += scores[u] / z * v[i]
				}
			}
		}
		hres := add(xs[t], matVec(l.O, attn, nil))
		n := rmsNorm(hres, l.MLPNorm)
		gate, up := matVec(l.Gate, n, nil), matVec(l.Up, n, nil)
		for i := range gate {
			gate[i] = gate[i] / (1 + math.Exp(-gate[i])) * up[i]
		}
		out[t] = add(hres, matVec(l.Down, gate, nil))
	}
	return out
}

type model struct {
	embed     *Matrix
	layers    []*Layer
	finalNorm []float32
	lmHead    *Matrix
}

func randModel(rng *rand.Rand, c config, vocab, nLayers int) *model {
	m := &model{
		embed:     randMatrix(rng, vocab, c.d),
		finalNorm: randVec(rng, c.d, 1, 0.3),
		lmHead:    randMatrix(rng, vocab, c.d),
	}
	for range nLayers {
		m.layers = append(m.layers, randLayer(rng, c))
	}
	return m
}

func (m *model) clone() *model {
	c := &model{embed: m.embed.Clone(), finalNorm: cloneVec(m.finalNorm), lmHead: m.lmHead.Clone()}
	for _, l := range m.layers {
		c.layers = append(c.layers, cloneLayer(l))
	}
	return c
}

// forward returns the hidden states after every layer and the logits.
func (m *model) forward(c config, tokens []int) (hidden [][][]float64, logits [][]float64) {
	xs := make([][]float64, len(tokens))
	for t, tok := range tokens {
		xs[t] = make([]float64, c.d)
		for i := range xs[t] {
			xs[t][i] = float64(m.embed.Data[tok*c.d+i])
		}
	}
	for _, l := range m.layers {
		xs = layerForward(l, c, xs)
		hidden = append(hidden, xs)
	}
	for _, x := range xs {
		logits = append(logits, matVec(m.lmHead, rmsNorm(x, m.finalNorm), nil))
	}
	return hidden, logits
}

// relErr returns ‖a-b‖/‖b‖.
func relErr(a, b []float64) float64 {
	num, den := 0.0, 0.0
	for i := range a {
		num += (a[i] - b[i]) * (a[i] - b[i])
		den += b[i] * b[i]
	}
	return math.Sqrt(num / den)
}

// rotT returns Qᵀ·x for the residual rotation (via float32, as the model
// stores its activations in float32 anyway).
func rotT(t *testing.T, seed uint64, x []float64) []float64 {
	t.Helper()
	q, err := ResidualRotation(seed, len(x))
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(x))
	for i := range x {
		v[i] = float32(x[i])
	}
	if err := q.ApplyT(v); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i := range v {
		out[i] = float64(v[i])
	}
	return out
}

func toF64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

const tol = 1e-5

// TestModelEquivalence rotates a whole small model (embedding, layers,
// head) and checks that the logits are unchanged and that every hidden
// state is the rotated original, Qᵀ·x.
func TestModelEquivalence(t *testing.T) {
	const seed = 0xC0FFEE
	for _, c := range configs {
		for _, headRot := range []bool{false, true} {
			name := c.name
			if headRot {
				name += "/head-rotation"
			}
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(11, uint64(c.d)))
				orig := randModel(rng, c, 50, 2)
				rot := orig.clone()
				opts := Options{HeadRotation: headRot, NumHeads: c.heads, NumKVHeads: c.kv}
				if err := RotateEmbedding(rot.embed, seed); err != nil {
					t.Fatal(err)
				}
				for _, l := range rot.layers {
					if err := RotateLayer(l, seed, opts); err != nil {
						t.Fatal(err)
					}
				}
				if err := RotateHead(rot.lmHead, rot.finalNorm, seed); err != nil {
					t.Fatal(err)
				}
				for _, g := range [][]float32{rot.finalNorm, rot.layers[0].AttnNorm, rot.layers[1].MLPNorm} {
					for _, v := range g {
						if v != 1 {
							t.Fatalf("norm weight %g after rotation, want 1", v)
						}
					}
				}
				tokens := []int{3, 17, 0, 42, 17, 8, 29}
				h0, l0 := orig.forward(c, tokens)
				h1, l1 := rot.forward(c, tokens)
				for t2 := range tokens {
					if e := relErr(l1[t2], l0[t2]); e > tol {
						t.Errorf("token %d: logits relative error %g > %g", t2, e, tol)
					}
					for li := range h0 {
						if e := relErr(h1[li][t2], rotT(t, seed, h0[li][t2])); e > tol {
							t.Errorf("layer %d token %d: hidden state is not Qᵀx: relative error %g", li, t2, e)
						}
					}
				}
			})
		}
	}
}

// TestProjectionEquivalence checks each projection on its own:
// W·RMSNorm_g(x) = W'·RMSNorm_1(Qᵀx) for the input side and
// W'·a = Qᵀ·(W·a) for the output side.
func TestProjectionEquivalence(t *testing.T) {
	const seed = 7
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, uint64(c.d)))
			orig := randLayer(rng, c)
			rot := cloneLayer(orig)
			if err := RotateLayer(rot, seed, Options{}); err != nil {
				t.Fatal(err)
			}
			inputs := []struct {
				role   string
				w0, w1 *Matrix
				g0, g1 []float32
				b0, b1 []float32
			}{
				{"q_proj", orig.Q, rot.Q, orig.AttnNorm, rot.AttnNorm, orig.QBias, rot.QBias},
				{"k_proj", orig.K, rot.K, orig.AttnNorm, rot.AttnNorm, orig.KBias, rot.KBias},
				{"v_proj", orig.V, rot.V, orig.AttnNorm, rot.AttnNorm, orig.VBias, rot.VBias},
				{"gate_proj", orig.Gate, rot.Gate, orig.MLPNorm, rot.MLPNorm, nil, nil},
				{"up_proj", orig.Up, rot.Up, orig.MLPNorm, rot.MLPNorm, nil, nil},
			}
			for trial := 0; trial < 5; trial++ {
				x := toF64(randVec(rng, c.d, 0, 1))
				x[trial] += 30 // an outlier channel
				xr := rotT(t, seed, x)
				for _, in := range inputs {
					want := matVec(in.w0, rmsNorm(x, in.g0), in.b0)
					got := matVec(in.w1, rmsNorm(xr, in.g1), in.b1)
					if e := relErr(got, want); e > tol {
						t.Errorf("%s: relative error %g > %g", in.role, e, tol)
					}
				}
				outputs := []struct {
					role   string
					w0, w1 *Matrix
				}{{"o_proj", orig.O, rot.O}, {"down_proj", orig.Down, rot.Down}}
				for _, out := range outputs {
					a := toF64(randVec(rng, out.w0.Cols, 0, 1))
					want := rotT(t, seed, matVec(out.w0, a, nil))
					got := matVec(out.w1, a, nil)
					if e := relErr(got, want); e > tol {
						t.Errorf("%s: W'·a differs from Qᵀ·(W·a): relative error %g", out.role, e)
					}
				}
			}
		})
	}
}

// TestHeadRotationGQA checks the value/output path alone: with head
// rotation, each query head's value output is H_g times the original one,
// and O undoes it for every query head of the group.
func TestHeadRotationGQA(t *testing.T) {
	c := config{d: 64, f: 96, heads: 8, kv: 2, hd: 16}
	rng := rand.New(rand.NewPCG(31, 1))
	orig := randLayer(rng, c)
	orig.VBias = randVec(rng, c.kv*c.hd, 0, 0.1)
	noHead, withHead := cloneLayer(orig), cloneLayer(orig)
	if err := RotateLayer(noHead, 5, Options{}); err != nil {
		t.Fatal(err)
	}
	opts := Options{HeadRotation: true, NumHeads: c.heads, NumKVHeads: c.kv}
	if err := RotateLayer(withHead, 5, opts); err != nil {
		t.Fatal(err)
	}
	x := toF64(randVec(rng, c.d, 0, 1))
	v0, v1 := matVec(noHead.V, x, noHead.VBias), matVec(withHead.V, x, withHead.VBias)
	for g := 0; g < c.kv; g++ {
		h, _ := HeadRotation(5, c.hd, g)
		seg := make([]float32, c.hd)
		for i := range seg {
			seg[i] = float32(v0[g*c.hd+i])
		}
		_ = h.Apply(seg)
		if e := relErr(v1[g*c.hd:(g+1)*c.hd], toF64(seg)); e > tol {
			t.Errorf("kv head %d: values are not H_g·v: relative error %g", g, e)
		}
	}
	// Feed every query head the values of its kv head (as attention with a
	// single key would) and compare the o_proj outputs.
	attn0, attn1 := make([]float64, c.heads*c.hd), make([]float64, c.heads*c.hd)
	for i := 0; i < c.heads; i++ {
		g := i / (c.heads / c.kv)
		copy(attn0[i*c.hd:], v0[g*c.hd:(g+1)*c.hd])
		copy(attn1[i*c.hd:], v1[g*c.hd:(g+1)*c.hd])
	}
	if e := relErr(matVec(withHead.O, attn1, nil), matVec(noHead.O, attn0, nil)); e > tol {
		t.Errorf("o_proj does not undo the head rotation: relative error %g", e)
	}
	a, _ := HeadRotation(5, c.hd, 0)
	b, _ := HeadRotation(5, c.hd, 1)
	same := 0
	for i, s := range a.Signs() {
		if s == b.Signs()[i] {
			same++
		}
	}
	if same == c.hd {
		t.Error("kv heads 0 and 1 share their signs; want independent signs per kv head")
	}
}

func TestFoldNorms(t *testing.T) {
	c := configs[1]
	rng := rand.New(rand.NewPCG(41, 1))
	orig := randLayer(rng, c)
	l := cloneLayer(orig)
	if err := FoldNorms(l); err != nil {
		t.Fatal(err)
	}
	x := toF64(randVec(rng, c.d, 0, 1))
	if e := relErr(matVec(l.Q, rmsNorm(x, l.AttnNorm), l.QBias), matVec(orig.Q, rmsNorm(x, orig.AttnNorm), orig.QBias)); e > tol {
		t.Errorf("q_proj after fold: relative error %g", e)
	}
	if e := relErr(matVec(l.Up, rmsNorm(x, l.MLPNorm), nil), matVec(orig.Up, rmsNorm(x, orig.MLPNorm), nil)); e > tol {
		t.Errorf("up_proj after fold: relative error %g", e)
	}
	once := cloneLayer(l)
	if err := FoldNorms(l); err != nil {
		t.Fatal(err)
	}
	for i := range l.Q.Data {
		if l.Q.Data[i] != once.Q.Data[i] {
			t.Fatal("folding twice changed q_proj")
		}
	}

	head, norm := randMatrix(rng, 10, c.d), randVec(rng, c.d, 1, 0.3)
	head0, norm0 := head.Clone(), cloneVec(norm)
	if err := FoldFinalNorm(head, norm); err != nil {
		t.Fatal(err)
	}
	if e := relErr(matVec(head, rmsNorm(x, norm), nil), matVec(head0, rmsNorm(x, norm0), nil)); e > tol {
		t.Errorf("lm_head after fold: relative error %g", e)
	}
}

func TestDeterminismAndIndependence(t *testing.T) {
	c := configs[0]
	rng := rand.New(rand.NewPCG(51, 1))
	layers := []*Layer{randLayer(rng, c), randLayer(rng, c), randLayer(rng, c)}
	opts := Options{HeadRotation: true, NumHeads: c.heads, NumKVHeads: c.kv}
	seq := make([]*Layer, len(layers))
	for i, l := range layers {
		seq[i] = cloneLayer(l)
		if err := RotateLayer(seq[i], 99, opts); err != nil {
			t.Fatal(err)
		}
	}
	// Rotating the layers concurrently and in reverse order gives
	// bit-identical weights: each layer depends only on (seed, shapes).
	par := make([]*Layer, len(layers))
	var wg sync.WaitGroup
	for i := len(layers) - 1; i >= 0; i-- {
		par[i] = cloneLayer(layers[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := RotateLayer(par[i], 99, opts); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range layers {
		for _, pair := range [][2]*Matrix{{seq[i].Q, par[i].Q}, {seq[i].V, par[i].V}, {seq[i].O, par[i].O}, {seq[i].Down, par[i].Down}} {
			for j := range pair[0].Data {
				if pair[0].Data[j] != pair[1].Data[j] {
					t.Fatalf("layer %d: concurrent rotation differs at %d", i, j)
				}
			}
		}
	}
	// A different seed gives different weights.
	other := cloneLayer(layers[0])
	if err := RotateLayer(other, 100, opts); err != nil {
		t.Fatal(err)
	}
	if relErr(toF64(other.Q.Data), toF64(seq[0].Q.Data)) < 0.1 {
		t.Error("seeds 99 and 100 gave (nearly) the same rotation")
	}
}

func TestShapeErrors(t *testing.T) {
	c := configs[0] // d=64, f=172, 4 heads, 2 kv heads, hd=16
	rng := rand.New(rand.NewPCG(61, 1))
	base := randLayer(rng, c)
	gqa := Options{HeadRotation: true, NumHeads: c.heads, NumKVHeads: c.kv}
	tests := []struct {
		name   string
		mutate func(l *Layer)
		opts   Options
		want   string
	}{
		{"q cols", func(l *Layer) { l.Q = NewMatrix(64, 63) }, Options{}, "q_proj: shape [64 63], want in_features 64"},
		{"k missing", func(l *Layer) { l.K = nil }, Options{}, "k_proj: missing"},
		{"v rows", func(l *Layer) { l.V = NewMatrix(16, 64) }, Options{}, "v_proj: shape [16 64], want 32 rows like k_proj"},
		{"o shape", func(l *Layer) { l.O = NewMatrix(64, 32) }, Options{}, "o_proj: shape [64 32], want [64 64]"},
		{"gate cols", func(l *Layer) { l.Gate = NewMatrix(172, 65) }, Options{}, "gate_proj: shape [172 65]"},
		{"up rows", func(l *Layer) { l.Up = NewMatrix(170, 64) }, Options{}, "up_proj: shape [170 64], want 172 rows"},
		{"down shape", func(l *Layer) { l.Down = NewMatrix(64, 170) }, Options{}, "down_proj: shape [64 170], want [64 172]"},
		{"down data", func(l *Layer) { l.Down.Data = l.Down.Data[:10] }, Options{}, "down_proj: shape [64 172] with 10 elements"},
		{"mlp norm", func(l *Layer) { l.MLPNorm = l.MLPNorm[:60] }, Options{}, "post_attention_layernorm: length 60, want 64"},
		{"attn norm", func(l *Layer) { l.AttnNorm = nil }, Options{}, "input_layernorm: empty"},
		{"v bias", func(l *Layer) { l.VBias = make([]float32, 3) }, Options{}, "v_proj bias: length 3, want 32"},
		{"heads", func(l *Layer) {}, Options{HeadRotation: true, NumHeads: 4, NumKVHeads: 3}, "4 query heads and 3 kv heads"},
		{"heads vs v", func(l *Layer) {}, Options{HeadRotation: true, NumHeads: 4, NumKVHeads: 4}, "v_proj: shape [32 64], want 64 rows (4 kv heads × head dim 16)"},
		{"heads vs q", func(l *Layer) {}, Options{HeadRotation: true, NumHeads: 3, NumKVHeads: 1}, "not divisible by 3 heads"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := cloneLayer(base)
			tc.mutate(l)
			before := cloneLayer(l)
			err := RotateLayer(l, 1, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rotate: rotate layer: ") {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
			for _, pair := range [][2]*Matrix{{l.Q, before.Q}, {l.Down, before.Down}} {
				if pair[0] == nil {
					continue
				}
				for j := range pair[0].Data {
					if pair[0].Data[j] != pair[1].Data[j] {
						t.Fatal("layer modified despite the error")
					}
				}
			}
			if len(l.AttnNorm) > 0 && l.AttnNorm[0] != before.AttnNorm[0] {
				t.Error("norm modified despite the error")
			}
		})
	}
	if err := RotateLayer(cloneLayer(base), 1, gqa); err != nil {
		t.Errorf("valid GQA layer: %v", err)
	}
	if err := RotateLayer(nil, 1, Options{}); err == nil {
		t.Error("nil layer: want error")
	}
	if err := RotateEmbedding(&Matrix{Rows: 2, Cols: 3, Data: make([]float32, 5)}, 1); err == nil || !strings.Contains(err.Error(), "embed_tokens: shape [2 3] with 5 elements") {
		t.Errorf("RotateEmbedding: err = %v", err)
	}
	if err := RotateHead(NewMatrix(5, 64), make([]float32, 63), 1); err == nil || !strings.Contains(err.Error(), "lm_head: shape [5 64], want in_features 63") {
		t.Errorf("RotateHead: err = %v", err)
	}
	if err := FoldFinalNorm(nil, make([]float32, 4)); err == nil || !strings.Contains(err.Error(), "lm_head: missing") {
		t.Errorf("FoldFinalNorm: err = %v", err)
	}
	if err := FoldNorms(&Layer{AttnNorm: make([]float32, 4), MLPNorm: make([]float32, 4)}); err == nil || !strings.Contains(err.Error(), "q_proj: missing") {
		t.Errorf("FoldNorms: err = %v", err)
	}
}

// fill sets m to cheap deterministic pseudo-random values in [-1, 1).
func fill(data []float32, seed uint64) {
	s := seed | 1
	for i := range data {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		data[i] = float32(int32(s>>32)) / (1 << 31)
	}
}

func benchLayer(c config) *Layer {
	mk := func(r, cols int, seed uint64) *Matrix {
		m := NewMatrix(r, cols)
		fill(m.Data, seed)
		return m
	}
	l := &Layer{
		AttnNorm: make([]float32, c.d), MLPNorm: make([]float32, c.d),
		Q: mk(c.heads*c.hd, c.d, 1), K: mk(c.kv*c.hd, c.d, 2), V: mk(c.kv*c.hd, c.d, 3),
		O: mk(c.d, c.heads*c.hd, 4), Gate: mk(c.f, c.d, 5), Up: mk(c.f, c.d, 6), Down: mk(c.d, c.f, 7),
	}
	fill(l.AttnNorm, 8)
	fill(l.MLPNorm, 9)
	return l
}

func layerBytes(l *Layer) int64 {
	n := 0
	for _, m := range []*Matrix{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down} {
		n += len(m.Data)
	}
	return int64(4 * n)
}

// BenchmarkRotateLayer measures RotateLayer (one core, in place) for a
// Llama-2-7B layer (hidden 4096, intermediate 11008 = 43·256, 32 heads)
// and a Qwen2.5-0.5B layer (hidden 896 = 7·128, 14 heads, 2 kv heads).
func BenchmarkRotateLayer(b *testing.B) {
	for _, c := range []config{
		{name: "llama2-7b", d: 4096, f: 11008, heads: 32, kv: 32, hd: 128},
		{name: "qwen2.5-0.5b", d: 896, f: 4864, heads: 14, kv: 2, hd: 64},
	} {
		for _, headRot := range []bool{false, true} {
			name := c.name
			if headRot {
				name += "/head-rotation"
			}
			b.Run(name, func(b *testing.B) {
				l := benchLayer(c)
				opts := Options{HeadRotation: headRot, NumHeads: c.heads, NumKVHeads: c.kv}
				b.SetBytes(layerBytes(l))
				b.ResetTimer()
				for b.Loop() {
					if err := RotateLayer(l, 1, opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
