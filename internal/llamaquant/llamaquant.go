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
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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

// Paths relative to the repository root.
const (
	harnessSrc = "testdata/oracle/llama_quantize.c"
	cacheDir   = ".tools/cache/llama-quantize"
	libRel     = "@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.4.0.so"
)

// Quantizer is a built harness and the libllama it loads.
type Quantizer struct {
	Bin string // the compiled harness
	Lib string // libllama.so
}

// Find locates libllama ($ADAPTQ_LLAMA_LIB, else under $ADAPTQ_NODE_MODULES
// or <repo>/.tools/npm/node_modules, installed by `bash scripts/tools.sh
// llama`) and gcc, and builds the harness unless the cache holds it. The
// error says what is missing.
func Find() (*Quantizer, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, fmt.Errorf("llamaquant: %w", err)
	}
	lib := os.Getenv("ADAPTQ_LLAMA_LIB")
	if lib == "" {
		modules := os.Getenv("ADAPTQ_NODE_MODULES")
		if modules == "" {
			modules = filepath.Join(root, ".tools", "npm", "node_modules")
		}
		lib = filepath.Join(modules, libRel)
	}
	if _, err := os.Stat(lib); err != nil {
		return nil, &missingError{fmt.Sprintf("llamaquant: llama.cpp's libllama not found at %s (or set ADAPTQ_LLAMA_LIB)", lib)}
	}
	bin, err := build(root)
	if err != nil {
		return nil, err
	}
	return &Quantizer{Bin: bin, Lib: lib}, nil
}

// Require returns the quantizer, or fails the test in CI (CI=true) and
// skips it elsewhere when libllama or gcc is missing. A harness that does
// not compile fails the test everywhere.
func Require(tb testing.TB) *Quantizer {
	tb.Helper()
	q, err := Find()
	var miss *missingError
	switch {
	case errors.As(err, &miss):
		testenv.Missing(tb, err.Error())
	case err != nil:
		tb.Fatal(err)
	}
	return q
}

// missingError is a tool that is not installed.
type missingError struct{ what string }

func (e *missingError) Error() string { return e.what }

// build compiles the harness into the cache directory named by the hash of
// its source (a temporary file renamed into place, so concurrent builds are
// safe), or into a temporary directory when the cache is not writable.
func build(root string) (string, error) {
	srcPath := filepath.Join(root, harnessSrc)
	src, err := os.ReadFile(srcPath)
	if err != nil {
		return "", fmt.Errorf("llamaquant: harness source: %w", err)
	}
	sum := sha256.Sum256(src)
	dir := filepath.Join(root, cacheDir, hex.EncodeToString(sum[:8]))
	bin := filepath.Join(dir, "llama_quantize")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", &missingError{"llamaquant: gcc not found; it builds " + harnessSrc}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		if dir, err = os.MkdirTemp("", "llamaquant"); err != nil {
			return "", fmt.Errorf("llamaquant: %w", err)
		}
		bin = filepath.Join(dir, "llama_quantize")
	}
	tmp, err := os.CreateTemp(dir, "llama_quantize.tmp*")
	if err != nil {
		return "", fmt.Errorf("llamaquant: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if out, err := exec.Command(gcc, "-O2", "-Wall", "-o", tmp.Name(), srcPath, "-ldl").CombinedOutput(); err != nil {
		return "", fmt.Errorf("llamaquant: compiling %s: %v\n%s", harnessSrc, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", fmt.Errorf("llamaquant: %w", err)
	}
	return bin, nil
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
