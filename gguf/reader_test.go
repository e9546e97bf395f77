package gguf

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// validFile returns a small valid GGUF file.
func validFile(t testing.TB) []byte {
	t.Helper()
	plan := &Plan{
		Metadata: Metadata{{"general.architecture", "llama"}, {"a.strings", []string{"x", "yz"}}, {"n", uint32(3)}},
		Tensors:  []TensorInfo{mustInfo(t, "t0", TypeF32, 2, 2), mustInfo(t, "t1", TypeQ8_0, 32)},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Tensors() {
		if err := w.WriteTensor(ti.Name, randomData(3, ti.Size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// header builds a GGUF header by hand for the error cases.
type header struct{ encoder }

func newHeader(version uint32, nTensors, nKV uint64) *header {
	h := &header{}
	h.b = append(h.b, Magic...)
	h.u32(version)
	h.u64(nTensors)
	h.u64(nKV)
	return h
}

func (h *header) tensor(name string, typ uint32, offset uint64, dims ...uint64) *header {
	h.str(name)
	h.u32(uint32(len(dims)))
	for _, d := range dims {
		h.u64(d)
	}
	h.u32(typ)
	h.u64(offset)
	return h
}

func (h *header) pad(n int) []byte {
	for len(h.b)%32 != 0 {
		h.b = append(h.b, 0)
	}
	return append(h.b, make([]byte, n)...)
}

func TestReadErrors(t *testing.T) {
	hugeArray := newHeader(3, 0, 1)
	hugeArray.str("tokenizer.ggml.tokens")
	hugeArray.u32(uint32(ValueArray))
	hugeArray.u32(uint32(ValueString))
	hugeArray.u64(1 << 40)

	hugeString := newHeader(3, 0, 1)
	hugeString.str("general.name")
	hugeString.u32(uint32(ValueString))
	hugeString.u64(1 << 50)

	badType := newHeader(3, 0, 1)
	badType.str("k")
	badType.u32(99)

	badBool := newHeader(3, 0, 1)
	badBool.str("flag")
	badBool.u32(uint32(ValueBool))
	badBool.u8(2)

	nested := newHeader(3, 0, 1)
	nested.str("nested")
	nested.u32(uint32(ValueArray))
	nested.u32(uint32(ValueArray))
	nested.u64(1)

	dupKey := newHeader(3, 0, 2)
	dupKey.kv("k", uint8(1))
	dupKey.kv("k", uint8(2))

	badAlign := newHeader(3, 0, 1)
	badAlign.kv(KeyAlignment, uint32(48))

	tests := []struct {
		name    string
		file    []byte
		wantErr string
	}{
		{"empty", nil, "read magic"},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), "not a GGUF file"},
		{"version 1", newHeader(1, 0, 0).b, "version 1"},
		{"huge tensor count", newHeader(3, 1<<60, 0).b, "tensor count"},
		{"huge metadata count", newHeader(3, 0, 1<<60).b, "metadata count"},
		{"huge array", hugeArray.b, `"tokenizer.ggml.tokens": at offset`},
		{"huge string", hugeString.b, `"general.name"`},
		{"unknown value type", badType.b, `"k": at offset`},
		{"bad bool", badBool.b, `"flag"`},
		{"nested array", nested.b, `"nested": at offset 42: arrays of arrays`},
		{"duplicate key", dupKey.b, `"k" appears twice`},
		{"alignment not power of two", badAlign.b, KeyAlignment},
		{"tensor beyond end", newHeader(3, 1, 0).tensor("w", TypeF32, 0, 8).pad(31), `"w"`},
		{"overlap", newHeader(3, 2, 0).tensor("w", TypeF32, 0, 16).tensor("v", TypeF32, 32, 16).pad(128), `"v" at data offset 32 overlaps tensor "w"`},
		{"misaligned", newHeader(3, 1, 0).tensor("w", TypeF32, 4, 1).pad(64), `"w": offset 4`},
		{"duplicate tensor", newHeader(3, 2, 0).tensor("w", TypeF32, 0, 1).tensor("w", TypeF32, 32, 1).pad(64), `"w" appears twice`},
		{"zero dims", newHeader(3, 1, 0).tensor("w", TypeF32, 0).pad(64), `"w": 0 dimensions`},
		{"zero dim", newHeader(3, 1, 0).tensor("w", TypeF32, 0, 0).pad(64), `"w": dimensions [0]`},
		{"unknown tensor type", newHeader(3, 1, 0).tensor("w", 77, 0, 1).pad(64), `"w": ggml type 77`},
		{"partial block", newHeader(3, 1, 0).tensor("w", TypeQ4_K, 0, 100).pad(1024), `"w": row length 100`},
		{"overflowing dims", newHeader(3, 1, 0).tensor("w", TypeF32, 0, 1<<62, 1<<62).pad(64), `"w": dimensions`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.file), int64(len(tc.file)))
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

// Every truncation of a valid file is an error (not a panic) until the last
// tensor's data is whole (the padding after it is optional).
func TestReadTruncated(t *testing.T) {
	file := validFile(t)
	end := len(file) - 30 // the Q8_0 tensor t1 has 34 bytes, padded to 64
	for n := 0; n < end; n++ {
		if _, err := Read(bytes.NewReader(file[:n]), int64(n)); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(file))
		}
	}
	for _, n := range []int{end, len(file)} {
		if _, err := Read(bytes.NewReader(file[:n]), int64(n)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadTensorUnknown(t *testing.T) {
	file := validFile(t)
	f, err := Read(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadTensor(bytes.NewReader(file), "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("error %v, want one naming the tensor", err)
	}
	off, err := f.TensorOffset("t1")
	if err != nil || off != f.DataOffset+32 {
		t.Errorf("offset of t1 = %d, %v; want %d", off, err, f.DataOffset+32)
	}
}

// FuzzRead: arbitrary bytes never make Read panic or allocate beyond what
// the input's size allows, and whatever it accepts is consistent.
func FuzzRead(f *testing.F) {
	valid := validFile(f)
	f.Add(valid)
	f.Add(valid[:40])
	f.Add(newHeader(3, 1<<40, 1<<40).b)
	for _, off := range []int{8, 16, 24, 40} {
		c := bytes.Clone(valid)
		binary.LittleEndian.PutUint64(c[off:], 1<<62)
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, ti := range file.Tensors {
			if file.DataOffset+int64(ti.Offset)+int64(ti.Size) > int64(len(data)) {
				t.Fatalf("tensor %q reaches beyond the file", ti.Name)
			}
			b, err := file.ReadTensor(bytes.NewReader(data), ti.Name)
			if err != nil || uint64(len(b)) != ti.Size {
				t.Fatalf("tensor %q: %d bytes, %v", ti.Name, len(b), err)
			}
		}
		// What was read can be written again.
		if _, _, _, err := (&Plan{Metadata: file.Metadata, Tensors: file.Tensors, Alignment: file.Alignment}).Layout(); err != nil {
			if !strings.Contains(err.Error(), "alignment") {
				t.Fatalf("re-layout: %v", err)
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	tokens := make([]string, 32000)
	for i := range tokens {
		tokens[i] = "▁tok"
	}
	plan := &Plan{Metadata: Metadata{{"tokenizer.ggml.tokens", tokens}}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, plan)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if _, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			b.Fatal(err)
		}
	}
}

// Read allocates in proportion to the file's size, whatever its counts
// claim: an array of n strings needs at least 8n bytes of file.
func TestReadAllocationBounded(t *testing.T) {
	for _, elem := range []ValueType{ValueString, ValueUint8, ValueBool, ValueUint64} {
		h := newHeader(3, 0, 1)
		h.str("big")
		h.u32(uint32(ValueArray))
		h.u32(uint32(elem))
		h.u64(1 << 20) // claims a million elements
		file := append(h.b, make([]byte, 1<<20)...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = Read(bytes.NewReader(file), int64(len(file)))
		runtime.ReadMemStats(&after)
		allocs := int64(after.TotalAlloc - before.TotalAlloc)
		// []string of 1M headers is 16 MiB: 16 bytes per 8 bytes of file
		// plus the reader's buffer.
		if limit := int64(16*len(file)) + 1<<20; allocs > limit {
			t.Errorf("%s array: %d bytes allocated for a %d-byte file (limit %d)", elem, allocs, len(file), limit)
		}
	}
}
