package infer

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
)

// synthConfig is a small config exercising GQA with head_dim·heads ≠ hidden.
func synthConfig() *model.Config {
	return &model.Config{
		ModelType: "llama", HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 16, VocabSize: 50,
		RMSNormEps: 1e-5, RopeTheta: 10000,
	}
}

// synthWeights draws random dense weights for cfg.
func synthWeights(cfg *model.Config, seed uint64) *Weights {
	rng := rand.New(rand.NewPCG(seed, 1))
	vec := func(n int, mean, sd float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(mean + sd*rng.NormFloat64())
		}
		return v
	}
	lin := func(rows, cols int) Linear {
		d, err := NewDense(rows, cols, vec(rows*cols, 0, 1/math.Sqrt(float64(cols))))
		if err != nil {
			panic(err)
		}
		return d
	}
	h, q, kv, in := cfg.HiddenSize, cfg.QDim(), cfg.KVDim(), cfg.IntermediateSize
	w := &Weights{Embed: lin(cfg.VocabSize, h), FinalNorm: vec(h, 1, 0.1)}
	w.LMHead = lin(cfg.VocabSize, h)
	for range cfg.NumLayers {
		L := Layer{
			AttnNorm: vec(h, 1, 0.1), MLPNorm: vec(h, 1, 0.1),
			Q: lin(q, h), K: lin(kv, h), V: lin(kv, h), O: lin(h, q),
			Gate: lin(in, h), Up: lin(in, h), Down: lin(h, in),
		}
		if cfg.AttentionBias {
			L.QBias, L.KBias, L.VBias = vec(q, 0, 0.5), vec(kv, 0, 0.5), vec(kv, 0, 0.5)
		}
		if cfg.QKNorm {
			L.QNorm, L.KNorm = vec(cfg.HeadDim, 1, 0.2), vec(cfg.HeadDim, 1, 0.2)
		}
		w.Layers = append(w.Layers, L)
	}
	return w
}

// naiveForward is a direct float64 transcription of the Hugging Face
// Llama/Qwen2/Qwen3 forward pass, written independently of Forward.
func naiveForward(cfg *model.Config, w *Weights, toks []int32) [][]float64 {
	mat := func(l Linear) [][]float64 {
		d := l.(*Dense)
		out := make([][]float64, d.Rows())
		for r := range out {
			out[r] = make([]float64, d.Cols())
			for c := range out[r] {
				out[r][c] = float64(d.Data()[r*d.Cols()+c])
			}
		}
		return out
	}
	mv := func(W [][]float64, x []float64) []float64 {
		y := make([]float64, len(W))
		for r := range W {
			for c, v := range x {
				y[r] += W[r][c] * v
			}
		}
		return y
	}
	norm := func(x []float64, g []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+cfg.RMSNormEps)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * s * float64(g[i])
		}
		return y
	}
	hd := cfg.HeadDim
	invFreq := make([]float64, hd/2)
	for i := range invFreq {
		f := 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(hd))
		if rs := cfg.RopeScaling; rs != nil {
			wl := 2 * math.Pi / f
			lo, hi := float64(rs.OriginalMaxPositionEmbeddings)/rs.LowFreqFactor, float64(rs.OriginalMaxPositionEmbeddings)/rs.HighFreqFactor
			if wl > lo {
				f /= rs.Factor
			} else if wl >= hi {
				sm := (float64(rs.OriginalMaxPositionEmbeddings)/wl - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				f = (1-sm)*f/rs.Factor + sm*f
			}
		}
		invFreq[i] = f
	}
	rope := func(x []float64, pos int) {
		for h := 0; h < len(x)/hd; h++ {
			v := x[h*hd : (h+1)*hd]
			rot := make([]float64, hd) // rotate_half: (-x2, x1)
			for i := range hd / 2 {
				rot[i], rot[i+hd/2] = -v[i+hd/2], v[i]
			}
			for i := range hd {
				a := float64(pos) * invFreq[i%(hd/2)]
				v[i] = v[i]*math.Cos(a) + rot[i]*math.Sin(a)
			}
		}
	}
	T := len(toks)
	E := mat(w.Embed)
	x := make([][]float64, T)
	for t, tok := range toks {
		x[t] = slices.Clone(E[tok])
	}
	for _, L := range w.Layers {
		Q, K, Vw, O := mat(L.Q), mat(L.K), mat(L.V), mat(L.O)
		G, U, D := mat(L.Gate), mat(L.Up), mat(L.Down)
		qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			xn := norm(x[t], L.AttnNorm)
			qs[t], ks[t], vs[t] = mv(Q, xn), mv(K, xn), mv(Vw, xn)
			for i := range qs[t] {
				if L.QBias != nil {
					qs[t][i] += float64(L.QBias[i])
				}
			}
			for i := range ks[t] {
				if L.KBias != nil {
					ks[t][i] += float64(L.KBias[i])
					vs[t][i] += float64(L.VBias[i])
				}
			}
			if L.QNorm != nil {
				for h := 0; h < cfg.NumHeads; h++ {
					copy(qs[t][h*hd:], norm(qs[t][h*hd:(h+1)*hd], L.QNorm))
				}
				for h := 0; h < cfg.NumKVHeads; h++ {
					copy(ks[t][h*hd:], norm(ks[t][h*hd:(h+1)*hd], L.KNorm))
				}
			}
			rope(qs[t], t)
			rope(ks[t], t)
		}
		for t := range T {
			att := make([]float64, cfg.QDim())
			for h := 0; h < cfg.NumHeads; h++ {
				kvh := h * cfg.NumKVHeads / cfg.NumHeads // repeat_kv
				sc := make([]float64, t+1)
				var mx = math.Inf(-1)
				for j := 0; j <= t; j++ {
					for d := range hd {
						sc[j] += qs[t][h*hd+d] * ks[j][kvh*hd+d]
					}
					sc[j] /= math.Sqrt(float64(hd))
					mx = max(mx, sc[j])
				}
				var sum float64
				for j := range sc {
					sc[j] = math.Exp(sc[j] - mx)
					sum += sc[j]
				}
				for j := range sc {
					for d := range hd {
						att[h*hd+d] += sc[j] / sum * vs[j][kvh*hd+d]
					}
				}
			}
			o := mv(O, att)
			for i := range x[t] {
				x[t][i] += o[i]
			}
			xn := norm(x[t], L.MLPNorm)
			g, u := mv(G, xn), mv(U, xn)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := mv(D, g)
			for i := range x[t] {
				x[t][i] += d[i]
			}
		}
	}
	LM := mat(w.LMHead)
	out := make([][]float64, T)
	for t := range T {
		out[t] = mv(LM, norm(x[t], w.FinalNorm))
	}
	return out
}

// TestForwardMatchesNaive runs the architecture variants on random weights
// against the independent float64 transcription.
func TestForwardMatchesNaive(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *model.Config)
	}{
		{"llama gqa", func(c *model.Config) {}},
		{"mha", func(c *model.Config) { c.NumKVHeads = 4 }},
		{"qwen2 biases", func(c *model.Config) { c.AttentionBias = true; c.RopeTheta = 1e6 }},
		{"qwen3 qk-norm", func(c *model.Config) { c.QKNorm = true; c.RopeTheta = 1e6 }},
		{"llama3 rope scaling", func(c *model.Config) {
			c.RopeTheta = 500000
			c.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}
		}},
		{"everything", func(c *model.Config) {
			c.AttentionBias, c.QKNorm = true, true
			c.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 4, LowFreqFactor: 1, HighFreqFactor: 2, OriginalMaxPositionEmbeddings: 32}
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := synthConfig()
			c.mod(cfg)
			w := synthWeights(cfg, uint64(i))
			m, err := NewModel(cfg, w, Options{})
			if err != nil {
				t.Fatal(err)
			}
			toks := make([]int32, 40)
			for j := range toks {
				toks[j] = int32((j*7 + 3) % cfg.VocabSize)
			}
			got, err := m.Forward(context.Background(), toks)
			if err != nil {
				t.Fatal(err)
			}
			want := naiveForward(cfg, w, toks)
			var worst float64
			for tt := range want {
				for v := range want[tt] {
					worst = max(worst, math.Abs(float64(got[tt*cfg.VocabSize+v])-want[tt][v]))
				}
			}
			if worst > 2e-4 {
				t.Errorf("max |logit − naive| = %g", worst)
			}
		})
	}
}

// TestRopeLlama3Regimes checks the three llama3 frequency regimes.
func TestRopeLlama3Regimes(t *testing.T) {
	cfg := synthConfig()
	cfg.HeadDim, cfg.RopeTheta = 128, 500000
	plain := newRopeTable(cfg).invFreq
	cfg.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
	scaled := newRopeTable(cfg).invFreq
	var kept, divided, mixed int
	for i := range plain {
		wave := 2 * math.Pi / float64(plain[i])
		ratio := float64(scaled[i]) / float64(plain[i])
		switch {
		case wave < 8192/4.0:
			kept++
			if ratio != 1 {
				t.Errorf("freq %d (wavelength %.0f) scaled by %g, want unchanged", i, wave, ratio)
			}
		case wave > 8192/1.0:
			divided++
			if math.Abs(ratio-1.0/8) > 1e-6 {
				t.Errorf("freq %d (wavelength %.0f) scaled by %g, want 1/8", i, wave, ratio)
			}
		default:
			mixed++
			if ratio <= 1.0/8 || ratio >= 1 {
				t.Errorf("freq %d (wavelength %.0f) scaled by %g, want in (1/8, 1)", i, wave, ratio)
			}
		}
	}
	if kept == 0 || divided == 0 || mixed == 0 {
		t.Errorf("regimes kept/divided/mixed = %d/%d/%d, want all present", kept, divided, mixed)
	}
}

// opaque hides a Dense so that the generic (row-block) paths are used.
type opaque struct{ d *Dense }

func (o opaque) Rows() int { return o.d.Rows() }
func (o opaque) Cols() int { return o.d.Cols() }
func (o opaque) RowBlock(first, n int, buf []float32) ([]float32, error) {
	v, err := o.d.RowBlock(first, n, nil)
	if err != nil {
		return nil, err
	}
	copy(buf, v) // like a dequantizer: fill the caller's buffer
	return buf[:len(v)], nil
}

// TestRowBlockLinear checks that a non-dense Linear (rotated on the fly
// for Hadamard) gives the same logits as the dense weights.
func TestRowBlockLinear(t *testing.T) {
	cfg := synthConfig()
	cfg.IntermediateSize = 44 // 4·11: block-diagonal Hadamard of 4×4 blocks
	w := synthWeights(cfg, 7)
	ow := *w
	ow.Layers = slices.Clone(w.Layers)
	for l := range ow.Layers {
		L := &ow.Layers[l]
		for _, p := range []*Linear{&L.Q, &L.K, &L.V, &L.O, &L.Gate, &L.Up, &L.Down} {
			*p = opaque{(*p).(*Dense)}
		}
	}
	ow.Embed, ow.LMHead = opaque{w.Embed.(*Dense)}, opaque{w.LMHead.(*Dense)}
	toks := []int32{1, 5, 9, 13, 2, 44, 0, 3}
	for _, act := range []ActQuant{{}, {Hadamard: true, HadamardSeed: 3}, {Bits: 8, Hadamard: true}} {
		dm, err := NewModel(cfg, w, Options{Act: act})
		if err != nil {
			t.Fatal(err)
		}
		om, err := NewModel(cfg, &ow, Options{Act: act, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		a, err := dm.Forward(context.Background(), toks)
		if err != nil {
			t.Fatal(err)
		}
		b, err := om.Forward(context.Background(), toks)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("act %+v: row-block weights give other logits than dense ones", act)
		}
		if act.Bits == 0 && act.Hadamard {
			plain, _ := NewModel(cfg, w, Options{})
			c, _ := plain.Forward(context.Background(), toks)
			var worst float64
			for i := range c {
				worst = max(worst, math.Abs(float64(c[i]-a[i])))
			}
			if worst > 1e-4 {
				t.Errorf("Hadamard rotation changed logits by up to %g", worst)
			}
		}
	}
}

func TestFakeQuant(t *testing.T) {
	cases := []struct {
		name string
		bits int
		in   []float32
		want []float32
	}{
		{"zeros", 4, []float32{0, 0, 0}, []float32{0, 0, 0}},
		{"absmax kept", 4, []float32{7, -7, 1}, []float32{7, -7, 1}},
		{"round half away", 4, []float32{14, 1, 3, -3}, []float32{14, 2, 4, -4}},
		{"8-bit", 8, []float32{127, 0.4, 0.6, -50.5}, []float32{127, 0, 1, -51}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := slices.Clone(c.in)
			fakeQuant(x, c.bits)
			if !slices.Equal(x, c.want) {
				t.Errorf("fakeQuant(%v, %d) = %v, want %v", c.in, c.bits, x, c.want)
			}
		})
	}
}

func TestWindows(t *testing.T) {
	ids := make([]int32, 20)
	for i := range ids {
		ids[i] = int32(100 + i)
	}
	cases := []struct {
		p          Protocol
		ctx        int
		n          int
		first, end int
		input0     []int32
		input1     []int32
	}{
		{ProtocolFull, 8, 2, 0, 7, []int32{1, 100, 101, 102, 103, 104, 105, 106}, []int32{1, 107, 108, 109, 110, 111, 112, 113}},
		// Stream BOS,100..119 (21 tokens): chunks [0,8) and [8,16), first replaced by BOS.
		{ProtocolLlamaCpp, 8, 2, 4, 7, []int32{1, 100, 101, 102, 103, 104, 105, 106}, []int32{1, 108, 109, 110, 111, 112, 113, 114}},
	}
	for _, c := range cases {
		t.Run(string(c.p), func(t *testing.T) {
			ws, err := Windows(ids, c.p, c.ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != c.n {
				t.Fatalf("%d windows, want %d", len(ws), c.n)
			}
			if k, err := CountWindows(len(ids), c.p, c.ctx); err != nil || k != c.n {
				t.Fatalf("CountWindows: %d, %v; want %d", k, err, c.n)
			}
			if ws[0].First != c.first || ws[0].End != c.end {
				t.Errorf("scored [%d, %d), want [%d, %d)", ws[0].First, ws[0].End, c.first, c.end)
			}
			if !slices.Equal(ws[0].Input, c.input0) || !slices.Equal(ws[1].Input, c.input1) {
				t.Errorf("inputs %v %v, want %v %v", ws[0].Input, ws[1].Input, c.input0, c.input1)
			}
		})
	}
	for _, c := range []struct {
		name string
		p    Protocol
		ctx  int
		ids  []int32
	}{
		{"unknown protocol", "wikitext", 8, ids},
		{"too few ids", ProtocolFull, 64, ids},
		{"tiny context", ProtocolFull, 2, ids},
	} {
		if _, err := Windows(c.ids, c.p, c.ctx, 1); err == nil {
			t.Errorf("%s: no error", c.name)
		}
		if k, err := CountWindows(len(c.ids), c.p, c.ctx); (err == nil) != (c.name == "too few ids") || k != 0 {
			t.Errorf("%s: CountWindows %d, %v", c.name, k, err)
		}
	}
}

func TestReadIDs(t *testing.T) {
	cases := []struct {
		in      string
		want    []int32
		wantErr bool
	}{
		{"1 2 3", []int32{1, 2, 3}, false},
		{" 7\n8\t9 \n", []int32{7, 8, 9}, false},
		{"", nil, false},
		{"1 x 3", nil, true},
		{"-1", nil, true},
		{"99999999999", nil, true},
	}
	for _, c := range cases {
		got, err := ReadIDs(strings.NewReader(c.in))
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("ReadIDs(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.wantErr)
		}
	}
}

func TestNewModelErrors(t *testing.T) {
	cfg := synthConfig()
	cases := []struct {
		name string
		mod  func(c *model.Config, w *Weights)
		opts Options
	}{
		{"wrong q shape", func(c *model.Config, w *Weights) { w.Layers[0].Q = w.Layers[0].K }, Options{}},
		{"missing layer", func(c *model.Config, w *Weights) { w.Layers = w.Layers[:1] }, Options{}},
		{"bias without attention_bias", func(c *model.Config, w *Weights) { w.Layers[1].QBias = make([]float32, c.QDim()) }, Options{}},
		{"missing qk-norm", func(c *model.Config, w *Weights) { c.QKNorm = true }, Options{}},
		{"rope type", func(c *model.Config, w *Weights) { c.RopeScaling = &model.RopeScaling{Type: "yarn", Factor: 4} }, Options{}},
		{"act bits", func(c *model.Config, w *Weights) {}, Options{Act: ActQuant{Bits: 3}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := *cfg
			w := synthWeights(&cfg, 1)
			c.mod(&cfg, w)
			if _, err := NewModel(&cfg, w, c.opts); err == nil {
				t.Error("no error")
			}
		})
	}
	m, err := NewModel(cfg, synthWeights(cfg, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Forward(context.Background(), []int32{1, int32(cfg.VocabSize)}); err == nil {
		t.Error("token outside the vocabulary accepted")
	}
}

// TestCountWindows: the count without building equals the windows built,
// at every length around the window boundaries.
func TestCountWindows(t *testing.T) {
	ids := make([]int32, 40)
	for _, p := range []Protocol{ProtocolFull, ProtocolLlamaCpp} {
		for ctx := 4; ctx <= 10; ctx++ {
			for n := 0; n <= len(ids); n++ {
				k, err := CountWindows(n, p, ctx)
				if err != nil {
					t.Fatal(err)
				}
				ws, err := Windows(ids[:n], p, ctx, 1)
				if len(ws) != k || (err != nil) != (k == 0) {
					t.Fatalf("%s ctx %d, %d ids: CountWindows %d, Windows %d (%v)", p, ctx, n, k, len(ws), err)
				}
			}
		}
	}
}
