package quant

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// quantizeImatrix runs ggml_quantize_chunk(typ, src, dst, 0, nrows, rowLen,
// imatrix) (oracle op 5).
func (o *oracle) quantizeImatrix(t testing.TB, typ Type, src []float32, rowLen int, imatrix []float32) []byte {
	t.Helper()
	o.request(t, 5, typ, len(src)/rowLen, rowLen, append(floatBytes(imatrix), floatBytes(src)...))
	out := make([]byte, o.readI64(t))
	if _, err := io.ReadFull(o.out, out); err != nil {
		o.fail(t, "read", err)
	}
	return out
}

// testImportances are the importance vectors of the weighted oracle test
// for rows of rowLen: random positive values spread over four decades,
// random values with a third of them zero, all zeros, and a realistic one
// (Σx² over 128 random activation vectors, a few channels 30× heavier).
func testImportances(rowLen int) []struct {
	name string
	imp  []float32
} {
	rng := rand.New(rand.NewPCG(uint64(rowLen), 77))
	pos, zeros, sumsq := make([]float32, rowLen), make([]float32, rowLen), make([]float32, rowLen)
	heavy := make([]float64, rowLen)
	for c := range rowLen {
		pos[c] = float32(1e-3 * math.Pow(10, 4*rng.Float64()))
		if rng.IntN(3) != 0 {
			zeros[c] = float32(rng.ExpFloat64())
		}
		heavy[c] = 1
		if rng.IntN(40) == 0 {
			heavy[c] = 30
		}
	}
	for range 128 {
		for c := range rowLen {
			a := rng.NormFloat64() * heavy[c]
			sumsq[c] += float32(a * a)
		}
	}
	return []struct {
		name string
		imp  []float32
	}{{"positive", pos}, {"zeros", zeros}, {"allzero", make([]float32, rowLen)}, {"sumsq", sumsq}}
}

// weightedTypes are the types whose ggml quantizer uses an importance
// matrix, with adaptq's reproduction in weightedRefs.
var weightedTypes = []Type{Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL}

// TestOracleQuantizeWeighted compares QuantizeRefWeighted with
// ggml_quantize_chunk given an importance matrix, byte for byte, on the
// oracle datasets (Gaussian rows with outliers, special rows, NaN/Inf,
// stories260k) with every vector of testImportances; and checks that for
// the types that use it the importance changes the bytes (so the
// comparison is not QuantizeRef's again), for the others not.
func TestOracleQuantizeWeighted(t *testing.T) {
	o := startOracle(t)
	fixture, shapes, tensors := loadFixtureWeights(t)
	for _, typ := range append(weightedTypes, Q8_0, TQ1_0, TQ2_0, F16, BF16) {
		t.Run(typ.String(), func(t *testing.T) {
			for _, ds := range oracleDatasets(t, typ, fixture, tensors, shapes) {
				rowSize, err := typ.RowSize(ds.rowLen)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(ds.data)/ds.rowLen*rowSize)
				for _, iv := range testImportances(ds.rowLen) {
					if err := QuantizeRefWeighted(typ, got, ds.data, ds.rowLen, iv.imp); err != nil {
						t.Fatalf("%s: %v", ds.name, err)
					}
					want := o.quantizeImatrix(t, typ, ds.data, ds.rowLen, iv.imp)
					wds := ds
					wds.name = fmt.Sprintf("%s/imatrix-%s", ds.name, iv.name)
					compareQuantized(t, typ, wds, got, want)
					if iv.name == "sumsq" && strings.HasPrefix(ds.name, "gauss/seed1/") {
						plain := make([]byte, len(got))
						if err := QuantizeRef(typ, plain, ds.data, ds.rowLen); err != nil {
							t.Fatal(err)
						}
						if bytes.Equal(plain, want) != typ.IgnoresImportance() {
							t.Errorf("%s %s: ggml's bytes with an importance equal its bytes without: %v; IgnoresImportance: %v",
								typ, wds.name, bytes.Equal(plain, want), typ.IgnoresImportance())
						}
					}
				}
			}
		})
	}
}
