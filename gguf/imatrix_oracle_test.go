package gguf

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/internal/testenv"
)

// The imatrix oracle test checks adaptq's imatrix files against llama.cpp's
// own code: its loader (common_imatrix_load in node-llama-cpp's
// libllama-common, what llama-quantize --imatrix calls) must read back the
// values of our GGUF and legacy files, and our reader the values of a file
// written with libggml's GGUF writer the way llama-imatrix writes it.

// loaded is what llama.cpp's loader made of a file.
type loaded struct {
	entries               map[string]loadedEntry
	legacy, meta          bool
	chunkCount, chunkSize int
	datasets              []string
}

type loadedEntry struct {
	sums   []float32
	counts []int64
}

func imatrixOracle(t *testing.T, op, file string) loaded {
	t.Helper()
	dir, err := testenv.LlamaLibs()
	if err != nil {
		testenv.Missing(t, err.Error())
	}
	bin, err := testenv.BuildHarness("imatrix-oracle", "testdata/oracle/imatrix_oracle.cpp", "g++", "-std=c++17", "-ldl")
	if errors.Is(err, exec.ErrNotFound) {
		testenv.Missing(t, err.Error())
	} else if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, dir, op, file).Output()
	if err != nil {
		t.Fatalf("imatrix oracle %s %s: %v\n%s", op, file, err, out)
	}
	l := loaded{entries: map[string]loadedEntry{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch f[0] {
		case "error":
			t.Fatalf("llama.cpp's loader: %s", sc.Text())
		case "entry":
			ns, _ := strconv.Atoi(f[2])
			nc, _ := strconv.Atoi(f[3])
			var e loadedEntry
			for _, s := range f[4 : 4+ns] {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil {
					t.Fatal(err)
				}
				e.sums = append(e.sums, float32(v))
			}
			for _, s := range f[4+ns : 4+ns+nc] {
				c, _ := strconv.ParseInt(s, 10, 64)
				e.counts = append(e.counts, c)
			}
			l.entries[f[1]] = e
		case "meta":
			l.legacy, l.meta = f[1] == "1", f[2] == "1"
			l.chunkCount, _ = strconv.Atoi(f[3])
			l.chunkSize, _ = strconv.Atoi(f[4])
		case "dataset":
			l.datasets = append(l.datasets, strings.TrimPrefix(sc.Text(), "dataset "))
		}
	}
	return l
}

func TestIMatrixOracleReadsOurGGUF(t *testing.T) {
	m := testIMatrix(true)
	file := filepath.Join(t.TempDir(), "imatrix.gguf")
	var buf bytes.Buffer
	if err := WriteIMatrix(&buf, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	l := imatrixOracle(t, "load", file)
	if l.legacy || !l.meta || l.chunkCount != m.ChunkCount || l.chunkSize != m.ChunkSize || !reflect.DeepEqual(l.datasets, m.Datasets) {
		t.Fatalf("llama.cpp read metadata %+v", l)
	}
	if len(l.entries) != len(m.Entries) {
		t.Fatalf("llama.cpp read %d entries, the file has %d", len(l.entries), len(m.Entries))
	}
	for name, e := range m.Entries {
		got, ok := l.entries[name]
		if !ok || !reflect.DeepEqual(got.sums, e.Sum2) || len(got.counts) != e.Mats {
			t.Fatalf("entry %s: llama.cpp read %+v", name, got)
		}
		for i, c := range got.counts {
			if float32(c) != e.Counts[i] {
				t.Fatalf("entry %s: count %d read as %d, written %v", name, i, c, e.Counts[i])
			}
		}
	}
}

func TestIMatrixOracleReadsOurLegacy(t *testing.T) {
	m := testIMatrix(false)
	delete(m.Entries, "blk.1.ffn_gate_exps.weight")
	m.Extra = nil
	file := filepath.Join(t.TempDir(), "imatrix.dat")
	var buf bytes.Buffer
	if err := WriteIMatrixLegacy(&buf, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ours, err := ReadIMatrix(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	l := imatrixOracle(t, "load", file)
	if !l.legacy || l.chunkCount != m.ChunkCount || !reflect.DeepEqual(l.datasets, m.Datasets) {
		t.Fatalf("llama.cpp read metadata %+v", l)
	}
	for name, e := range ours.Entries {
		got := l.entries[name]
		if !reflect.DeepEqual(got.sums, e.Sum2) || len(got.counts) != 1 || float32(got.counts[0]) != e.Counts[0] {
			t.Fatalf("entry %s: llama.cpp read %+v, we read %+v", name, got, e)
		}
	}
}

func TestIMatrixReadsLlamaCppFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "llama-imatrix.gguf")
	l := imatrixOracle(t, "write", file)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadIMatrix(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Legacy || m.ChunkCount != l.chunkCount || m.ChunkSize != l.chunkSize || !reflect.DeepEqual(m.Datasets, l.datasets) || len(m.Entries) != len(l.entries) {
		t.Fatalf("we read %+v, llama.cpp %+v", m, l)
	}
	for name, want := range l.entries {
		e := m.Entries[name]
		if e == nil || !reflect.DeepEqual(e.Sum2, want.sums) || e.Sum != nil || len(e.Counts) != len(want.counts) {
			t.Fatalf("entry %s: we read %+v, llama.cpp %+v", name, e, want)
		}
		for i := range want.counts {
			if e.Counts[i] != float32(want.counts[i]) {
				t.Fatalf("entry %s count %d: %v vs %d", name, i, e.Counts[i], want.counts[i])
			}
		}
		// What llama-quantize hands ggml is Σx²/count.
		imp := e.Importance()
		for i, v := range imp {
			if w := want.sums[i] / float32(want.counts[i/e.Cols]); math.Abs(float64(v-w)) > 0 {
				t.Fatalf("entry %s: importance[%d] = %v, want %v", name, i, v, w)
			}
		}
	}
}
