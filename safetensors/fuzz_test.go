package safetensors_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/safetensors"
)

// FuzzParseHeader feeds arbitrary files to the header parser: it must return
// a header or an error, never panic, and what it accepts must be consistent.
func FuzzParseHeader(f *testing.F) {
	for _, p := range []string{"../testdata/models/stories260k/safetensors.safetensors", "../testdata/models/stories260k-bf16-sharded/model-00002-of-00002.safetensors"} {
		if b, err := os.ReadFile(p); err == nil {
			n := binary.LittleEndian.Uint64(b)
			f.Add(b[:min(len(b), int(8+n)+64)], int64(len(b)))
		}
	}
	bad, _ := filepath.Glob("../testdata/bad/*/safetensors.safetensors")
	for _, p := range bad {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b[:min(len(b), 4096)], int64(len(b)))
		}
	}
	f.Add([]byte(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), int64(100))
	f.Fuzz(func(t *testing.T, file []byte, size int64) {
		if n, err := safetensors.HeaderLength(file, size); err == nil && int(8+n) <= len(file) {
			file = file[8 : 8+n]
		}
		h, err := safetensors.ParseHeader(file, size)
		if err != nil {
			return
		}
		dataLen := size - h.DataStart
		var end int64
		for _, ti := range h.Tensors {
			if ti.Begin < end || ti.End > dataLen || ti.End < ti.Begin {
				t.Fatalf("accepted a bad layout: %+v (data %d)", ti, dataLen)
			}
			if ti.NumElements()*int64(ti.DType.Size()) != ti.End-ti.Begin {
				t.Fatalf("accepted a size mismatch: %+v", ti)
			}
			end = ti.End
		}
	})
}
