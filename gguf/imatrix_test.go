package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func testIMatrix(withSum bool) *IMatrix {
	rng := rand.New(rand.NewPCG(1, 2))
	m := &IMatrix{Datasets: []string{"go-calib.txt"}, ChunkCount: 7, ChunkSize: 256, Entries: map[string]*IMatrixEntry{},
		Extra: Metadata{{"adaptq.rotation", "hadamard seed=1"}}}
	for _, spec := range []struct {
		name       string
		cols, mats int
	}{{"blk.0.attn_q.weight", 64, 1}, {"blk.0.ffn_down.weight", 96, 1}, {"blk.1.ffn_gate_exps.weight", 32, 4}} {
		e := &IMatrixEntry{Cols: spec.cols, Mats: spec.mats, Sum2: make([]float32, spec.cols*spec.mats), Counts: make([]float32, spec.mats)}
		for i := range e.Sum2 {
			e.Sum2[i] = float32(rng.ExpFloat64() * 100)
		}
		if withSum {
			e.Sum = make([]float32, len(e.Sum2))
			for i := range e.Sum {
				e.Sum[i] = float32(rng.NormFloat64() * 10)
			}
		}
		for i := range e.Counts {
			e.Counts[i] = float32(1792 - 100*i)
		}
		m.Entries[spec.name] = e
	}
	return m
}

func TestIMatrixGGUFRoundTrip(t *testing.T) {
	for _, withSum := range []bool{false, true} {
		m := testIMatrix(withSum)
		var buf bytes.Buffer
		if err := WriteIMatrix(&buf, m); err != nil {
			t.Fatal(err)
		}
		got, err := ReadIMatrix(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("withSum=%v: round trip differs:\n got %+v\nwant %+v", withSum, got, m)
		}
		// The file is a GGUF with llama.cpp's keys and tensor names.
		f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := f.Metadata.GetString("general.type"); s != "imatrix" {
			t.Fatalf("general.type = %q", s)
		}
		ti, ok := f.Tensor("blk.1.ffn_gate_exps.weight.in_sum2")
		if !ok || !reflect.DeepEqual(ti.Dims, []uint64{32, 4}) || ti.Type != TypeF32 {
			t.Fatalf("in_sum2 tensor: %+v %v", ti, ok)
		}
		if ti, ok := f.Tensor("blk.1.ffn_gate_exps.weight.counts"); !ok || !reflect.DeepEqual(ti.Dims, []uint64{1, 4}) {
			t.Fatalf("counts tensor: %+v %v", ti, ok)
		}
	}
}

func TestIMatrixImportance(t *testing.T) {
	e := &IMatrixEntry{Cols: 2, Mats: 2, Sum2: []float32{4, 8, 3, 3}, Counts: []float32{2, 0}}
	if got, want := e.Importance(), []float32{2, 4, 1, 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Importance = %v, want %v", got, want)
	}
}

func TestIMatrixLegacyRoundTrip(t *testing.T) {
	m := testIMatrix(false)
	delete(m.Entries, "blk.1.ffn_gate_exps.weight") // one matrix per entry only
	m.Extra = nil
	var buf bytes.Buffer
	if err := WriteIMatrixLegacy(&buf, m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadIMatrix(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Legacy || got.ChunkCount != 7 || !reflect.DeepEqual(got.Datasets, []string{"go-calib.txt"}) || len(got.Entries) != 2 {
		t.Fatalf("legacy header: %+v", got)
	}
	for name, e := range m.Entries {
		g := got.Entries[name]
		ncall := math.Ceil(float64(e.Counts[0]) / 256)
		if g.Counts[0] != float32(ncall) {
			t.Fatalf("%s: ncall %v, want %v", name, g.Counts[0], ncall)
		}
		want, have := e.Importance(), g.Importance()
		for i := range want {
			if d := math.Abs(float64(want[i]-have[i])) / float64(want[i]); d > 1e-6 {
				t.Fatalf("%s: importance[%d] = %v, want %v", name, i, have[i], want[i])
			}
		}
	}
	// Without the optional trailer the file still reads.
	short := buf.Bytes()[:buf.Len()-4-len("go-calib.txt")-4]
	if g, err := ReadIMatrix(bytes.NewReader(short), int64(len(short))); err != nil || g.ChunkCount != 0 || g.Datasets != nil {
		t.Fatalf("legacy file without trailer: %+v, %v", g, err)
	}
}

// legacyFile builds a legacy .dat file by hand.
func legacyFile(entries int32, name string, ncall, nval int32, vals []float32, trailer []byte) []byte {
	var b []byte
	i32 := func(v int32) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	i32(entries)
	i32(int32(len(name)))
	b = append(b, name...)
	i32(ncall)
	i32(nval)
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return append(b, trailer...)
}

func TestIMatrixBadInput(t *testing.T) {
	good := testIMatrix(true)
	var gbuf bytes.Buffer
	if err := WriteIMatrix(&gbuf, good); err != nil {
		t.Fatal(err)
	}
	ggufBytes := gbuf.Bytes()
	mutateEntry := func(fn func(e *IMatrixEntry)) []byte {
		m := testIMatrix(false)
		fn(m.Entries["blk.0.attn_q.weight"])
		// Write without the writer's check, by building the plan by hand.
		var md Metadata
		md.Set("general.type", IMatrixType)
		md.Set(KeyIMatrixDatasets, []string{"x"})
		md.Set(KeyIMatrixChunkCount, uint32(1))
		md.Set(KeyIMatrixChunkSize, uint32(1))
		e := m.Entries["blk.0.attn_q.weight"]
		s2, _ := NewTensorInfo("blk.0.attn_q.weight.in_sum2", TypeF32, uint64(e.Cols), uint64(e.Mats))
		c, _ := NewTensorInfo("blk.0.attn_q.weight.counts", TypeF32, 1, uint64(e.Mats))
		var buf bytes.Buffer
		w, err := NewWriter(&buf, &Plan{Metadata: md, Tensors: []TensorInfo{s2, c}})
		if err != nil {
			t.Fatal(err)
		}
		enc := func(v []float32) []byte {
			var b []byte
			for _, x := range v {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
			}
			return b
		}
		if err := w.WriteTensor(s2.Name, enc(e.Sum2)); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(c.Name, enc(e.Counts)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "entry count"},
		{"gguf truncated", ggufBytes[:len(ggufBytes)-100], "beyond the end"},
		{"gguf header only", ggufBytes[:40], "imatrix:"},
		{"NaN sum", mutateEntry(func(e *IMatrixEntry) { e.Sum2[3] = float32(math.NaN()) }), `"blk.0.attn_q.weight": Σx² of column 3 is NaN`},
		{"negative sum", mutateEntry(func(e *IMatrixEntry) { e.Sum2[5] = -1 }), "Σx² of column 5 is -1"},
		{"zero count", mutateEntry(func(e *IMatrixEntry) { e.Counts[0] = 0 }), "token count of matrix 0 is 0"},
		{"legacy huge count", legacyFile(1<<30, "w", 1, 1, []float32{1}, nil), "entry count 1073741824 is out of range"},
		{"legacy zero entries", legacyFile(0, "w", 1, 1, []float32{1}, nil), "entry count 0"},
		{"legacy name too long", legacyFile(1, strings.Repeat("n", 5000), 1, 1, []float32{1}, nil), "name length 5000"},
		{"legacy values beyond file", legacyFile(1, "blk.0.attn_q.weight", 1, 1000, []float32{1, 2}, nil), `entry "blk.0.attn_q.weight": 1000 values`},
		{"legacy negative value", legacyFile(1, "blk.0.attn_q.weight", 1, 1, []float32{-2}, nil), "Σx² of column 0 is -2"},
		{"legacy zero ncall", legacyFile(1, "blk.0.attn_q.weight", 0, 1, []float32{2}, nil), "token count of matrix 0 is 0"},
		{"legacy bad trailer", legacyFile(1, "blk.0.attn_q.weight", 1, 1, []float32{2}, []byte{1, 0, 0, 0, 9, 0, 0, 0, 'a'}), "dataset name length 9, 1 bytes left"},
		{"legacy trailing garbage", legacyFile(1, "blk.0.attn_q.weight", 1, 1, []float32{2}, []byte{1, 0}), "chunk count"},
	}
	for _, c := range cases {
		_, err := ReadIMatrix(bytes.NewReader(c.file), int64(len(c.file)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestIMatrixCheck(t *testing.T) {
	m := testIMatrix(false)
	cols := map[string]int{"blk.0.attn_q.weight": 64, "blk.0.ffn_down.weight": 96, "blk.1.ffn_gate_exps.weight": 32, "blk.0.attn_k.weight": 64}
	if err := m.Check(cols, []string{"blk.0.attn_q.weight"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cols     map[string]int
		required []string
		want     string
	}{
		{map[string]int{"blk.0.attn_q.weight": 64, "blk.0.ffn_down.weight": 96}, nil, `entry "blk.1.ffn_gate_exps.weight": the model has no such weight`},
		{map[string]int{"blk.0.attn_q.weight": 65, "blk.0.ffn_down.weight": 96, "blk.1.ffn_gate_exps.weight": 32}, nil, `entry "blk.0.attn_q.weight": 64 columns, the model's weight has 65`},
		{cols, []string{"blk.0.attn_k.weight"}, `no entry for weight "blk.0.attn_k.weight"`},
	} {
		if err := m.Check(c.cols, c.required); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check: %v, want %q", err, c.want)
		}
	}
}

func FuzzReadIMatrix(f *testing.F) {
	for _, withSum := range []bool{false, true} {
		var buf bytes.Buffer
		if err := WriteIMatrix(&buf, testIMatrix(withSum)); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	m := testIMatrix(false)
	delete(m.Entries, "blk.1.ffn_gate_exps.weight")
	var buf bytes.Buffer
	if err := WriteIMatrixLegacy(&buf, m); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadIMatrix(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		// Whatever reads must be internally consistent and write back.
		for name, e := range m.Entries {
			if err := e.check(); err != nil {
				t.Fatalf("entry %q read but inconsistent: %v", name, err)
			}
			_ = e.Importance()
		}
		var out bytes.Buffer
		if err := WriteIMatrix(&out, m); err != nil {
			t.Fatalf("a matrix that reads must write: %v", err)
		}
	})
}
