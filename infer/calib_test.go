package infer

import (
	"context"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/rotate"
)

func TestFixedExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		// Values whose bits all lie within the fixed-point grid round trip.
		v := math.Ldexp(float64(rng.Int64N(1<<53)), rng.IntN(60)-64)
		if rng.IntN(2) == 0 {
			v = -v
		}
		f, err := FixedOf(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Float64(); got != v {
			t.Fatalf("FixedOf(%v).Float64() = %v", v, got)
		}
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1 << 62, -(1 << 63)} {
		if _, err := FixedOf(bad); err == nil {
			t.Errorf("FixedOf(%v) did not fail", bad)
		}
	}
}

// TestFixedAssociative sums the same values in many orders and groupings:
// the result is always identical, and equal to the exact sum of the values
// truncated to the grid.
func TestFixedAssociative(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	vals := make([]float64, 2000)
	exact := new(big.Float).SetPrec(400)
	for i := range vals {
		vals[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(16)-8))
		f, _ := FixedOf(vals[i])
		bf := new(big.Float).SetPrec(400).SetInt64(f.Hi)
		bf.Mul(bf, new(big.Float).SetMantExp(big.NewFloat(1), 64))
		bf.Add(bf, new(big.Float).SetPrec(400).SetUint64(f.Lo))
		exact.Add(exact, bf)
	}
	exact.Mul(exact, new(big.Float).SetMantExp(big.NewFloat(1), -64))
	want, _ := exact.Float64()
	var first Fixed
	for trial := range 20 {
		perm := rng.Perm(len(vals))
		// Sum in chunks of a random size, then the chunks.
		chunk := 1 + rng.IntN(300)
		var total Fixed
		for i := 0; i < len(perm); i += chunk {
			var part Fixed
			for _, j := range perm[i:min(i+chunk, len(perm))] {
				f, _ := FixedOf(vals[j])
				part = part.Add(f)
			}
			total = total.Add(part)
		}
		if trial == 0 {
			first = total
		} else if total != first {
			t.Fatalf("trial %d: sum %+v differs from %+v", trial, total, first)
		}
	}
	if got := first.Float64(); got != want {
		t.Fatalf("fixed sum %v, exact sum of the truncated values %v", got, want)
	}
}

// TestCalibrateLayer0 checks the attention input of layer 0 against a
// direct computation: the RMS-normalised embeddings of the window's tokens.
func TestCalibrateLayer0(t *testing.T) {
	m := loadFixture(t, fixtureF32)
	ws := fixtureWindows(t, ProtocolLlamaCpp, 128)[:3]
	sums, err := m.Calibrate(context.Background(), ws, CalibOptions{Head: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config()
	H := cfg.HiddenSize
	want := make([]float64, H)
	var wantTok int64
	for _, w := range ws {
		win := make([]float64, H)
		xn := make([]float32, H)
		for _, tok := range w.Input {
			row, err := m.w.Embed.RowBlock(int(tok), 1, make([]float32, H))
			if err != nil {
				t.Fatal(err)
			}
			rmsNorm(xn, row, m.w.Layers[0].AttnNorm, cfg.RMSNormEps)
			for c, v := range xn {
				win[c] += float64(v) * float64(v)
			}
		}
		for c := range want {
			f, _ := FixedOf(win[c])
			want[c] += f.Float64() // exact here: no carries beyond float64 for these small sums
		}
		wantTok += int64(len(w.Input))
	}
	s := sums.Sites[0]
	if s.Site != (Site{0, SiteAttn}) || s.Tokens != wantTok {
		t.Fatalf("site 0 = %+v with %d tokens, want layer 0 attention with %d", s.Site, s.Tokens, wantTok)
	}
	for c := range want {
		if got := s.Sum2[c].Float64(); math.Abs(got-want[c]) > 1e-12*want[c] {
			t.Fatalf("column %d: Σx² %v, want %v", c, got, want[c])
		}
	}
	if n := len(sums.Sites); n != 4*cfg.NumLayers+1 || sums.Sites[n-1].Site.Kind != SiteHead {
		t.Fatalf("%d sites, want %d with the head last", n, 4*cfg.NumLayers+1)
	}
	if !reflect.DeepEqual(sums.Windows, []int{0, 1, 2}) {
		t.Fatalf("windows %v", sums.Windows)
	}
}

// TestCalibrateMergeEqualsSingleRun: the sums of any chunking of the
// windows, merged in any order, and of any worker count, are identical to
// one pass over all windows.
func TestCalibrateMergeEqualsSingleRun(t *testing.T) {
	ctx := context.Background()
	m := loadFixture(t, fixtureF32)
	ws := fixtureWindows(t, ProtocolLlamaCpp, 128)[:41]
	whole, err := m.Calibrate(ctx, ws, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 7, 20} {
		var parts []*CalibSums
		for i := 0; i < len(ws); i += chunk {
			p, err := m.Calibrate(ctx, ws[i:min(i+chunk, len(ws))], CalibOptions{})
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		// Reverse the parts: order must not matter.
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		got, err := MergeCalib(parts...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, whole) {
			t.Fatalf("chunking %d: merged sums differ from the single run", chunk)
		}
	}
	for _, workers := range []int{1, 3} {
		mw, err := m.With(Options{Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		got, err := mw.Calibrate(ctx, ws, CalibOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, whole) {
			t.Fatalf("%d workers: sums differ", workers)
		}
	}
	if _, err := MergeCalib(whole, whole); err == nil {
		t.Fatal("merging the same windows twice did not fail")
	}
}

// TestCalibrateRotated: on the rotated model the attention and MLP inputs
// are RMS-normalised rotated activations (the norm weights are folded into
// the weights), so their Σx² summed over columns is H per token; the down
// projection's input is the same function as in the original model.
func TestCalibrateRotated(t *testing.T) {
	ctx := context.Background()
	ck := openFixture(t, fixtureF32)
	orig := loadFixture(t, fixtureF32)
	w, err := RotatedWeights(ctx, ck, 1, rotate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := NewModel(ck.Config, w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ws := fixtureWindows(t, ProtocolLlamaCpp, 128)[:4]
	a, err := orig.Calibrate(ctx, ws, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := rot.Calibrate(ctx, ws, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	H := ck.Config.HiddenSize
	for i := range b.Sites {
		sa, sb := &a.Sites[i], &b.Sites[i]
		switch sb.Site.Kind {
		case SiteAttn, SiteMLP:
			var tot float64
			for _, f := range sb.Sum2 {
				tot += f.Float64()
			}
			perTok := tot / float64(sb.Tokens)
			if math.Abs(perTok-float64(H)) > 1e-3*float64(H) {
				t.Errorf("rotated %+v: Σx² per token %.4f, want ≈ %d", sb.Site, perTok, H)
			}
		case SiteDown:
			for c := range sb.Sum2 {
				x, y := sa.Sum2[c].Float64(), sb.Sum2[c].Float64()
				if math.Abs(x-y) > 1e-3*math.Max(x, 1e-3) {
					t.Fatalf("%+v column %d: rotated Σx² %v, original %v", sb.Site, c, y, x)
				}
			}
		}
	}
}

func TestCalibIMatrix(t *testing.T) {
	m := loadFixture(t, fixtureF32)
	ws := fixtureWindows(t, ProtocolLlamaCpp, 128)[:2]
	sums, err := m.Calibrate(context.Background(), ws, CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im, err := sums.IMatrix([]string{"tinystories"}, 128)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config()
	if len(im.Entries) != 7*cfg.NumLayers || im.ChunkCount != 2 || im.ChunkSize != 128 {
		t.Fatalf("%d entries, %d chunks of %d", len(im.Entries), im.ChunkCount, im.ChunkSize)
	}
	q, k := im.Entries["blk.1.attn_q.weight"], im.Entries["blk.1.attn_k.weight"]
	down := im.Entries["blk.1.ffn_down.weight"]
	if q == nil || k == nil || down == nil || !reflect.DeepEqual(q.Sum2, k.Sum2) || q.Counts[0] != 256 || down.Cols != cfg.IntermediateSize {
		t.Fatalf("entries: q %+v k %+v down %+v", q, k, down)
	}
}

func TestCalibBinaryRoundTrip(t *testing.T) {
	m := loadFixture(t, fixtureF32)
	sums, err := m.Calibrate(context.Background(), fixtureWindows(t, ProtocolLlamaCpp, 64)[:2], CalibOptions{Head: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := sums.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalCalib(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sums) {
		t.Fatal("binary round trip differs")
	}
	for _, cut := range []int{0, 3, 19, len(b) / 2, len(b) - 1} {
		if _, err := UnmarshalCalib(b[:cut]); err == nil {
			t.Errorf("truncated to %d bytes: no error", cut)
		}
	}
	flip := append([]byte(nil), b...)
	flip[len(flip)/3] ^= 1
	if _, err := UnmarshalCalib(flip); err == nil || !strings.Contains(err.Error(), "CRC-32C") {
		t.Errorf("flipped byte: %v", err)
	}
}

func FuzzUnmarshalCalib(f *testing.F) {
	s := &CalibSums{Windows: []int{0, 3}, Sites: []SiteSums{
		{Site: Site{0, SiteAttn}, Tokens: 10, Sum2: []Fixed{{0, 5}, {1, 0}}, Sum: []Fixed{{-1, 3}, {0, 0}}},
		{Site: Site{-1, SiteHead}, Tokens: 10, Sum2: []Fixed{{0, 7}}, Sum: []Fixed{{0, 1}}},
	}}
	b, err := s.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := UnmarshalCalib(data)
		if err != nil {
			return
		}
		again, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded sums do not encode: %v", err)
		}
		if string(again) != string(data) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}
