package quant

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/rotate"
	"github.com/ohms-project/adaptq/store"
)

// tableTensor is one matrix of the fixture, as rows of 256.
type tableTensor struct {
	name string
	vals []float32
}

// fixtureMatrices returns the stories260k embedding and its 35 linear
// matrices (5 layers × q, k, v, o, gate, up, down), plain or rotated as the
// pipeline rotates them (Hadamard seed 1, no head rotation, the RMSNorm
// folded into q, k, v, gate and up), before the q/k row permutation. The
// tied lm_head is left out (plain it is the embedding).
func fixtureMatrices(t *testing.T, rotated bool) []tableTensor {
	t.Helper()
	ctx := context.Background()
	s, err := store.NewLocal(filepath.Join(repoRoot(t), "testdata/models/stories260k"))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[model.Role]rotate.Kind{
		model.RoleEmbed: rotate.KindEmbed, model.RoleQ: rotate.KindQ, model.RoleK: rotate.KindK, model.RoleV: rotate.KindV,
		model.RoleO: rotate.KindO, model.RoleGate: rotate.KindGate, model.RoleUp: rotate.KindUp, model.RoleDown: rotate.KindDown,
	}
	var out []tableTensor
	for _, ten := range ck.Tensors {
		kind, ok := kinds[ten.Role]
		if !ok || ten.Bias {
			continue
		}
		vals, err := ck.ReadFloat32(ctx, ten.Name)
		if err != nil {
			t.Fatal(err)
		}
		if rotated {
			var norm []float32
			switch ten.Role {
			case model.RoleQ, model.RoleK, model.RoleV:
				norm, err = ck.ReadFloat32(ctx, model.TensorName(model.RoleAttnNorm, ten.Layer, false))
			case model.RoleGate, model.RoleUp:
				norm, err = ck.ReadFloat32(ctx, model.TensorName(model.RoleMLPNorm, ten.Layer, false))
			}
			if err != nil {
				t.Fatal(err)
			}
			m := &rotate.Matrix{Rows: int(ten.Rows()), Cols: int(ten.Cols()), Data: vals}
			if err := rotate.RotateTensor(kind, m, norm, nil, 1, rotate.Options{}); err != nil {
				t.Fatal(err)
			}
		}
		if len(vals)%256 != 0 {
			t.Fatalf("%s: %d values are not rows of 256", ten.Name, len(vals))
		}
		out = append(out, tableTensor{ten.Name, vals})
	}
	if len(out) != 36 {
		t.Fatalf("%d matrices in the fixture, want 36", len(out))
	}
	return out
}

// tableStats accumulates squared errors and trit counts over tensors.
type tableStats struct {
	se, ss, n    float64
	zero, ent, m float64 // element-weighted zero fraction and entropy
}

func (s *tableStats) add(x, y []float32) {
	for i := range x {
		d := float64(y[i]) - float64(x[i])
		s.se += d * d
		s.ss += float64(x[i]) * float64(x[i])
	}
	s.n += float64(len(x))
}

func (s *tableStats) addTrits(n int, zero, ent float64) {
	s.zero += zero * float64(n)
	s.ent += ent * float64(n)
	s.m += float64(n)
}

func (s *tableStats) rmse() float64 { return math.Sqrt(s.se / s.n) }
func (s *tableStats) rel() float64  { return math.Sqrt(s.se / s.ss) }

// decodedTrits is the zero fraction and entropy of decoded ternary values
// (every block's scale is non-negative, so the trit is the sign).
func decodedTrits(y []float32) (zero, ent float64) {
	var c [3]int
	for _, v := range y {
		switch {
		case v > 0:
			c[2]++
		case v < 0:
			c[0]++
		default:
			c[1]++
		}
	}
	return float64(c[1]) / float64(len(y)), entropyOf(c[:]...)
}

// TestCodecTable measures every type, reference and optimised (and BitNet
// for the ternary types), on the fixture's matrices plain and rotated, and
// checks optimised ≤ reference. With -v it prints the tables of
// docs/CODECS.md:
//
//	go test ./quant -run TestCodecTable -v
func TestCodecTable(t *testing.T) {
	variants := []string{"plain", "rotated"}
	sets := map[string][]tableTensor{}
	for _, v := range variants {
		sets[v] = fixtureMatrices(t, v == "rotated")
	}
	type key struct {
		typ     Type
		variant string
		method  string // ref, opt, bitnet
	}
	stats := map[key]*tableStats{}
	for _, typ := range Types() {
		for _, v := range variants {
			for _, ten := range sets[v] {
				methods := []string{"ref", "opt"}
				if typ == TQ1_0 || typ == TQ2_0 {
					methods = append(methods, "bitnet")
				}
				for _, m := range methods {
					_, y := quantDequant(t, typ, ten.vals, 256, func(q []byte) error {
						switch m {
						case "opt":
							return Quantize(typ, q, ten.vals, 256, nil)
						case "bitnet":
							return QuantizeBitNet(typ, q, ten.vals, 256, BitNetScale(ten.vals))
						}
						return refQuantize(typ, q, ten.vals, 256)
					})
					k := key{typ, v, m}
					if stats[k] == nil {
						stats[k] = &tableStats{}
					}
					stats[k].add(ten.vals, y)
					switch {
					case m == "bitnet":
						z, e := TritStats(ten.vals, BitNetScale(ten.vals))
						stats[k].addTrits(len(y), z, e)
					case typ == TQ1_0 || typ == TQ2_0:
						z, e := decodedTrits(y)
						stats[k].addTrits(len(y), z, e)
					}
				}
			}
			r, o := stats[key{typ, v, "ref"}], stats[key{typ, v, "opt"}]
			if o.se > r.se*(1+1e-12) {
				t.Errorf("%s %s: optimised RMSE %.6g above the reference's %.6g", typ, v, o.rmse(), r.rmse())
			}
		}
	}
	if !testing.Verbose() {
		return
	}
	var b strings.Builder
	var n float64
	for _, ten := range sets["plain"] {
		n += float64(len(ten.vals))
	}
	fmt.Fprintf(&b, "Fixture: stories260k, embedding + 35 linear matrices, %.0f weights, as rows of 256.\n", n)
	for _, v := range variants {
		s := stats[key{F32, v, "ref"}]
		fmt.Fprintf(&b, "RMS of the %s weights: %.6g.\n", v, math.Sqrt(s.ss/s.n))
	}
	b.WriteString("\n| type | bits/weight | plain RMSE ref | plain RMSE opt | Δ | rotated RMSE ref | rotated RMSE opt | Δ |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, typ := range Types() {
		bpw := 8 * float64(typ.TypeSize()) / float64(typ.BlockSize())
		fmt.Fprintf(&b, "| %s | %.4g |", typ, bpw)
		for _, v := range variants {
			r, o := stats[key{typ, v, "ref"}], stats[key{typ, v, "opt"}]
			delta := "0"
			if r.se > 0 {
				delta = fmt.Sprintf("%+.1f %%", 100*(o.rmse()/r.rmse()-1))
			}
			fmt.Fprintf(&b, " %.5g | %.5g | %s |", r.rmse(), o.rmse(), delta)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nTernary types: reference (per-block d = max|x|), optimised (per-block least-squares d), BitNet b1.58 (one absmean scale per tensor). Zero fraction and trit entropy (bits/weight; element-weighted mean over the tensors, each with its own trit frequencies).\n\n")
	b.WriteString("| type | method | variant | bits/weight | RMSE | rel. RMSE | zero fraction | trit entropy |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|\n")
	for _, typ := range []Type{TQ1_0, TQ2_0} {
		bpw := 8 * float64(typ.TypeSize()) / float64(typ.BlockSize())
		for _, m := range []string{"ref", "opt", "bitnet"} {
			for _, v := range variants {
				s := stats[key{typ, v, m}]
				fmt.Fprintf(&b, "| %s | %s | %s | %.4g | %.5g | %.4f | %.4f | %.4f |\n", typ, m, v, bpw, s.rmse(), s.rel(), s.zero/s.m, s.ent/s.m)
			}
		}
	}
	fmt.Print(b.String())
}
