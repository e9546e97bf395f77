package quant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// iqTypes are the i-quants this package has.
var iqTypes = []Type{IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, IQ4_XS}

// TestOracleIQDequantizeSpecialScales decodes i-quant blocks whose fp16
// scale is NaN, ±Inf, subnormal or ±0 (random content otherwise) with both
// implementations: NaN signs must match too.
func TestOracleIQDequantizeSpecialScales(t *testing.T) {
	o := startOracle(t)
	rng := rand.New(rand.NewPCG(77, 1))
	scales := []uint16{0x7c00, 0xfc00, 0x7c01, 0xfc01, 0x7e00, 0xfe00, 0x7fff, 0xffff, 0x0001, 0x8001, 0x0000, 0x8000, 0x3c00, 0x7bff}
	for _, typ := range iqTypes {
		ts := typ.TypeSize()
		nb := 8 * len(scales)
		src := make([]byte, nb*ts)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		for b := range nb {
			h := scales[b%len(scales)]
			blk := src[b*ts : (b+1)*ts]
			if typ == IQ1_M {
				// The fp16 scale sits in the top nibbles of the four scale words.
				sc := blk[48:56]
				for k := range 4 {
					w := binary.LittleEndian.Uint16(sc[2*k:])&0x0fff | (h>>(4*k)&0xf)<<12
					binary.LittleEndian.PutUint16(sc[2*k:], w)
				}
				continue
			}
			binary.LittleEndian.PutUint16(blk, h)
		}
		got := make([]float32, nb*qkK)
		if err := Dequantize(typ, got, src, qkK); err != nil {
			t.Fatal(err)
		}
		compareFloats(t, typ.String()+" special scales", got, o.dequantize(t, typ, src, nb, qkK))
	}
}

// timeQuantizeImatrix is timeQuantize with an importance matrix (op 6).
func (o *oracle) timeQuantizeImatrix(t testing.TB, typ Type, src []float32, rowLen int, imatrix []float32, reps int) (wall, cpu time.Duration) {
	t.Helper()
	return o.time(t, 6, typ, len(src)/rowLen, rowLen, reps, append(floatBytes(imatrix), floatBytes(src)...))
}

// isIQ reports whether typ is one of the i-quants.
func isIQ(typ Type) bool { return slices.Contains(iqTypes, typ) }

// iqImportances are the importance vectors the i-quant oracle test uses for
// rows of rowLen: random positive values, random values with a quarter
// zeros, and a realistic one (the mean of x² over 64 random activation
// vectors with a few heavy channels).
func iqImportances(rowLen int) map[string][]float32 {
	rng := rand.New(rand.NewPCG(uint64(rowLen), 31))
	pos, zeros, real := make([]float32, rowLen), make([]float32, rowLen), make([]float32, rowLen)
	heavy := make([]float64, rowLen)
	for c := range rowLen {
		pos[c] = float32(0.01 + rng.Float64()*4)
		if rng.IntN(4) != 0 {
			zeros[c] = float32(rng.ExpFloat64())
		}
		heavy[c] = 1
		if rng.IntN(50) == 0 {
			heavy[c] = 20
		}
	}
	for range 64 {
		for c := range rowLen {
			a := rng.NormFloat64() * heavy[c]
			real[c] += float32(a * a / 64)
		}
	}
	return map[string][]float32{"positive": pos, "zeros": zeros, "sumsq": real}
}

// TestOracleIQQuantize compares the i-quants' reference quantizers with
// ggml_quantize_chunk byte for byte, without an importance matrix (for the
// types ggml quantizes without one) and with each of iqImportances, on the
// oracle datasets — for the grid types without the rows holding NaN or Inf
// or whose sum of squares overflows (on which ggml's grid searches abort) —
// and their dequantization bit for bit.
func TestOracleIQQuantize(t *testing.T) {
	o := startOracle(t)
	fixture, shapes, tensors := loadFixtureWeights(t)
	for _, typ := range iqTypes {
		t.Run(typ.String(), func(t *testing.T) {
			for _, ds := range oracleDatasets(t, typ, fixture, tensors, shapes) {
				if typ != IQ4_XS {
					// IQ4_XS has no grid search: it handles these rows
					// like IQ4_NL.
					if ds.name == "nonfinite" {
						continue
					}
					ds.data = finiteSquareRows(ds.data, ds.rowLen)
				}
				// The i-quant searches are slow (~1–5 MB/s on both sides):
				// 16384 values per dataset keep the test short.
				ds.data = ds.data[:min(len(ds.data), max(16384/ds.rowLen, 1)*ds.rowLen)]
				rowSize, err := typ.RowSize(ds.rowLen)
				if err != nil {
					t.Fatal(err)
				}
				nrows := len(ds.data) / ds.rowLen
				got := make([]byte, nrows*rowSize)
				if !typ.NeedsImportance() {
					if err := QuantizeRef(typ, got, ds.data, ds.rowLen); err != nil {
						t.Fatalf("%s: %v", ds.name, err)
					}
					want := o.quantize(t, typ, ds.data, ds.rowLen)
					compareQuantized(t, typ, ds, got, want)
					compareFloats(t, fmt.Sprintf("%s %s dequantize", typ, ds.name),
						dequantized(t, typ, want, ds.rowLen), o.dequantize(t, typ, want, nrows, ds.rowLen))
				} else if err := QuantizeRef(typ, got, ds.data, ds.rowLen); !errors.Is(err, ErrNeedsImportance) {
					t.Errorf("%s: QuantizeRef without an importance gave %v, want ErrNeedsImportance", typ, err)
				}
				imps := iqImportances(ds.rowLen)
				for _, name := range []string{"positive", "zeros", "sumsq"} {
					imp := imps[name]
					if err := QuantizeRefWeighted(typ, got, ds.data, ds.rowLen, imp); err != nil {
						t.Fatalf("%s: %v", ds.name, err)
					}
					want := o.quantizeImatrix(t, typ, ds.data, ds.rowLen, imp)
					wds := ds
					wds.name += "/imatrix-" + name
					if compareQuantized(t, typ, wds, got, want) && name == "sumsq" {
						compareFloats(t, fmt.Sprintf("%s %s dequantize", typ, wds.name),
							dequantized(t, typ, want, ds.rowLen), o.dequantize(t, typ, want, nrows, ds.rowLen))
					}
				}
			}
		})
	}
}

// finiteSquareRows drops the rows whose sum of squares overflows float32:
// ggml's i-quant searches meet infinite weights there and abort (a failed
// GGML_ASSERT), so there is nothing to compare.
func finiteSquareRows(data []float32, rowLen int) []float32 {
	var out []float32
	for r := 0; r+rowLen <= len(data); r += rowLen {
		row := data[r : r+rowLen]
		if s := sumSquares(row); !math.IsInf(float64(s), 0) {
			out = append(out, row...)
		}
	}
	return out
}

// dequantized decodes q with Dequantize.
func dequantized(t *testing.T, typ Type, q []byte, rowLen int) []float32 {
	t.Helper()
	rs, _ := typ.RowSize(rowLen)
	y := make([]float32, len(q)/rs*rowLen)
	if err := Dequantize(typ, y, q, rowLen); err != nil {
		t.Fatal(err)
	}
	return y
}
