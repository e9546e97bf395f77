// Package llamaquant runs llama.cpp's own file quantizer as an oracle:
// llama_model_quantize from node-llama-cpp's prebuilt libllama, called by
// the small C program testdata/oracle/llama_quantize.c, which this package
// compiles with gcc once per source version into the git-ignored
// .tools/cache. Tests use it to check that adaptq's presets choose the type
// llama-quantize chooses for every tensor, and the quality bench to write
// llama.cpp's file of a preset beside ours, from the same F16 GGUF and,
// optionally, the same importance matrix.
package llamaquant

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/testenv"
)

// harnessSrc is the harness's source, relative to the repository root.
const harnessSrc = "testdata/oracle/llama_quantize.c"

// Quantizer is a built harness and the libllama it loads.
type Quantizer struct {
	Bin string // the compiled harness
	Lib string // libllama.so
}

// Find locates libllama ($ADAPTQ_LLAMA_LIB, else node-llama-cpp's library
// folder, testenv.LlamaLibs) and builds the harness with gcc unless the
// cache holds it (testenv.BuildHarness). The error says what is missing;
// it wraps ErrMissing when a tool is not installed.
func Find() (*Quantizer, error) {
	lib := os.Getenv("ADAPTQ_LLAMA_LIB")
	if lib == "" {
		dir, err := testenv.LlamaLibs()
		if err != nil {
			return nil, fmt.Errorf("llamaquant: %w: %v", ErrMissing, err)
		}
		lib = filepath.Join(dir, "libllama.v0.4.0.so")
	}
	if _, err := os.Stat(lib); err != nil {
		return nil, fmt.Errorf("llamaquant: %w: llama.cpp's libllama not found at %s (or set ADAPTQ_LLAMA_LIB)", ErrMissing, lib)
	}
	bin, err := testenv.BuildHarness("llama-quantize", harnessSrc, "gcc", "-Wall", "-ldl")
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("llamaquant: %w: %v", ErrMissing, err)
	}
	if err != nil {
		return nil, fmt.Errorf("llamaquant: %w", err)
	}
	return &Quantizer{Bin: bin, Lib: lib}, nil
}

// ErrMissing is wrapped by Find's errors when libllama or gcc is not
// installed.
var ErrMissing = errors.New("a tool is missing")

// Require returns the quantizer, or fails the test in CI (CI=true) and
// skips it elsewhere when libllama or gcc is missing. A harness that does
// not compile fails the test everywhere.
func Require(tb testing.TB) *Quantizer {
	tb.Helper()
	q, err := Find()
	switch {
	case errors.Is(err, ErrMissing):
		testenv.Missing(tb, err.Error())
	case err != nil:
		tb.Fatal(err)
	}
	return q
}

// Options are the optional inputs of Quantize.
type Options struct {
	// Threads is llama_model_quantize's nthread (0: one per core).
	Threads int
	// Imatrix is the importance matrix: per GGUF tensor name
	// ("blk.0.attn_q.weight") one value per input column, as llama-imatrix
	// computes them (the mean of x² over the calibration tokens). Nil
	// quantizes without one.
	Imatrix map[string][]float32
}

// Quantize writes dst, llama.cpp's quantization of the GGUF file src to
// the llama-quantize preset ftype ("q4_k_m", "Q8_0", the alias "q4_k", ...).
// The error carries the end of libllama's log.
func (q *Quantizer) Quantize(ctx context.Context, src, dst, ftype string, opt Options) error {
	ft, err := gguf.ParseFileType(ftype)
	if err != nil {
		return fmt.Errorf("llamaquant: %w", err)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("llamaquant: %w", err)
	}
	args := []string{q.Lib, src, dst, strconv.FormatUint(uint64(ft), 10), strconv.Itoa(max(opt.Threads, 0))}
	if opt.Imatrix != nil {
		f, err := os.CreateTemp("", "imatrix-*.bin")
		if err != nil {
			return fmt.Errorf("llamaquant: %w", err)
		}
		defer os.Remove(f.Name())
		_, werr := f.Write(EncodeImatrix(opt.Imatrix))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("llamaquant: writing the imatrix: %w", werr)
		}
		args = append(args, f.Name())
	}
	var log bytes.Buffer
	cmd := exec.CommandContext(ctx, q.Bin, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		os.Remove(dst)
		return fmt.Errorf("llamaquant: %s to %s (ftype %d): %w\n%s", src, ft, uint32(ft), err, tail(log.String()))
	}
	return nil
}

// EncodeImatrix is the harness's imatrix file: "AQIMTX01", the entry count,
// then per entry (in name order) the name length, the name, the value
// count and the values; integers little-endian int64, values float32.
func EncodeImatrix(m map[string][]float32) []byte {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	b := []byte("AQIMTX01")
	b = binary.LittleEndian.AppendUint64(b, uint64(len(names)))
	for _, n := range names {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(n)))
		b = append(b, n...)
		v := m[n]
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	return b
}

// TensorTypes reads a GGUF file's header and returns each tensor's ggml
// type id by name.
func TensorTypes(path string) (map[string]uint32, *gguf.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	g, err := gguf.Read(f, st.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	types := make(map[string]uint32, len(g.Tensors))
	for _, t := range g.Tensors {
		types[t.Name] = t.Type
	}
	return types, g, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 3000 {
		s = "..." + s[len(s)-3000:]
	}
	return s
}

// Mismatches compares two tensor → type maps (adaptq's and llama.cpp's) and
// describes, in name order, every tensor whose type differs or that only
// one side has.
func Mismatches(ours, theirs map[string]uint32) []string {
	names := make([]string, 0, len(ours)+len(theirs))
	for n := range ours {
		names = append(names, n)
	}
	for n := range theirs {
		if _, ok := ours[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		o, inOurs := ours[n]
		t, inTheirs := theirs[n]
		switch {
		case !inTheirs:
			out = append(out, fmt.Sprintf("%s: ours %s, not in llama.cpp's file", n, gguf.TypeName(o)))
		case !inOurs:
			out = append(out, fmt.Sprintf("%s: llama.cpp's %s, not in ours", n, gguf.TypeName(t)))
		case o != t:
			out = append(out, fmt.Sprintf("%s: ours %s, llama.cpp's %s", n, gguf.TypeName(o), gguf.TypeName(t)))
		}
	}
	return out
}

// Comparison is adaptq's GGUF file and llama.cpp's of the same model and
// preset, compared tensor by tensor.
type Comparison struct {
	// Tensors is the number of tensor names compared.
	Tensors int
	// Mismatches are Mismatches of the two files' types.
	Mismatches []string
	// Bytes are the whole files' sizes, ours and llama.cpp's.
	OursBytes, TheirsBytes int64
	// Weights is the number of values in llama.cpp's file (all tensors).
	Weights int64
}

// OursBPW is our whole file's bits per weight.
func (c *Comparison) OursBPW() float64 { return float64(c.OursBytes) * 8 / float64(c.Weights) }

// TheirsBPW is llama.cpp's whole file's bits per weight.
func (c *Comparison) TheirsBPW() float64 { return float64(c.TheirsBytes) * 8 / float64(c.Weights) }

// Compare reads both files' headers and compares them.
func Compare(ours, theirs string) (*Comparison, error) {
	ot, of, err := TensorTypes(ours)
	if err != nil {
		return nil, err
	}
	tt, tf, err := TensorTypes(theirs)
	if err != nil {
		return nil, err
	}
	c := &Comparison{Mismatches: Mismatches(ot, tt), OursBytes: of.Size, TheirsBytes: tf.Size}
	c.Tensors = len(tt)
	for n := range ot {
		if _, ok := tt[n]; !ok {
			c.Tensors++
		}
	}
	for _, ti := range tf.Tensors {
		c.Weights += int64(ti.NumElements())
	}
	return c, nil
}
