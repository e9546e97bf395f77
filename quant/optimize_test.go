package quant

import (
	"bytes"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// optDataset is a matrix to quantize with its row length.
type optDataset struct {
	name   string
	rowLen int
	data   []float32
}

// optDatasets are the matrices the optimised quantizers are checked on:
// Gaussian rows with outliers, plain Gaussian rows, and the stories260k
// weights (all tensors as rows of 256, and each tensor in its own rows
// where the row length fits the block size).
func optDatasets(t *testing.T, typ Type) []optDataset {
	t.Helper()
	rng := rand.New(rand.NewPCG(71, 72))
	ds := []optDataset{
		{"gauss+outliers/512", 512, gaussianOutliers(rng, 64*512, 0.02, 0.002, 40)},
		{"gauss/1024", 1024, gaussianOutliers(rng, 16*1024, 1, 0, 0)},
	}
	all, shapes, tensors := loadFixtureWeights(t)
	n := len(all) / 256 * 256
	ds = append(ds, optDataset{"stories260k/flat256", 256, all[:n]})
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		shape := shapes[name]
		if rowLen := shape[len(shape)-1]; rowLen%typ.BlockSize() == 0 && len(shape) == 2 {
			ds = append(ds, optDataset{"stories260k/" + name, rowLen, tensors[name]})
		}
	}
	return ds
}

// randomImportance is a per-column importance with a heavy tail, as
// imatrix values are.
func randomImportance(rng *rand.Rand, n int) []float32 {
	imp := make([]float32, n)
	for i := range imp {
		imp[i] = float32(math.Exp(1.5 * rng.NormFloat64()))
	}
	return imp
}

// weightedMSE is Σ imp[col]·(a − b)² / n over rows of rowLen (imp nil = 1).
func weightedMSE(a, b []float32, rowLen int, imp []float32) float64 {
	var e float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		w := 1.0
		if imp != nil {
			w = float64(imp[i%rowLen])
		}
		e += w * d * d
	}
	return e / float64(len(a))
}

func quantDequant(t *testing.T, typ Type, x []float32, rowLen int, f func(dst []byte) error) ([]byte, []float32) {
	t.Helper()
	rs, err := typ.RowSize(rowLen)
	if err != nil {
		t.Fatal(err)
	}
	q := make([]byte, len(x)/rowLen*rs)
	if err := f(q); err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	y := make([]float32, len(x))
	if err := Dequantize(typ, y, q, rowLen); err != nil {
		t.Fatalf("%s: dequantize: %v", typ, err)
	}
	return q, y
}

// TestQuantizeNotWorse checks, per tensor, type and importance, that the
// optimised error is at most the reference's (and strictly lower for the
// quantized types in total), that every block is no worse, and that the
// output decodes to finite values.
func TestQuantizeNotWorse(t *testing.T) {
	for _, typ := range Types() {
		for _, ds := range optDatasets(t, typ) {
			for _, withImp := range []bool{false, true} {
				var imp []float32
				if withImp {
					imp = randomImportance(rand.New(rand.NewPCG(uint64(ds.rowLen), 9)), ds.rowLen)
				}
				name := typ.String() + "/" + ds.name
				if withImp {
					name += "/importance"
				}
				refQ, refY := quantDequant(t, typ, ds.data, ds.rowLen, func(q []byte) error {
					if imp == nil {
						return refQuantize(typ, q, ds.data, ds.rowLen)
					}
					return QuantizeRefWeighted(typ, q, ds.data, ds.rowLen, imp)
				})
				optQ, optY := quantDequant(t, typ, ds.data, ds.rowLen, func(q []byte) error { return Quantize(typ, q, ds.data, ds.rowLen, imp) })
				eRef := weightedMSE(refY, ds.data, ds.rowLen, imp)
				eOpt := weightedMSE(optY, ds.data, ds.rowLen, imp)
				if eOpt > eRef*(1+1e-12) {
					t.Errorf("%s: weighted RMSE %.6g above the reference's %.6g", name, math.Sqrt(eOpt), math.Sqrt(eRef))
				}
				switch typ {
				case F32, F16, BF16:
					if !bytes.Equal(refQ, optQ) {
						t.Errorf("%s: Quantize differs from QuantizeRef for a float type", name)
					}
				default:
					if !(eOpt < eRef) {
						t.Errorf("%s: weighted RMSE %.6g not below the reference's %.6g", name, math.Sqrt(eOpt), math.Sqrt(eRef))
					}
				}
				for i, v := range optY {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%s: element %d decodes to %g", name, i, v)
					}
				}
				// Block by block.
				bs := typ.BlockSize()
				for b := 0; b < len(ds.data)/bs; b++ {
					lo, hi := b*bs, (b+1)*bs
					var imps []float32
					if imp != nil {
						c := lo % ds.rowLen
						imps = imp[c : c+bs]
					}
					er := weightedMSE(refY[lo:hi], ds.data[lo:hi], bs, imps)
					eo := weightedMSE(optY[lo:hi], ds.data[lo:hi], bs, imps)
					if eo > er*(1+1e-12) {
						t.Errorf("%s: block %d: error %.6g above the reference's %.6g", name, b, eo, er)
						break
					}
				}
				t.Logf("%-44s RMSE ref %.6g opt %.6g (%.1f%%)", name, math.Sqrt(eRef), math.Sqrt(eOpt), 100*(math.Sqrt(eOpt/eRef)-1))
			}
		}
	}
}

// TestQuantizeImportanceShiftsError gives a fifth of the columns 50 times
// the importance of the others: their error must drop, and the error of the
// other columns rise, against the same quantizer without importance.
func TestQuantizeImportanceShiftsError(t *testing.T) {
	const rowLen = 1024
	rng := rand.New(rand.NewPCG(3, 4))
	x := gaussianOutliers(rng, 64*rowLen, 0.02, 0.001, 20)
	imp := make([]float32, rowLen)
	important := func(c int) bool { return (c*7)%5 == 0 }
	for c := range imp {
		imp[c] = 1
		if important(c) {
			imp[c] = 50
		}
	}
	split := func(y []float32) (hi, lo float64) {
		var nh, nl int
		for i := range y {
			d := float64(y[i]) - float64(x[i])
			if important(i % rowLen) {
				hi += d * d
				nh++
			} else {
				lo += d * d
				nl++
			}
		}
		return hi / float64(nh), lo / float64(nl)
	}
	for _, typ := range []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, TQ1_0, TQ2_0} {
		_, plain := quantDequant(t, typ, x, rowLen, func(q []byte) error { return Quantize(typ, q, x, rowLen, nil) })
		_, weighted := quantDequant(t, typ, x, rowLen, func(q []byte) error { return Quantize(typ, q, x, rowLen, imp) })
		hiP, loP := split(plain)
		hiW, loW := split(weighted)
		t.Logf("%-6s important columns MSE %.4g → %.4g (%.0f%%), others %.4g → %.4g (%+.0f%%)",
			typ, hiP, hiW, 100*(hiW/hiP-1), loP, loW, 100*(loW/loP-1))
		if !(hiW < 0.9*hiP) || !(loW > loP) {
			t.Errorf("%s: importance did not move the error: important columns %.4g → %.4g, others %.4g → %.4g", typ, hiP, hiW, loP, loW)
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	x := make([]float32, 512)
	q := make([]byte, 2*144)
	tests := []struct {
		name    string
		typ     Type
		dst     []byte
		rowLen  int
		imp     []float32
		wantSub string
	}{
		{"short importance", Q4_K, q, 256, make([]float32, 255), "importance has 255 entries"},
		{"negative importance", Q4_K, q, 256, append(make([]float32, 255), -1), "importance[255]"},
		{"NaN importance", Q4_K, q, 256, append(make([]float32, 255), float32(math.NaN())), "importance[255]"},
		{"Inf importance", Q4_K, q, 256, append(make([]float32, 255), float32(math.Inf(1))), "importance[255]"},
		{"row length", Q4_K, q, 128, nil, "multiple of its block size"},
		{"dst length", Q4_K, q[:100], 256, nil, "byte buffer has 100"},
		{"bad type", Type(4), q, 256, nil, "unsupported type"},
	}
	for _, tc := range tests {
		err := Quantize(tc.typ, tc.dst, x, tc.rowLen, tc.imp)
		if err == nil || !strings.Contains(err.Error(), tc.wantSub) || !strings.HasPrefix(err.Error(), "quant: ") {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantSub)
		}
	}
	if err := Quantize(Q4_K, q, x, 256, make([]float32, 256)); err != nil {
		t.Errorf("all-zero importance refused: %v", err)
	}
}

// TestQuantizeSpecialRows runs the edge-case rows of the oracle test (zeros,
// constants, subnormals, huge values, ties, overflow) and rows with NaN and
// ±Inf: no failure, blocks with non-finite values keep the reference bytes,
// and no block with a finite reference error gets worse.
func TestQuantizeSpecialRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const rowLen = 256
	x := specialRows(rng, rowLen)
	nanRow := gaussianOutliers(rng, rowLen, 1, 0, 0)
	nanRow[3], nanRow[100], nanRow[200] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	x = append(x, nanRow...)
	for _, typ := range Types() {
		refQ, refY := quantDequant(t, typ, x, rowLen, func(q []byte) error { return refQuantize(typ, q, x, rowLen) })
		optQ, optY := quantDequant(t, typ, x, rowLen, func(q []byte) error { return Quantize(typ, q, x, rowLen, nil) })
		bs, ts := typ.BlockSize(), typ.TypeSize()
		for b := 0; b < len(x)/bs; b++ {
			lo, hi := b*bs, (b+1)*bs
			finite := true
			for _, v := range x[lo:hi] {
				finite = finite && !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0)
			}
			if !finite {
				if !bytes.Equal(refQ[b*ts:(b+1)*ts], optQ[b*ts:(b+1)*ts]) {
					t.Errorf("%s: block %d with NaN/Inf differs from the reference", typ, b)
				}
				continue
			}
			er := weightedMSE(refY[lo:hi], x[lo:hi], bs, nil)
			eo := weightedMSE(optY[lo:hi], x[lo:hi], bs, nil)
			if !math.IsNaN(er) && !math.IsInf(er, 0) && eo > er*(1+1e-12) {
				t.Errorf("%s: block %d: error %g above the reference's %g", typ, b, eo, er)
			}
		}
	}
}

// TestKLayoutRoundTrip checks the K-quant encoders and decoders: decoding
// any block (finite scales) and encoding it again gives the same bytes, and
// Dequantize of an encoded block is the reconstruction formula the search
// uses.
func TestKLayoutRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, typ := range []Type{Q2_K, Q3_K, Q4_K, Q5_K, Q6_K} {
		k := kLayouts[typ]
		ts := typ.TypeSize()
		for it := 0; it < 200; it++ {
			b := make([]byte, ts)
			for i := range b {
				b[i] = uint8(rng.Uint32())
			}
			// finite fp16 scales
			for _, off := range scaleOffsets(typ) {
				putF16(b[off:], float32(rng.NormFloat64()))
			}
			var p kParams
			k.decode(&p, b)
			got := make([]byte, ts)
			k.encode(got, &p)
			if !bytes.Equal(got, b) {
				t.Fatalf("%s: decode/encode changed the block\n got %x\nwant %x", typ, got, b)
			}
			y := make([]float32, qkK)
			if err := Dequantize(typ, y, b, qkK); err != nil {
				t.Fatal(err)
			}
			for i := range y {
				e, off := p.grid(i / k.sub)
				want := float32(e*float32(int(p.q[i])-k.qoff)) - off
				if math.Float32bits(want) != math.Float32bits(y[i]) {
					t.Fatalf("%s: element %d decodes to %g, the search's formula gives %g", typ, i, y[i], want)
				}
			}
		}
	}
}

// scaleOffsets are the byte offsets of a K-quant block's fp16 scales.
func scaleOffsets(typ Type) []int {
	switch typ {
	case Q2_K:
		return []int{80, 82}
	case Q3_K:
		return []int{108}
	case Q4_K, Q5_K:
		return []int{0, 2}
	case Q6_K:
		return []int{208}
	}
	return nil
}

// TestTernaryEncoders checks encodeTQ10 and encodeTQ20 against the
// reference quantizers: the reference's own trits and scale encode to the
// reference's bytes.
func TestTernaryEncoders(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, typ := range []Type{TQ1_0, TQ2_0} {
		for it := 0; it < 50; it++ {
			x := gaussianOutliers(rng, qkK, 1, 0.01, 5)
			want := make([]byte, typ.TypeSize())
			if err := QuantizeRef(typ, want, x, qkK); err != nil {
				t.Fatal(err)
			}
			d, id := ternaryScale(x)
			var tr [qkK]uint8
			for i, v := range x {
				tr[i] = trit(v, id)
			}
			got := make([]byte, typ.TypeSize())
			encodeTernary(typ, got, &tr, d)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: encoder gives %x, reference %x", typ, got, want)
			}
		}
	}
}

func TestQuantizeBitNet(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	const rowLen = 512
	x := gaussianOutliers(rng, 16*rowLen, 0.02, 0.001, 20)
	x[5] = 0.5 * BitNetScale(x) // a tie candidate
	tests := []struct {
		name  string
		scale float32
	}{
		{"absmean", BitNetScale(x)},
		{"larger", 3 * BitNetScale(x)},
		{"fp16-inexact", 0.0123456},
		{"zero", 0},
	}
	for _, typ := range []Type{TQ1_0, TQ2_0} {
		for _, tc := range tests {
			_, y := quantDequant(t, typ, x, rowLen, func(q []byte) error { return QuantizeBitNet(typ, q, x, rowLen, tc.scale) })
			d := fp16ToFP32(fp32ToFP16(tc.scale))
			if rel := math.Abs(float64(d)-float64(tc.scale)) / math.Max(float64(tc.scale), 1e-30); rel > 1e-3 {
				t.Fatalf("fp16 scale %g vs %g", d, tc.scale)
			}
			for i, v := range x {
				// reference computation: clip(round(W/scale), -1, 1)
				var wq float64
				if tc.scale != 0 {
					wq = math.Max(-1, math.Min(1, math.Round(float64(v/tc.scale))))
				}
				if want := float32(wq) * d; y[i] != want {
					t.Fatalf("%s %s: element %d (%g) decodes to %g, want %g·%g", typ, tc.name, i, v, y[i], wq, d)
				}
			}
		}
	}
	// errors
	q := make([]byte, 16*2*66)
	for _, tc := range []struct {
		typ   Type
		scale float32
		dst   []byte
		want  string
	}{
		{Q4_K, 1, q, "needs TQ1_0 or TQ2_0"},
		{TQ2_0, -1, q, "not finite"},
		{TQ2_0, float32(math.NaN()), q, "not finite"},
		{TQ2_0, float32(math.Inf(1)), q, "not finite"},
		{TQ2_0, 1, q[:10], "byte buffer"},
	} {
		if err := QuantizeBitNet(tc.typ, tc.dst, x, rowLen, tc.scale); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("QuantizeBitNet(%s, scale %g): %v, want %q", tc.typ, tc.scale, err, tc.want)
		}
	}
}

func TestBitNetScaleAndTritStats(t *testing.T) {
	tests := []struct {
		name      string
		w         []float32
		scale     float32
		wantScale float32
		zero, ent float64
	}{
		{"empty", nil, 1, 0, 0, 0},
		{"all zero", []float32{0, 0, 0, 0}, 1, 0, 1, 0},
		{"uniform trits", []float32{-1, 0, 1, -1, 0, 1}, 1, float32(4.0 / 6), 1.0 / 3, math.Log2(3)},
		{"half zero", []float32{0.1, -0.2, 2, -3}, 1, 1.325, 0.5, 1.5},
		{"scale 0", []float32{1, -1}, 0, 1, 1, 0},
		{"ties away from zero", []float32{0.5, -0.5, 0.49, 1.5}, 1, 0.7475, 0.25, entropyOf(1, 1, 2)},
	}
	for _, tc := range tests {
		if got := BitNetScale(tc.w); math.Abs(float64(got-tc.wantScale)) > 1e-6 {
			t.Errorf("%s: BitNetScale %g, want %g", tc.name, got, tc.wantScale)
		}
		z, e := TritStats(tc.w, tc.scale)
		if math.Abs(z-tc.zero) > 1e-12 || math.Abs(e-tc.ent) > 1e-12 {
			t.Errorf("%s: TritStats = %g, %g; want %g, %g", tc.name, z, e, tc.zero, tc.ent)
		}
	}
	// Gaussian weights at their absmean: about 31 % zeros, entropy below
	// log2 3.
	rng := rand.New(rand.NewPCG(1, 2))
	w := gaussianOutliers(rng, 1<<16, 1, 0, 0)
	z, e := TritStats(w, BitNetScale(w))
	if z < 0.28 || z > 0.34 || e > math.Log2(3) || e < 1.5 {
		t.Errorf("Gaussian: zero fraction %g, entropy %g", z, e)
	}
}

// entropyOf is the entropy in bits of the frequencies of the given counts.
func entropyOf(counts ...int) float64 {
	var n, h float64
	for _, c := range counts {
		n += float64(c)
	}
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
