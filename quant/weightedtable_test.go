package quant_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/store"
)

// fixtureIMatrix calibrates the stories260k fixture on its text (the 60
// windows of ctx 256 of testdata/text/tinystories-valid-sample.ids, what
// `adaptq calibrate` collects) and returns the checkpoint and the
// importance (mean x² per input column) of every linear weight, by GGUF
// name.
func fixtureIMatrix(t *testing.T) (*model.Checkpoint, map[string][]float32) {
	t.Helper()
	ctx := context.Background()
	s, err := store.NewLocal(filepath.Join("..", "testdata", "models", "stories260k"))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := infer.LoadModel(ctx, ck)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := infer.ReadIDsFile(filepath.Join("..", "testdata", "text", "tinystories-valid-sample.ids"))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := infer.Windows(ids, infer.ProtocolFull, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := m.Calibrate(ctx, ws, infer.CalibOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im, err := sums.IMatrix([]string{"tinystories-valid-sample"}, 256)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for name, e := range im.Entries {
		out[name] = e.Importance()
	}
	return ck, out
}

// TestWeightedCodecTable quantizes the fixture's 35 linear matrices with a
// real importance matrix (fixtureIMatrix) three ways — QuantizeRef (no
// importance), QuantizeRefWeighted (ggml's importance-weighted quantizer)
// and Quantize with the importance — and checks that the optimised
// weighted error is at most the weighted reference's on every matrix. A
// matrix of c columns is quantized in rows of lcm(c, 256) (4 rows of 64
// or the whole 64 × 172 down projection as one row of 11 008), the
// importance repeated to that length, so that every type's blocks fit and
// every element keeps its column's importance. With -v it prints the table
// of docs/CODECS.md:
//
//	go test ./quant -run TestWeightedCodecTable -v
func TestWeightedCodecTable(t *testing.T) {
	ck, imp := fixtureIMatrix(t)
	ctx := context.Background()
	types := []quant.Type{quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.IQ4_NL, quant.Q8_0,
		quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.TQ1_0, quant.TQ2_0}
	type acc struct{ plain, ref, opt, uRef, uOpt, w, n float64 }
	stats := map[quant.Type]*acc{}
	var nw int
	for _, ten := range ck.Tensors {
		if ten.Bias || ten.Role == model.RoleEmbed || ten.Role == model.RoleLMHead || len(ten.Shape) != 2 {
			continue
		}
		name, err := gguf.TensorName(ten.Role, ten.Layer, false)
		if err != nil {
			continue // a norm
		}
		colImp, ok := imp[name]
		if !ok {
			t.Fatalf("no importance for %s (%s)", name, ten.Name)
		}
		x, err := ck.ReadFloat32(ctx, ten.Name)
		if err != nil {
			t.Fatal(err)
		}
		cols := int(ten.Cols())
		rowLen := cols * 256 / gcd(cols, 256)
		if len(x)%rowLen != 0 || len(colImp) != cols {
			t.Fatalf("%s: %d values, %d columns, %d importances: no rows of %d", ten.Name, len(x), cols, len(colImp), rowLen)
		}
		w := make([]float32, rowLen)
		for i := range w {
			w[i] = colImp[i%cols]
		}
		nw++
		for _, typ := range types {
			rs, err := typ.RowSize(rowLen)
			if err != nil {
				t.Fatal(err)
			}
			q := make([]byte, len(x)/rowLen*rs)
			decode := func(f func() error) []float32 {
				if err := f(); err != nil {
					t.Fatalf("%s %s: %v", typ, ten.Name, err)
				}
				y := make([]float32, len(x))
				if err := quant.Dequantize(typ, y, q, rowLen); err != nil {
					t.Fatal(err)
				}
				return y
			}
			plain := decode(func() error { return quant.QuantizeRef(typ, q, x, rowLen) })
			ref := decode(func() error { return quant.QuantizeRefWeighted(typ, q, x, rowLen, w) })
			opt := decode(func() error { return quant.Quantize(typ, q, x, rowLen, w) })
			a := stats[typ]
			if a == nil {
				a = &acc{}
				stats[typ] = a
			}
			eRef, eOpt := wse(x, ref, w), wse(x, opt, w)
			if eOpt > eRef*(1+1e-12) {
				t.Errorf("%s %s: optimised weighted error %.6g above the weighted reference's %.6g", typ, ten.Name, eOpt, eRef)
			}
			a.plain += wse(x, plain, w)
			a.ref += eRef
			a.opt += eOpt
			a.uRef += wse(x, ref, nil)
			a.uOpt += wse(x, opt, nil)
			for i := range x {
				a.w += float64(w[i%rowLen])
			}
			a.n += float64(len(x))
		}
	}
	if nw != 35 {
		t.Fatalf("%d linear matrices with an importance, want 35", nw)
	}
	if !testing.Verbose() {
		return
	}
	var b strings.Builder
	b.WriteString("| type | weighted RMSE QuantizeRef | weighted RMSE QuantizeRefWeighted (ggml imatrix) | weighted RMSE Quantize(importance) | Δ vs ggml imatrix | plain RMSE QuantizeRefWeighted | plain RMSE Quantize(importance) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, typ := range types {
		a := stats[typ]
		r := func(e float64) float64 { return math.Sqrt(e / a.w) }
		delta := "0"
		if a.ref > 0 {
			delta = fmt.Sprintf("%+.1f %%", 100*(math.Sqrt(a.opt/a.ref)-1))
		}
		fmt.Fprintf(&b, "| %s | %.5g | %.5g | %.5g | %s | %.5g | %.5g |\n", typ, r(a.plain), r(a.ref), r(a.opt), delta,
			math.Sqrt(a.uRef/a.n), math.Sqrt(a.uOpt/a.n))
	}
	fmt.Print(b.String())
}

// wse is Σ w·(x − y)² (w repeated over the rows; nil = 1) in float64.
func wse(x, y, w []float32) float64 {
	var e float64
	for i := range x {
		d := float64(x[i]) - float64(y[i])
		wi := 1.0
		if w != nil {
			wi = float64(w[i%len(w)])
		}
		e += wi * d * d
	}
	return e
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
