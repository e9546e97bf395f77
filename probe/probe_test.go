package probe

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/store"
)

func fixture(t testing.TB) (*infer.Model, []infer.Window) {
	t.Helper()
	s, err := store.NewLocal("../testdata/models/stories260k")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := infer.LoadModel(context.Background(), ck)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	w, err := infer.Windows(ids, infer.ProtocolFull, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	return m, w[:2]
}

func randomMatrix(rows, cols int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// Errors measures what an independent quantize/dequantize round trip
// gives, skips types whose blocks do not hold a row, and orders the
// K-quants by error.
func TestErrors(t *testing.T) {
	const rows, cols = 8, 512
	vals := randomMatrix(rows, cols, 1)
	imp := make([]float32, cols)
	for j := range imp {
		imp[j] = float32(1 + j%7)
	}
	for _, im := range [][]float32{nil, imp} {
		pts, err := Errors(vals, rows, cols, im, DefaultTypes, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(pts) != len(DefaultTypes) {
			t.Fatalf("%d points for %d types", len(pts), len(DefaultTypes))
		}
		byType := map[quant.Type]Point{}
		for _, p := range pts {
			byType[p.Type] = p
			back, err := Dequantized(p.Type, vals, cols, im, false)
			if err != nil {
				t.Fatal(err)
			}
			var se, ss float64
			for i, v := range vals {
				w := 1.0
				if im != nil {
					w = float64(im[i%cols])
				}
				d := float64(back[i]) - float64(v)
				se += w * d * d
				ss += w * float64(v) * float64(v)
			}
			if math.Abs(se/ss-p.Err) > 1e-12*max(1, p.Err) {
				t.Errorf("%s: err %g, round trip gives %g", p.Type, p.Err, se/ss)
			}
			rs, _ := p.Type.RowSize(cols)
			if p.Bytes != int64(rs*rows) {
				t.Errorf("%s: %d bytes, want %d", p.Type, p.Bytes, rs*rows)
			}
		}
		ks := []quant.Type{quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.Q8_0, quant.F16}
		for i := 1; i < len(ks); i++ {
			if !(byType[ks[i]].Err < byType[ks[i-1]].Err) {
				t.Errorf("%s err %g not below %s err %g", ks[i], byType[ks[i]].Err, ks[i-1], byType[ks[i-1]].Err)
			}
		}
	}
	pts, err := Errors(randomMatrix(2, 96, 2), 2, 96, nil, DefaultTypes, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pts {
		if p.Type.BlockSize() == 256 {
			t.Errorf("%s offered for rows of 96", p.Type)
		}
	}
	if _, err := Errors(vals, rows+1, cols, nil, DefaultTypes, false); err == nil {
		t.Error("wrong shape accepted")
	}
}

// A tensor replaced by itself changes nothing; quantized, it costs KL
// divergence, more at fewer bits; the original model is untouched.
func TestProberKLD(t *testing.T) {
	ctx := context.Background()
	m, windows := fixture(t)
	p, err := NewProber(ctx, m, windows)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := Targets(m.Weights())
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 7*m.Config().NumLayers; len(targets) != want { // tied head: no output.weight
		t.Fatalf("%d targets, want %d", len(targets), want)
	}
	before, err := m.Forward(ctx, windows[0].Input)
	if err != nil {
		t.Fatal(err)
	}
	tg := targets[3] // blk.0.attn_v.weight
	if tg.Name != "blk.0.attn_v.weight" {
		t.Fatalf("target 3 is %s", tg.Name)
	}
	same, err := p.KLD(ctx, tg, append([]float32(nil), tg.Values...))
	if err != nil {
		t.Fatal(err)
	}
	if same != 0 {
		t.Fatalf("identical weights: KLD %g, want 0", same)
	}
	var klds []float64
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q5_0, quant.Q8_0} {
		v, err := Dequantized(typ, tg.Values, tg.Cols, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		k, err := p.KLD(ctx, tg, v)
		if err != nil {
			t.Fatal(err)
		}
		klds = append(klds, k)
	}
	if !(klds[0] > klds[1] && klds[1] > klds[2] && klds[2] > 0) {
		t.Fatalf("KLD at Q4_0, Q5_0, Q8_0: %v (want decreasing, positive)", klds)
	}
	after, err := m.Forward(ctx, windows[0].Input)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if before[i] != after[i] {
			t.Fatal("probing changed the original model")
		}
	}
}

// Measure fits α near the second-order value 1 on the fixture, and its
// held-out predictions rank the measured KL divergences.
func TestMeasure(t *testing.T) {
	ctx := context.Background()
	m, windows := fixture(t)
	p, err := NewProber(ctx, m, windows)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := Targets(m.Weights())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Measure(ctx, p, targets, Options{AlphaType: quant.Q5_0, AlphaEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != len(targets) || len(rep.Sensitivity.S) != len(targets) {
		t.Fatalf("%d tensors, %d sensitivities, %d targets", len(rep.Tensors), len(rep.Sensitivity.S), len(targets))
	}
	if a := rep.Sensitivity.Alpha; a < 0.7 || a > 1.4 {
		t.Errorf("α = %.3f, want near 1", a)
	}
	if rep.HeldOut < 10 || rep.Spearman < 0.7 {
		t.Errorf("held-out rank correlation %.3f over %d tensors, want ≥ 0.7 over ≥ 10", rep.Spearman, rep.HeldOut)
	}
	t.Logf("α %.3f, held-out Spearman %.3f over %d tensors, %d probes", rep.Sensitivity.Alpha, rep.Spearman, rep.HeldOut, len(rep.Probes))
}

// BenchmarkErrors measures the error of a 7B-sized row block at every
// candidate type (MB/s of F32 input per candidate sweep).
func BenchmarkErrors(b *testing.B) {
	const rows, cols = 64, 4096
	vals := randomMatrix(rows, cols, 3)
	b.SetBytes(int64(len(vals) * 4))
	for b.Loop() {
		if _, err := Errors(vals, rows, cols, nil, DefaultTypes, false); err != nil {
			b.Fatal(err)
		}
	}
}

// Measuring disjoint subsets (a fleet's shards) and merging gives the
// whole measurement, fit included.
func TestMeasureMerge(t *testing.T) {
	ctx := context.Background()
	m, windows := fixture(t)
	p, err := NewProber(ctx, m, windows)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := Targets(m.Weights())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{AlphaType: quant.Q5_0, AlphaEvery: 3}
	whole, err := Measure(ctx, p, targets, o)
	if err != nil {
		t.Fatal(err)
	}
	var parts []*Report
	for _, r := range [][2]int{{0, 8}, {8, 20}, {20, len(targets)}} {
		rep, err := MeasureTargets(ctx, p, targets[r[0]:r[1]], o)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, rep)
	}
	merged, err := Merge(parts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := merged.Fit(quant.Q4_0); err != nil {
		t.Fatal(err)
	}
	if len(merged.Probes) != len(whole.Probes) || merged.Sensitivity.Alpha != whole.Sensitivity.Alpha || merged.Spearman != whole.Spearman {
		t.Fatalf("merged: %d probes, α %v, ρ %v; whole: %d, %v, %v", len(merged.Probes), merged.Sensitivity.Alpha, merged.Spearman,
			len(whole.Probes), whole.Sensitivity.Alpha, whole.Spearman)
	}
	for i := range whole.Probes {
		if merged.Probes[i] != whole.Probes[i] {
			t.Fatalf("probe %d: %+v vs %+v", i, merged.Probes[i], whole.Probes[i])
		}
	}
	if _, err := Merge(parts[0], parts[0]); err == nil {
		t.Fatal("a tensor measured twice was merged")
	}
}
