package quant

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
)

// realModel is a model file fetched by scripts/models.sh.
type realModel struct {
	name, file string
	inTest     bool // fetched by plain `bash scripts/models.sh` (what make test needs)
}

var realModels = []realModel{
	{"smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", true},
	{"qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-awq.Q4_K_M.gguf", false},
}

// openRealModel opens a real model's GGUF file, or skips when it has not
// been fetched (fails under CI=true for the model make test fetches).
func openRealModel(t *testing.T, m realModel) (*os.File, *gguf.File) {
	t.Helper()
	path := filepath.Join(repoRoot(t), ".tools/models", m.name, m.file)
	fh, err := os.Open(path)
	if err != nil {
		msg := fmt.Sprintf("%s not found; fetch it with `bash scripts/models.sh %s`", path, m.name)
		if m.inTest && os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(fh, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return fh, f
}

// TestOracleRealModels decodes the tensors of the real models (SmolLM2's
// Q4_1 and Q8_0, Qwen 0.5B's Q5_0, Q8_0, Q4_K and Q6_K) with Dequantize
// and with ggml's to_float, and compares the bits: whole tensors of up to
// 2^22 values, the first 2^22 values of larger ones.
func TestOracleRealModels(t *testing.T) {
	o := startOracle(t)
	for _, m := range realModels {
		t.Run(m.name, func(t *testing.T) {
			fh, f := openRealModel(t, m)
			counts := map[Type]int{}
			for _, ti := range f.Tensors {
				typ := Type(ti.Type)
				if typ == F32 || !typ.Valid() {
					continue
				}
				rowLen := int(ti.Dims[0])
				rowSize, err := typ.RowSize(rowLen)
				if err != nil {
					t.Fatalf("%s: %v", ti.Name, err)
				}
				nrows := int(ti.Size) / rowSize
				nrows = min(nrows, max(1, (1<<22)/rowLen))
				sr, err := f.TensorReader(fh, ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, nrows*rowSize)
				if _, err := sr.ReadAt(b, 0); err != nil {
					t.Fatalf("%s: %v", ti.Name, err)
				}
				got := make([]float32, nrows*rowLen)
				if err := Dequantize(typ, got, b, rowLen); err != nil {
					t.Fatalf("%s: %v", ti.Name, err)
				}
				compareFloats(t, fmt.Sprintf("%s %s (%s)", m.name, ti.Name, typ), got, o.dequantize(t, typ, b, nrows, rowLen))
				counts[typ]++
			}
			if len(counts) == 0 {
				t.Fatalf("%s: no quantized tensors decoded", m.name)
			}
			t.Logf("%s: tensors decoded per type: %v", m.name, counts)
		})
	}
}
