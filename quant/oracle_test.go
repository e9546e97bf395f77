package quant

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The oracle test compares QuantizeRef and Dequantize with llama.cpp's own
// libggml-base.so (from node-llama-cpp, installed by `scripts/tools.sh
// llama`), through the small C program in testdata/oracle.

const (
	oracleLibRel  = ".tools/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"
	oracleSrcRel  = "testdata/oracle/ggml_oracle.c"
	oracleCache   = ".tools/cache/ggml-oracle"
	oracleInstall = "scripts/tools.sh llama"
)

// repoRoot walks up from the test's directory to the module root.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the test directory")
		}
		dir = parent
	}
}

// missingTool skips the test, or fails it when CI=true, for a missing
// external tool.
func missingTool(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + "; install llama.cpp's library with `" + oracleInstall + "` (gcc is needed too)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// oracle is a running ggml_oracle process.
type oracle struct {
	cmd    *exec.Cmd
	in     *bufio.Writer
	inPipe io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
}

// buildOracle compiles the harness once per source version into the
// git-ignored .tools cache (or a temp dir when that is not writable).
func buildOracle(t testing.TB, root string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, oracleSrcRel))
	if err != nil {
		t.Fatalf("oracle source: %v", err)
	}
	sum := sha256.Sum256(src)
	dir := filepath.Join(root, oracleCache, hex.EncodeToString(sum[:8]))
	bin := filepath.Join(dir, "ggml_oracle")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		missingTool(t, "gcc not found; it builds the ggml oracle from %s", oracleSrcRel)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		dir = t.TempDir()
		bin = filepath.Join(dir, "ggml_oracle")
	}
	tmp, err := os.CreateTemp(dir, "ggml_oracle.tmp*")
	if err != nil {
		t.Fatalf("oracle build: %v", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command(gcc, "-O2", "-o", tmp.Name(), filepath.Join(root, oracleSrcRel), "-ldl")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compiling the ggml oracle: %v\n%s", err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		t.Fatalf("oracle build: %v", err)
	}
	return bin
}

// startOracle builds and starts the oracle, or skips (fails under CI=true)
// when the library or gcc is missing.
func startOracle(t testing.TB) *oracle {
	t.Helper()
	root := repoRoot(t)
	lib := os.Getenv("ADAPTQ_GGML_LIB")
	if lib == "" {
		lib = filepath.Join(root, oracleLibRel)
	}
	if _, err := os.Stat(lib); err != nil {
		missingTool(t, "llama.cpp's libggml-base.so not found at %s (or set ADAPTQ_GGML_LIB)", lib)
	}
	bin := buildOracle(t, root)
	o := &oracle{cmd: exec.Command(bin, lib)}
	o.cmd.Stderr = &o.stderr
	inPipe, err := o.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := o.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cmd.Start(); err != nil {
		t.Fatalf("starting the ggml oracle: %v", err)
	}
	o.inPipe, o.in, o.out = inPipe, bufio.NewWriterSize(inPipe, 1<<20), bufio.NewReaderSize(outPipe, 1<<20)
	t.Cleanup(func() {
		o.inPipe.Close()
		if err := o.cmd.Wait(); err != nil {
			t.Errorf("ggml oracle exited: %v\n%s", err, o.stderr.String())
		}
	})
	return o
}

func (o *oracle) fail(t testing.TB, what string, err error) {
	t.Helper()
	t.Fatalf("ggml oracle %s: %v\n%s", what, err, o.stderr.String())
}

func (o *oracle) request(t testing.TB, op int64, typ Type, nrows, nPerRow int, payload []byte) {
	t.Helper()
	var hdr [32]byte
	binary.LittleEndian.PutUint64(hdr[0:], uint64(op))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(typ))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(nrows))
	binary.LittleEndian.PutUint64(hdr[24:], uint64(nPerRow))
	o.in.Write(hdr[:])
	o.in.Write(payload)
	if err := o.in.Flush(); err != nil {
		o.fail(t, "write", err)
	}
}

func (o *oracle) readI64(t testing.TB) int64 {
	t.Helper()
	var b [8]byte
	if _, err := io.ReadFull(o.out, b[:]); err != nil {
		o.fail(t, "read", err)
	}
	return int64(binary.LittleEndian.Uint64(b[:]))
}

// info returns ggml's block size, type size and name for typ.
func (o *oracle) info(t testing.TB, typ Type) (blck, size int, name string) {
	t.Helper()
	o.request(t, 0, typ, 0, 0, nil)
	blck, size = int(o.readI64(t)), int(o.readI64(t))
	o.readI64(t) // is_quantized
	var nb [64]byte
	if _, err := io.ReadFull(o.out, nb[:]); err != nil {
		o.fail(t, "read", err)
	}
	return blck, size, string(bytes.TrimRight(nb[:], "\x00"))
}

// quantize runs ggml_quantize_chunk(typ, src, dst, 0, nrows, rowLen, NULL).
func (o *oracle) quantize(t testing.TB, typ Type, src []float32, rowLen int) []byte {
	t.Helper()
	o.request(t, 1, typ, len(src)/rowLen, rowLen, floatBytes(src))
	out := make([]byte, o.readI64(t))
	if _, err := io.ReadFull(o.out, out); err != nil {
		o.fail(t, "read", err)
	}
	return out
}

// dequantize runs typ's to_float trait over src.
func (o *oracle) dequantize(t testing.TB, typ Type, src []byte, nrows, rowLen int) []float32 {
	t.Helper()
	o.request(t, 2, typ, nrows, rowLen, src)
	raw := make([]byte, 4*o.readI64(t))
	if _, err := io.ReadFull(o.out, raw); err != nil {
		o.fail(t, "read", err)
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

// timeQuantize has the oracle quantize src reps times on one thread and
// returns the wall-clock and thread CPU time it took.
func (o *oracle) timeQuantize(t testing.TB, typ Type, src []float32, rowLen, reps int) (wall, cpu time.Duration) {
	t.Helper()
	return o.time(t, 3, typ, len(src)/rowLen, rowLen, reps, floatBytes(src))
}

// timeDequantize is timeQuantize for typ's to_float over the rows in src.
func (o *oracle) timeDequantize(t testing.TB, typ Type, src []byte, nrows, rowLen, reps int) (wall, cpu time.Duration) {
	t.Helper()
	return o.time(t, 4, typ, nrows, rowLen, reps, src)
}

func (o *oracle) time(t testing.TB, op int64, typ Type, nrows, rowLen, reps int, data []byte) (wall, cpu time.Duration) {
	t.Helper()
	payload := make([]byte, 8, 8+len(data))
	binary.LittleEndian.PutUint64(payload, uint64(reps))
	o.request(t, op, typ, nrows, rowLen, append(payload, data...))
	return time.Duration(o.readI64(t)), time.Duration(o.readI64(t))
}

func floatBytes(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// oracleDataset is a set of rows to quantize.
type oracleDataset struct {
	name   string
	rowLen int
	data   []float32
}

// gaussianOutliers fills n values with N(0, sigma²) noise plus, with
// probability rate, outliers of up to ±outlier·sigma·(1..2).
func gaussianOutliers(rng *rand.Rand, n int, sigma, rate, outlier float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		v := rng.NormFloat64() * sigma
		if rng.Float64() < rate {
			v = math.Copysign(outlier*sigma*(1+rng.Float64()), v)
		}
		x[i] = float32(v)
	}
	return x
}

// specialRows builds rows of rowLen that stress the edge cases: all-zero
// rows, constant rows, one-signed rows, tiny and subnormal values, a single
// huge value, exact ties for the rounding steps, and very large values.
func specialRows(rng *rand.Rand, rowLen int) []float32 {
	var rows [][]float32
	add := func(f func(i int) float32) {
		r := make([]float32, rowLen)
		for i := range r {
			r[i] = f(i)
		}
		rows = append(rows, r)
	}
	g := func() float32 { return float32(rng.NormFloat64()) }
	add(func(int) float32 { return 0 })
	add(func(int) float32 { return float32(math.Copysign(0, -1)) })
	add(func(int) float32 { return 0.25 })
	add(func(int) float32 { return -3 })
	add(func(int) float32 { return abs32(g()) })
	add(func(int) float32 { return -abs32(g()) - 1 })
	add(func(int) float32 { return 1e-20 * g() })
	add(func(int) float32 { return 1e-40 * g() }) // subnormal
	add(func(int) float32 { return 1e-7 * g() })  // fp16 subnormal range
	add(func(i int) float32 {
		if i == rowLen/3 {
			return 1e4
		}
		return 0.01 * g()
	})
	add(func(i int) float32 {
		if i%97 == 5 {
			return -60000
		}
		return g()
	})
	add(func(i int) float32 {
		if i == 7 {
			return 1
		}
		return 0
	})
	add(func(i int) float32 { return float32(i%17-8) * 0.5 })         // ties
	add(func(i int) float32 { return float32(i%9-4) * 0.25 })         // ties
	add(func(i int) float32 { return float32(i%33-16) / 16 })         // ties
	add(func(i int) float32 { return float32(int(rng.IntN(7)) - 3) }) // ternary-like
	add(func(int) float32 { return 1e5 * g() })                       // fp16 overflow
	add(func(int) float32 { return 3e18 * g() })                      // x² overflows
	add(func(i int) float32 { return float32(i) })
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// loadFixtureWeights reads every F32 tensor of the stories260k fixture, in
// file order, concatenated.
func loadFixtureWeights(t testing.TB) (all []float32, shapes map[string][]int, tensors map[string][]float32) {
	t.Helper()
	path := filepath.Join(repoRoot(t), "testdata/models/stories260k/model.safetensors")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if len(raw) < 8 {
		t.Fatalf("fixture %s too short", path)
	}
	hlen := binary.LittleEndian.Uint64(raw)
	if hlen > uint64(len(raw)-8) {
		t.Fatalf("fixture %s: bad header length %d", path, hlen)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+hlen], &hdr); err != nil {
		t.Fatalf("fixture header: %v", err)
	}
	type entry struct {
		name    string
		DType   string `json:"dtype"`
		Shape   []int  `json:"shape"`
		Offsets [2]int `json:"data_offsets"`
	}
	var es []entry
	for name, msg := range hdr {
		if name == "__metadata__" {
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			t.Fatalf("fixture tensor %s: %v", name, err)
		}
		e.name = name
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Offsets[0] < es[j].Offsets[0] })
	data := raw[8+hlen:]
	shapes, tensors = map[string][]int{}, map[string][]float32{}
	for _, e := range es {
		if e.DType != "F32" {
			t.Fatalf("fixture tensor %s is %s, want F32", e.name, e.DType)
		}
		b := data[e.Offsets[0]:e.Offsets[1]]
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		shapes[e.name], tensors[e.name] = e.Shape, v
		all = append(all, v...)
	}
	return all, shapes, tensors
}

// oracleDatasets builds the inputs for one type.
func oracleDatasets(t testing.TB, typ Type, fixture []float32, tensors map[string][]float32, shapes map[string][]int) []oracleDataset {
	var ds []oracleDataset
	bs := typ.BlockSize()
	for _, seed := range []uint64{1, 2, 3} {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		for _, rowLen := range []int{256, 512, 1024, 4096} {
			nrows := max(1, 65536/rowLen)
			ds = append(ds, oracleDataset{
				name:   fmt.Sprintf("gauss/seed%d/row%d", seed, rowLen),
				rowLen: rowLen,
				data:   gaussianOutliers(rng, nrows*rowLen, 0.02, 0.002, 40),
			})
		}
		ds = append(ds, oracleDataset{
			name:   fmt.Sprintf("special/seed%d", seed),
			rowLen: 256,
			data:   specialRows(rng, 256),
		})
	}
	{
		// Rows with NaN and ±Inf: ggml gives them garbage, deterministically,
		// and so must we.
		rng := rand.New(rand.NewPCG(8, 8))
		data := gaussianOutliers(rng, 64*256, 1, 0, 0)
		for r := 0; r < 64; r++ {
			row := data[r*256 : (r+1)*256]
			for range 1 + rng.IntN(4) {
				row[rng.IntN(256)] = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[rng.IntN(3)]
			}
		}
		ds = append(ds, oracleDataset{name: "nonfinite", rowLen: 256, data: data})
	}
	if bs <= 32 {
		rng := rand.New(rand.NewPCG(9, 9))
		for _, rowLen := range []int{32, 96, 160} {
			ds = append(ds, oracleDataset{
				name:   fmt.Sprintf("gauss/row%d", rowLen),
				rowLen: rowLen,
				data:   gaussianOutliers(rng, 50*rowLen, 1, 0.01, 20),
			})
		}
	}
	// The fixture, reshaped into rows of 256 from the concatenated tensors.
	n := len(fixture) / 256 * 256
	ds = append(ds, oracleDataset{name: "stories260k/flat256", rowLen: 256, data: fixture[:n]})
	// And each tensor in its own rows where the block size allows.
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		shape := shapes[name]
		rowLen := shape[len(shape)-1]
		if rowLen%bs == 0 {
			ds = append(ds, oracleDataset{name: "stories260k/" + name, rowLen: rowLen, data: tensors[name]})
		}
	}
	return ds
}

// describeBlock formats block k of a quantized buffer for a failure message.
func describeBlock(typ Type, b []byte, k int) string {
	ts := typ.TypeSize()
	lo := k * ts
	return hex.EncodeToString(b[lo:min(len(b), lo+ts)])
}

// compareQuantized reports the first differing block.
func compareQuantized(t *testing.T, typ Type, ds oracleDataset, got, want []byte) bool {
	t.Helper()
	if bytes.Equal(got, want) {
		return true
	}
	if len(got) != len(want) {
		t.Errorf("%s %s: %d bytes, ggml %d", typ, ds.name, len(got), len(want))
		return false
	}
	ndiff, first := 0, -1
	for i := range got {
		if got[i] != want[i] {
			if first < 0 {
				first = i
			}
			ndiff++
		}
	}
	blk := first / typ.TypeSize()
	bs := typ.BlockSize()
	t.Errorf("%s %s: %d of %d bytes differ; first at byte %d (block %d, offset %d)\n go:   %s\n ggml: %s\n input block: %v",
		typ, ds.name, ndiff, len(got), first, blk, first%typ.TypeSize(),
		describeBlock(typ, got, blk), describeBlock(typ, want, blk), ds.data[blk*bs:(blk+1)*bs])
	return false
}

// compareFloats compares bit patterns (so NaNs must match too).
func compareFloats(t *testing.T, what string, got, want []float32) bool {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, ggml %d", what, len(got), len(want))
		return false
	}
	ndiff, first := 0, -1
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if first < 0 {
				first = i
			}
			ndiff++
		}
	}
	if ndiff > 0 {
		t.Errorf("%s: %d of %d values differ; first at %d: go %g (%#08x), ggml %g (%#08x)",
			what, ndiff, len(got), first, got[first], math.Float32bits(got[first]), want[first], math.Float32bits(want[first]))
		return false
	}
	return true
}

func TestOracleTypeTraits(t *testing.T) {
	o := startOracle(t)
	for _, typ := range Types() {
		blck, size, name := o.info(t, typ)
		if blck != typ.BlockSize() || size != typ.TypeSize() || !strings.EqualFold(name, typ.String()) {
			t.Errorf("type %d: ggml says %s block %d size %d; we say %s block %d size %d",
				uint32(typ), name, blck, size, typ, typ.BlockSize(), typ.TypeSize())
		}
	}
}

func TestOracleQuantizeDequantize(t *testing.T) {
	o := startOracle(t)
	fixture, shapes, tensors := loadFixtureWeights(t)
	for _, typ := range Types() {
		t.Run(typ.String(), func(t *testing.T) {
			for _, ds := range oracleDatasets(t, typ, fixture, tensors, shapes) {
				rowSize, err := typ.RowSize(ds.rowLen)
				if err != nil {
					t.Fatal(err)
				}
				nrows := len(ds.data) / ds.rowLen
				if isIQ(typ) {
					t.Skip("the i-quants have their own oracle test (TestOracleIQQuantize)")
				}
				got := make([]byte, nrows*rowSize)
				if err := QuantizeRef(typ, got, ds.data, ds.rowLen); err != nil {
					t.Fatalf("%s: %v", ds.name, err)
				}
				want := o.quantize(t, typ, ds.data, ds.rowLen)
				compareQuantized(t, typ, ds, got, want)
				if typ == F32 {
					continue // ggml-base has no to_float for F32
				}
				gotF := make([]float32, len(ds.data))
				if err := Dequantize(typ, gotF, want, ds.rowLen); err != nil {
					t.Fatalf("%s: %v", ds.name, err)
				}
				compareFloats(t, fmt.Sprintf("%s %s dequantize", typ, ds.name), gotF, o.dequantize(t, typ, want, nrows, ds.rowLen))
			}
		})
	}
}

// TestOracleDequantizeRandomBytes decodes arbitrary block bytes (including
// NaN and Inf scales) with both implementations.
func TestOracleDequantizeRandomBytes(t *testing.T) {
	o := startOracle(t)
	rng := rand.New(rand.NewPCG(42, 7))
	for _, typ := range Types() {
		if typ == F32 {
			continue
		}
		t.Run(typ.String(), func(t *testing.T) {
			rowLen := 1024
			nrows := 8
			rowSize, _ := typ.RowSize(rowLen)
			src := make([]byte, nrows*rowSize)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			got := make([]float32, nrows*rowLen)
			if err := Dequantize(typ, got, src, rowLen); err != nil {
				t.Fatal(err)
			}
			compareFloats(t, typ.String()+" random bytes", got, o.dequantize(t, typ, src, nrows, rowLen))
		})
	}
	// Every fp16 and bf16 bit pattern.
	all := make([]byte, 2*65536)
	for i := range 65536 {
		binary.LittleEndian.PutUint16(all[2*i:], uint16(i))
	}
	for _, typ := range []Type{F16, BF16} {
		got := make([]float32, 65536)
		if err := Dequantize(typ, got, all, 65536); err != nil {
			t.Fatal(err)
		}
		compareFloats(t, typ.String()+" all bit patterns", got, o.dequantize(t, typ, all, 1, 65536))
	}
}

// TestOracleFloatConversions quantizes special float32 values (NaNs, infs,
// subnormals, rounding boundaries) to F16 and BF16.
func TestOracleFloatConversions(t *testing.T) {
	o := startOracle(t)
	var vals []float32
	for _, b := range []uint32{
		0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0xff812345,
		0x00000001, 0x80000001, 0x007fffff, 0x33000000, 0x33000001, 0x337fffff, 0x38800000,
		0x387fe000, 0x387ff000, 0x477fe000, 0x477fefff, 0x477ff000, 0x47800000, 0x3f801000,
		0x3f803000, 0x3f802fff, 0x3f808000, 0x3f818000, 0x3f817fff,
	} {
		vals = append(vals, math.Float32frombits(b))
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for range 1 << 16 {
		vals = append(vals, math.Float32frombits(rng.Uint32()))
	}
	for _, typ := range []Type{F16, BF16, F32} {
		got := make([]byte, 2*len(vals))
		if typ == F32 {
			got = make([]byte, 4*len(vals))
		}
		if err := QuantizeRef(typ, got, vals, len(vals)); err != nil {
			t.Fatal(err)
		}
		ds := oracleDataset{name: "special floats", rowLen: len(vals), data: vals}
		compareQuantized(t, typ, ds, got, o.quantize(t, typ, vals, len(vals)))
	}
}

// TestOracleIQ4NLGrid reads IQ4_NL's grid (kvalues_iq4nl) back from the
// library: a block with d = 1 whose low nibbles are the indices 0…15 and
// high nibbles 15…0 decodes to the grid values themselves.
func TestOracleIQ4NLGrid(t *testing.T) {
	o := startOracle(t)
	block := make([]byte, blockIQ4NL)
	binary.LittleEndian.PutUint16(block, 0x3C00) // 1.0
	for j := 0; j < 16; j++ {
		block[2+j] = uint8(j) | uint8(15-j)<<4
	}
	got := o.dequantize(t, IQ4_NL, block, 1, qkIQ4NL)
	for j := 0; j < 16; j++ {
		if got[j] != float32(iq4nlGrid[j]) || got[16+j] != float32(iq4nlGrid[15-j]) {
			t.Fatalf("grid index %d: ggml decodes %g and %g, iq4nlGrid has %d and %d",
				j, got[j], got[16+j], iq4nlGrid[j], iq4nlGrid[15-j])
		}
	}
}
