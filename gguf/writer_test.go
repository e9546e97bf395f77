package gguf

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// allValues is metadata with every value type, arrays of every element
// type included.
func allValues() Metadata {
	return Metadata{
		{"general.architecture", "llama"},
		{"t.u8", uint8(200)},
		{"t.i8", int8(-100)},
		{"t.u16", uint16(60000)},
		{"t.i16", int16(-30000)},
		{"t.u32", uint32(4000000000)},
		{"t.i32", int32(-2000000000)},
		{"t.f32", float32(3.25)},
		{"t.bool", true},
		{"t.string", "héllo ▁wörld"},
		{"t.empty_string", ""},
		{"t.u64", uint64(1) << 63},
		{"t.i64", int64(-1) << 62},
		{"t.f64", 1e300},
		{"a.u8", []uint8{1, 2, 255}},
		{"a.i8", []int8{-1, 0, 127}},
		{"a.u16", []uint16{1, 65535}},
		{"a.i16", []int16{-32768, 32767}},
		{"a.u32", []uint32{7}},
		{"a.i32", []int32{-7, 7}},
		{"a.f32", []float32{-1.5, 0, 1e-30}},
		{"a.bool", []bool{true, false, true}},
		{"a.string", []string{"a", "", "▁b c", "<0x0A>"}},
		{"a.u64", []uint64{0, 1 << 60}},
		{"a.i64", []int64{-1 << 60}},
		{"a.f64", []float64{3.5, -2}},
		{"a.empty", []string{}},
	}
}

// randomData returns n deterministic pseudo-random bytes.
func randomData(seed uint64, n uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustInfo(t testing.TB, name string, typ uint32, dims ...uint64) TensorInfo {
	t.Helper()
	ti, err := NewTensorInfo(name, typ, dims...)
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		alignment uint64
		tensors   []TensorInfo
		chunk     int // write in pieces of this size; 0: WriteTensor
	}{
		{"no tensors", 0, nil, 0},
		{"floats", 0, []TensorInfo{
			mustInfo(t, "token_embd.weight", TypeF32, 7, 3),
			mustInfo(t, "blk.0.attn_norm.weight", TypeF32, 7),
			mustInfo(t, "blk.0.attn_q.weight", TypeF16, 5, 5),
			mustInfo(t, "b", TypeBF16, 3, 1, 2, 1),
		}, 0},
		{"quantized streamed", 0, []TensorInfo{
			mustInfo(t, "q4_0", TypeQ4_0, 64, 3),
			mustInfo(t, "q8_0", TypeQ8_0, 32),
			mustInfo(t, "q2_k", TypeQ2_K, 256, 2),
			mustInfo(t, "q3_k", TypeQ3_K, 256),
			mustInfo(t, "q4_k", TypeQ4_K, 512, 3),
			mustInfo(t, "q5_k", TypeQ5_K, 256),
			mustInfo(t, "q6_k", TypeQ6_K, 256, 5),
			mustInfo(t, "tq1_0", TypeTQ1_0, 256),
			mustInfo(t, "tq2_0", TypeTQ2_0, 256, 1, 1),
		}, 13},
		{"alignment 64", 64, []TensorInfo{
			mustInfo(t, "x", TypeF32, 3),
			mustInfo(t, "y", TypeQ8_0, 32, 3),
		}, 1},
		{"unknown type", 0, []TensorInfo{
			mustInfo(t, "x", TypeF32, 3),
			{Name: "opaque", Type: 1000, Dims: []uint64{10}, Size: 10},
		}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := &Plan{Metadata: allValues(), Tensors: tc.tensors, Alignment: tc.alignment}
			var buf bytes.Buffer
			w, err := NewWriter(&buf, plan)
			if err != nil {
				t.Fatal(err)
			}
			data := make([][]byte, len(tc.tensors))
			for i, ti := range tc.tensors {
				data[i] = randomData(uint64(i), ti.Size)
				if tc.chunk == 0 {
					if err := w.WriteTensor(ti.Name, data[i]); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := w.BeginTensor(ti.Name); err != nil {
					t.Fatal(err)
				}
				for b := data[i]; len(b) > 0; {
					n := min(tc.chunk, len(b))
					if _, err := w.Write(b[:n]); err != nil {
						t.Fatal(err)
					}
					b = b[n:]
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if int64(buf.Len()) != w.Size() {
				t.Fatalf("wrote %d bytes, Size says %d", buf.Len(), w.Size())
			}
			if tc.tensors != nil && buf.Len()%int(max(tc.alignment, DefaultAlignment)) != 0 {
				t.Errorf("file size %d is not aligned", buf.Len())
			}
			for _, ti := range tc.tensors {
				if _, known := traitsOf(ti.Type); !known {
					// Read sizes tensors from their type: an unknown
					// type cannot be read back.
					if _, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err == nil || !strings.Contains(err.Error(), `"`+ti.Name+`"`) {
						t.Errorf("reading a tensor of unknown type: error %v, want one naming %q", err, ti.Name)
					}
					return
				}
			}
			f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			want := allValues()
			want = append(want, KV{KeyAlignment, uint32(max(tc.alignment, DefaultAlignment))})
			if !reflect.DeepEqual(f.Metadata, want) {
				t.Errorf("metadata:\n got %v\nwant %v", f.Metadata, want)
			}
			if f.Version != Version || f.Alignment != max(tc.alignment, DefaultAlignment) {
				t.Errorf("version %d alignment %d", f.Version, f.Alignment)
			}
			if len(f.Tensors) != len(tc.tensors) {
				t.Fatalf("%d tensors, want %d", len(f.Tensors), len(tc.tensors))
			}
			for i, ti := range tc.tensors {
				got := f.Tensors[i]
				if got.Name != ti.Name || got.Type != ti.Type || got.Size != ti.Size || !reflect.DeepEqual(got.Dims, ti.Dims) {
					t.Errorf("tensor %d: got %+v, want %+v", i, got, ti)
				}
				if w.Tensors()[i].Offset != got.Offset {
					t.Errorf("tensor %q: offset %d, writer said %d", ti.Name, got.Offset, w.Tensors()[i].Offset)
				}
				b, err := f.ReadTensor(bytes.NewReader(buf.Bytes()), ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, data[i]) {
					t.Errorf("tensor %q: bytes differ", ti.Name)
				}
			}
			// Writing the read-back plan gives the same header bytes.
			hdr, _, _, err := (&Plan{Metadata: f.Metadata, Tensors: f.Tensors, Alignment: f.Alignment}).Layout()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hdr, buf.Bytes()[:len(hdr)]) || int64(len(hdr)) != f.DataOffset {
				t.Errorf("re-encoded header differs (len %d, data offset %d)", len(hdr), f.DataOffset)
			}
		})
	}
}

// failWriter fails once more than n bytes have been written.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	two := []TensorInfo{mustInfo(t, "a", TypeF32, 4), mustInfo(t, "b", TypeF16, 4)}
	tests := []struct {
		name    string
		plan    Plan
		dst     io.Writer
		write   func(w *Writer) error
		wantErr string
	}{
		{"duplicate key", Plan{Metadata: Metadata{{"k", "a"}, {"k", "b"}}}, nil, nil, `"k" appears twice`},
		{"unsupported value", Plan{Metadata: Metadata{{"k", []int{1}}}}, nil, nil, `"k"`},
		{"nested array", Plan{Metadata: Metadata{{"k", [][]string{{"a"}}}}}, nil, nil, `"k"`},
		{"alignment mismatch", Plan{Metadata: Metadata{{KeyAlignment, uint32(64)}}}, nil, nil, KeyAlignment},
		{"bad alignment", Plan{Alignment: 12}, nil, nil, "alignment 12"},
		{"duplicate tensor", Plan{Tensors: []TensorInfo{two[0], two[0]}}, nil, nil, `"a" appears twice`},
		{"size mismatch", Plan{Tensors: []TensorInfo{{Name: "s", Type: TypeF32, Dims: []uint64{4}, Size: 15}}}, nil, nil, `"s": size 15`},
		{"row not whole blocks", Plan{Tensors: []TensorInfo{{Name: "q", Type: TypeQ4_K, Dims: []uint64{100}, Size: 144}}}, nil, nil, `"q": row length 100`},
		{"five dims", Plan{Tensors: []TensorInfo{{Name: "d", Type: TypeF32, Dims: []uint64{1, 1, 1, 1, 1}, Size: 4}}}, nil, nil, `"d": 5 dimensions`},
		{"long name", Plan{Tensors: []TensorInfo{{Name: strings.Repeat("n", 64), Type: TypeF32, Dims: []uint64{1}, Size: 4}}}, nil, nil, "longer than 63"},
		{"out of order", Plan{Tensors: two}, nil, func(w *Writer) error { return w.WriteTensor("b", make([]byte, 8)) }, `"b" written out of order: the plan's next tensor is "a"`},
		{"wrong length", Plan{Tensors: two}, nil, func(w *Writer) error { return w.WriteTensor("a", make([]byte, 15)) }, `"a": 15 bytes given, the plan says 16`},
		{"overflow", Plan{Tensors: two}, nil, func(w *Writer) error {
			if err := w.BeginTensor("a"); err != nil {
				return err
			}
			_, err := w.Write(make([]byte, 17))
			return err
		}, `"a": 0 bytes written, 17 more would exceed its 16 bytes`},
		{"short tensor", Plan{Tensors: two}, nil, func(w *Writer) error {
			if err := w.BeginTensor("a"); err != nil {
				return err
			}
			if _, err := w.Write(make([]byte, 10)); err != nil {
				return err
			}
			return w.BeginTensor("b")
		}, `"a": 10 of 16 bytes written`},
		{"missing tensors", Plan{Tensors: two}, nil, func(w *Writer) error { return w.Close() }, `2 of 2 tensors not written (next: "a", "b")`},
		{"too many tensors", Plan{Tensors: two[:1]}, nil, func(w *Writer) error {
			if err := w.WriteTensor("a", make([]byte, 16)); err != nil {
				return err
			}
			return w.BeginTensor("b")
		}, `"b": all 1 tensors`},
		{"write without begin", Plan{Tensors: two}, nil, func(w *Writer) error { _, err := w.Write([]byte{1}); return err }, "without BeginTensor"},
		{"failing sink", Plan{Tensors: two}, &failWriter{n: 100}, func(w *Writer) error { return w.WriteTensor("a", make([]byte, 16)) }, "disk full"},
		{"failing sink header", Plan{Metadata: allValues()}, &failWriter{n: 10}, nil, "write header: disk full"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := tc.dst
			if dst == nil {
				dst = io.Discard
			}
			w, err := NewWriter(dst, &tc.plan)
			if err == nil && tc.write != nil {
				err = tc.write(w)
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestTensorBytes(t *testing.T) {
	tests := []struct {
		typ     uint32
		dims    []uint64
		want    uint64
		wantErr bool
	}{
		{TypeF32, []uint64{3, 2}, 24, false},
		{TypeF16, []uint64{3}, 6, false},
		{TypeBF16, []uint64{2, 2, 2}, 16, false},
		{TypeQ4_0, []uint64{64, 2}, 72, false},
		{TypeQ8_0, []uint64{32}, 34, false},
		{TypeQ2_K, []uint64{256}, 84, false},
		{TypeQ3_K, []uint64{256}, 110, false},
		{TypeQ4_K, []uint64{512}, 288, false},
		{TypeQ5_K, []uint64{256}, 176, false},
		{TypeQ6_K, []uint64{256, 3}, 630, false},
		{TypeTQ1_0, []uint64{256}, 54, false},
		{TypeTQ2_0, []uint64{256}, 66, false},
		{TypeQ4_K, []uint64{128}, 0, true},
		{TypeF32, []uint64{0}, 0, true},
		{TypeF32, nil, 0, true},
		{TypeF32, []uint64{1 << 40, 1 << 40}, 0, true},
		{1000, []uint64{1}, 0, true},
	}
	for _, tc := range tests {
		got, err := TensorBytes(tc.typ, tc.dims)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("TensorBytes(%s, %v) = %d, %v; want %d, error %v", TypeName(tc.typ), tc.dims, got, err, tc.want, tc.wantErr)
		}
	}
}

// copySink copies what it is given into a reused buffer, like the part
// buffer of an object-store upload (io.Discard would copy nothing).
type copySink struct{ buf []byte }

func (s *copySink) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		rest = rest[copy(s.buf, rest):]
	}
	return len(p), nil
}

// BenchmarkWriterStream measures the streaming path: a plan of four 16 MiB
// (F32) or 2.25 MiB (Q4_K) tensors written in pieces to a copying sink.
func BenchmarkWriterStream(b *testing.B) {
	for _, tc := range []struct {
		name  string
		typ   uint32
		chunk int
	}{{"F32/1MiB", TypeF32, 1 << 20}, {"Q4_K/64KiB", TypeQ4_K, 64 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			var plan Plan
			for i := range 4 {
				plan.Tensors = append(plan.Tensors, mustInfo(b, "blk."+string(rune('0'+i))+".ffn_up.weight", tc.typ, 4096, 1024))
			}
			var total uint64
			for _, t := range plan.Tensors {
				total += t.Size
			}
			chunk := randomData(1, uint64(tc.chunk))
			sink := &copySink{buf: make([]byte, 8<<20)}
			b.SetBytes(int64(total))
			b.ResetTimer()
			for b.Loop() {
				w, err := NewWriter(sink, &plan)
				if err != nil {
					b.Fatal(err)
				}
				for _, t := range plan.Tensors {
					if err := w.BeginTensor(t.Name); err != nil {
						b.Fatal(err)
					}
					for left := t.Size; left > 0; {
						n := min(left, uint64(len(chunk)))
						if _, err := w.Write(chunk[:n]); err != nil {
							b.Fatal(err)
						}
						left -= n
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteHeader measures laying out and writing a header with a
// 128k-token vocabulary (the metadata-heavy part of an export).
func BenchmarkWriteHeader(b *testing.B) {
	tokens := make([]string, 128000)
	scores := make([]float32, len(tokens))
	for i := range tokens {
		tokens[i] = "▁token" + string(rune('a'+i%26))
	}
	plan := &Plan{Metadata: Metadata{{"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.scores", scores}}}
	hdr, _, _, err := plan.Layout()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(hdr)))
	for b.Loop() {
		if _, err := NewWriter(io.Discard, plan); err != nil {
			b.Fatal(err)
		}
	}
}
