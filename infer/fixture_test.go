package infer

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"testing"
)

// TestPerplexityReference checks the forward pass against perplexities
// computed outside adaptq (testdata/PROVENANCE.md).
func TestPerplexityReference(t *testing.T) {
	cases := []struct {
		name     string
		dir      string
		protocol Protocol
		ctx      int
		windows  int
		tokens   int64
		want     float64
		tol      float64
	}{
		{"f32 full", fixtureF32, ProtocolFull, 256, 60, 15300, 6.8144, 0.0005},
		{"bf16 sharded full", fixtureBF16, ProtocolFull, 256, 60, 15300, 6.8197, 0.0005},
		{"f32 llama.cpp", fixtureF32, ProtocolLlamaCpp, 256, 60, 60 * 127, 6.2132, 0.001},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.dir == fixtureBF16 {
				t.Skip("short")
			}
			m := loadFixture(t, c.dir)
			r := evaluate(t, m, fixtureWindows(t, c.protocol, c.ctx), EvalOptions{}).Result()
			t.Logf("%s ctx %d: %d windows, %d tokens, PPL %.5f (reference %.4f)", c.protocol, c.ctx, r.Windows, r.Tokens, r.PPL, c.want)
			if r.Windows != c.windows || r.Tokens != c.tokens {
				t.Errorf("%d windows, %d tokens; want %d, %d", r.Windows, r.Tokens, c.windows, c.tokens)
			}
			if math.Abs(r.PPL-c.want) > c.tol {
				t.Errorf("PPL %.5f, want %.4f ± %g", r.PPL, c.want, c.tol)
			}
		})
	}
}

// TestKLDivergence compares models with references: itself (KL 0, top-1
// 100%), the BF16 copy (small positive KL), live or saved as top-k.
func TestKLDivergence(t *testing.T) {
	f32 := loadFixture(t, fixtureF32)
	bf16 := loadFixture(t, fixtureBF16)
	ws := fixtureWindows(t, ProtocolFull, 256)[:12]

	// Save the F32 model's top-32 log-probabilities while evaluating it.
	var buf bytes.Buffer
	rec, err := NewLogProbWriter(&buf, 32, f32.Config().VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	base := evaluate(t, f32, ws, EvalOptions{Record: rec}).Result()
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	saved, err := ReadLogProbs(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if saved.Len() != len(ws) || saved.K != 32 {
		t.Fatalf("saved %d windows with k=%d", saved.Len(), saved.K)
	}
	t.Logf("AQLP file: %d bytes for %d positions", buf.Len(), base.Tokens)

	cases := []struct {
		name         string
		m            *Model
		ref          Reference
		klMin, klMax float64
		top1Min      float64
	}{
		{"self live", f32, ModelReference{f32}, 0, 0, 1},
		{"self saved top-32", f32, saved, 0, 0, 1},
		{"bf16 vs f32 live", bf16, ModelReference{f32}, 1e-6, 1e-2, 0.95},
		{"bf16 vs f32 saved top-32", bf16, saved, 1e-6, 1e-2, 0.95},
	}
	results := map[string]Result{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := evaluate(t, c.m, ws, EvalOptions{Reference: c.ref}).Result()
			results[c.name] = r
			t.Logf("PPL %.5f ref %.5f ratio %.6f KL mean %.3g median %.3g p99 %.3g max %.3g top-1 %.4f",
				r.PPL, r.RefPPL, r.PPLRatio, r.KLMean, r.KLMedian, r.KLP99, r.KLMax, r.Top1)
			if r.KLMean < c.klMin || r.KLMean > c.klMax {
				t.Errorf("KL mean %g outside [%g, %g]", r.KLMean, c.klMin, c.klMax)
			}
			if r.Top1 < c.top1Min {
				t.Errorf("top-1 agreement %g < %g", r.Top1, c.top1Min)
			}
			if math.Abs(r.RefPPL/base.PPL-1) > 1e-6 {
				t.Errorf("reference PPL %.7f, the reference model's own PPL is %.7f", r.RefPPL, base.PPL)
			}
		})
	}
	live, topk := results["bf16 vs f32 live"], results["bf16 vs f32 saved top-32"]
	if topk.KLMean > live.KLMean*(1+1e-4) || topk.KLMean < 0.5*live.KLMean {
		t.Errorf("top-32 KL %g should be a slight underestimate of the exact %g", topk.KLMean, live.KLMean)
	}
	if live.Top1 != topk.Top1 {
		t.Errorf("top-1 agreement differs: live %g, saved %g", live.Top1, topk.Top1)
	}
}

// TestMergeEqualsSingleRun evaluates every window on its own (with
// different worker counts) and checks that merging any partition gives the
// single run's result exactly.
func TestMergeEqualsSingleRun(t *testing.T) {
	f32 := loadFixture(t, fixtureF32)
	bf16 := loadFixture(t, fixtureBF16)
	ws := fixtureWindows(t, ProtocolLlamaCpp, 128)[:9]
	opts := EvalOptions{Reference: ModelReference{f32}}
	whole := evaluate(t, bf16, ws, opts)
	want := whole.Result()
	single := make([]*Sums, len(ws))
	for i := range ws {
		m, err := bf16.With(Options{Workers: 1 + i%3})
		if err != nil {
			t.Fatal(err)
		}
		single[i] = evaluate(t, m, ws[i:i+1], opts)
	}
	splits := []struct {
		name  string
		parts [][]int
	}{
		{"one part", [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8}}},
		{"halves", [][]int{{0, 1, 2, 3}, {4, 5, 6, 7, 8}}},
		{"interleaved", [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}},
		{"reversed singletons", [][]int{{8}, {7}, {6}, {5}, {4}, {3}, {2}, {1}, {0}}},
	}
	for _, sp := range splits {
		t.Run(sp.name, func(t *testing.T) {
			var parts []*Sums
			for _, idx := range sp.parts {
				var sub []*Sums
				for _, i := range idx {
					sub = append(sub, single[i])
				}
				p, err := Merge(sub...)
				if err != nil {
					t.Fatal(err)
				}
				// Round-trip through JSON as a distributed worker would.
				b, err := json.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				var q Sums
				if err := json.Unmarshal(b, &q); err != nil {
					t.Fatal(err)
				}
				parts = append(parts, &q)
			}
			m, err := Merge(parts...)
			if err != nil {
				t.Fatal(err)
			}
			got := m.Result()
			if rel := math.Abs(got.PPL/want.PPL - 1); rel > 1e-9 {
				t.Errorf("PPL relative difference %g", rel)
			}
			if got != want {
				t.Errorf("merged result %+v\nsingle run    %+v", got, want)
			}
		})
	}
	if _, err := Merge(single[0], single[0]); err == nil {
		t.Error("merging a window twice succeeded")
	}
	noRef := evaluate(t, bf16, ws[:1], EvalOptions{})
	if _, err := Merge(single[1], noRef); err == nil {
		t.Error("merging sums with and without reference succeeded")
	}
}

// TestActivationQuant measures simulated activation quantization on the
// fixture (protocol full, ctx 256) and checks the expected ordering.
func TestActivationQuant(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	f32 := loadFixture(t, fixtureF32)
	ws := fixtureWindows(t, ProtocolFull, 256)
	cases := []ActQuant{
		{},
		{Hadamard: true},
		{Bits: 8},
		{Bits: 8, Hadamard: true},
		{Bits: 4},
		{Bits: 4, Hadamard: true},
	}
	ppl := map[ActQuant]float64{}
	for _, a := range cases {
		m, err := f32.With(Options{Act: a})
		if err != nil {
			t.Fatal(err)
		}
		ppl[a] = evaluate(t, m, ws, EvalOptions{}).Result().PPL
		t.Logf("act-bits %d hadamard %v: PPL %.5f", a.Bits, a.Hadamard, ppl[a])
	}
	base := ppl[ActQuant{}]
	if d := math.Abs(ppl[ActQuant{Hadamard: true}] - base); d > 1e-4 {
		t.Errorf("Hadamard rotation without quantization changed PPL by %g", d)
	}
	if !(ppl[ActQuant{Bits: 4}] > ppl[ActQuant{Bits: 8}] && ppl[ActQuant{Bits: 8}] >= base-1e-3) {
		t.Errorf("expected PPL(4-bit) > PPL(8-bit) ≳ PPL(float)")
	}
	if ppl[ActQuant{Bits: 4, Hadamard: true}] >= ppl[ActQuant{Bits: 4}] {
		t.Errorf("the Hadamard transform does not help 4-bit activations here")
	}
}

// TestWorkersDeterministic checks that logits are bit-identical for any
// number of workers, with and without activation quantization, in both
// modes.
func TestWorkersDeterministic(t *testing.T) {
	f32 := loadFixture(t, fixtureF32)
	in := fixtureWindows(t, ProtocolFull, 256)[3].Input
	for _, opts := range []Options{{}, {Act: ActQuant{Bits: 4, Hadamard: true}}, {Exact: true}, {Exact: true, Act: ActQuant{Bits: 4, Hadamard: true}}} {
		var first []float32
		for _, w := range []int{1, 2, 3, 7} {
			opts.Workers = w
			m, err := f32.With(opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Forward(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = got
			} else if !slices.Equal(first, got) {
				t.Errorf("options %+v: logits with %d workers differ from 1 worker", opts, w)
			}
		}
	}
}

// TestSavedLogProbsMismatch checks that a saved reference refuses windows
// it does not hold.
func TestSavedLogProbsMismatch(t *testing.T) {
	f32 := loadFixture(t, fixtureF32)
	ws := fixtureWindows(t, ProtocolLlamaCpp, 64)[:3]
	var buf bytes.Buffer
	rec, err := NewLogProbWriter(&buf, 8, f32.Config().VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	evaluate(t, f32, ws[:2], EvalOptions{Record: rec})
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	saved, err := ReadLogProbs(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	other := ws[1]
	other.Input = slices.Clone(other.Input)
	other.Input[5]++
	for _, c := range []struct {
		name string
		w    Window
	}{{"not saved", ws[2]}, {"other tokens", other}} {
		if _, err := Evaluate(context.Background(), f32, []Window{c.w}, EvalOptions{Reference: saved}); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := ReadLogProbs(bytes.NewReader(buf.Bytes()[:buf.Len()-3])); err == nil {
		t.Error("truncated file read without error")
	}
}
