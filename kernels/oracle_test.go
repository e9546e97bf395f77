package kernels

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/quant"
)

// The dot oracle compares the activation quantizers and the dot products
// with llama.cpp's CPU backend (the haswell build node-llama-cpp ships:
// AVX2, FMA, F16C), through testdata/oracle/ggml_dot_oracle.c.
const (
	dotOracleSrc = "testdata/oracle/ggml_dot_oracle.c"
)

type dotOracle struct {
	in  *bufio.Writer
	out *bufio.Reader
}

// startDotOracle builds and runs the oracle, or skips (fails with CI=true)
// without gcc or llama.cpp's libraries.
func startDotOracle(t *testing.T) *dotOracle {
	t.Helper()
	libs, err := testenv.LlamaLibs()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	base := filepath.Join(libs, "libggml-base.so")
	cpu := filepath.Join(libs, "libggml-cpu-haswell.so")
	if _, err := os.Stat(cpu); err != nil {
		testenv.Missing(t, "llama.cpp's CPU library "+cpu+" (scripts/tools.sh llama)")
	}
	bin, err := testenv.BuildHarness("ggml_dot_oracle", dotOracleSrc, "gcc", "-ldl")
	if errors.Is(err, exec.ErrNotFound) {
		testenv.Missing(t, "gcc (builds "+dotOracleSrc+")")
	} else if err != nil {
		t.Fatalf("compiling the dot oracle: %v", err)
	}
	cmd := exec.Command(bin, base, cpu)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	return &dotOracle{in: bufio.NewWriter(in), out: bufio.NewReader(out)}
}

// dot sends one weight row and activation row and returns llama.cpp's
// vec_dot_type, converted activation bytes and dot product.
func (o *dotOracle) dot(t *testing.T, typ quant.Type, w []byte, x []float32) (int64, []byte, float32) {
	t.Helper()
	put := func(v any) {
		if err := binary.Write(o.in, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	put([2]int64{int64(typ), int64(len(x))})
	put(w)
	put(x)
	if err := o.in.Flush(); err != nil {
		t.Fatal(err)
	}
	var hdr [2]int64
	if err := binary.Read(o.out, binary.LittleEndian, &hdr); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	a := make([]byte, hdr[1])
	if _, err := io.ReadFull(o.out, a); err != nil {
		t.Fatal(err)
	}
	var s float32
	if err := binary.Read(o.out, binary.LittleEndian, &s); err != nil {
		t.Fatal(err)
	}
	return hdr[0], a, s
}

// ggmlActBytes encodes token 0 of a in ggml's block layout of its form.
func ggmlActBytes(a *Acts) []byte {
	var b []byte
	switch a.Type {
	case ActQ8_0, ActQ8_1:
		for i := range a.C / 32 {
			b = binary.LittleEndian.AppendUint16(b, quant.FloatToHalf(a.D[i]))
			if a.Type == ActQ8_1 {
				b = binary.LittleEndian.AppendUint16(b, quant.FloatToHalf(a.S[i]))
			}
			for _, q := range a.Qs[32*i : 32*i+32] {
				b = append(b, byte(q))
			}
		}
	case ActQ8_K:
		for i := range a.C / 256 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(a.D[i]))
			for _, q := range a.Qs[256*i : 256*i+256] {
				b = append(b, byte(q))
			}
			for _, s := range a.Bsums[16*i : 16*i+16] {
				b = binary.LittleEndian.AppendUint16(b, uint16(s))
			}
		}
	}
	return b
}

var actTypeIDs = map[ActType]int64{ActQ8_0: 8, ActQ8_1: 9, ActQ8_K: 15}

// TestDotMatchesLlamaCpp checks, for every weight type, that the
// activations quantize to exactly ggml's bytes and that the dot product
// equals llama.cpp's vec_dot within float32 summation-order rounding
// (relative to Σ|w·y|).
func TestDotMatchesLlamaCpp(t *testing.T) {
	o := startDotOracle(t)
	rng := rand.New(rand.NewPCG(23, 24))
	for _, typ := range sortedTypes() {
		q := qtypes[typ]
		var worst float64
		for trial := range 30 {
			C := []int{256, 512, 4096}[trial%3]
			x := randFloats(rng, C)
			if trial%5 == 0 {
				x[rng.IntN(C)] *= 30 // an outlier
			}
			w := randomRow(rng, q, C)
			var a Acts
			if err := a.Quantize(q.act, x, 1, C); err != nil {
				t.Fatal(err)
			}
			vt, ab, s := o.dot(t, typ, w, x)
			if vt != actTypeIDs[q.act] {
				t.Fatalf("%s: llama.cpp's vec_dot_type is %d, ours %s", q.name, vt, q.act)
			}
			if mine := ggmlActBytes(&a); string(mine) != string(ab) {
				for i := range mine {
					if mine[i] != ab[i] {
						t.Fatalf("%s C=%d: %s activation byte %d is %#x, llama.cpp's %#x", q.name, C, q.act, i, mine[i], ab[i])
					}
				}
			}
			got := q.dot(HasAVX2)(w, &a, 0)
			wv := decodeRow(q, w, C)
			var mag float64
			for e := range C {
				mag += math.Abs(wv[e] * float64(a.D[e/q.act.blockLen()]) * float64(a.Qs[e]))
			}
			rel := math.Abs(float64(got)-float64(s)) / mag
			worst = max(worst, rel)
			if rel > 1e-5 {
				t.Errorf("%s C=%d: dot %g, llama.cpp %g (Σ|wy| %g)", q.name, C, got, s, mag)
			}
		}
		t.Logf("%s: max |ours − llama.cpp| / Σ|w·y| = %.2g over 30 rows", q.name, worst)
	}
}

// TestF16DotMatchesLlamaCpp checks the F16 weight path (activations
// rounded to F16, fused multiply-adds on the widened values) against
// llama.cpp's ggml_vec_dot_f16.
func TestF16DotMatchesLlamaCpp(t *testing.T) {
	o := startDotOracle(t)
	rng := rand.New(rand.NewPCG(25, 26))
	var worst float64
	for trial := range 30 {
		C := []int{64, 172, 4096}[trial%3]
		x, wf := randFloats(rng, C), randFloats(rng, C)
		w := make([]byte, 2*C)
		for i, v := range wf {
			binary.LittleEndian.PutUint16(w[2*i:], quant.FloatToHalf(v))
			wf[i] = quant.HalfToFloat(quant.FloatToHalf(v))
		}
		vt, ab, s := o.dot(t, quant.F16, w, x)
		xr := append([]float32(nil), x...)
		RoundF16(xr)
		for i := range xr {
			if h := binary.LittleEndian.Uint16(ab[2*i:]); quant.HalfToFloat(h) != xr[i] {
				t.Fatalf("F16 activation %d: ours %g, llama.cpp %g (vec_dot_type %d)", i, xr[i], quant.HalfToFloat(h), vt)
			}
		}
		got := DotF32(wf, xr)
		var mag float64
		for i := range xr {
			mag += math.Abs(float64(wf[i]) * float64(xr[i]))
		}
		rel := math.Abs(float64(got)-float64(s)) / mag
		worst = max(worst, rel)
		if rel > 1e-5 {
			t.Errorf("F16 C=%d: dot %g, llama.cpp %g", C, got, s)
		}
	}
	t.Logf("F16: max |ours − llama.cpp| / Σ|w·x| = %.2g over 30 rows", worst)
}
