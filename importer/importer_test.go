package importer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

const fixtureDir = "../testdata/models/stories260k"

func fixture(t testing.TB) *model.Checkpoint {
	t.Helper()
	s, err := store.NewLocal(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// floatGGUF writes the fixture as a float GGUF file of type typ and
// returns its path.
func floatGGUF(t testing.TB, ck *model.Checkpoint, typ uint32) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.gguf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := gguf.WriteFloatModel(context.Background(), ck, f, typ, gguf.LlamaOptions{Name: "stories260k"}); err != nil {
		t.Fatal(err)
	}
	return p
}

// quantizedGGUF exports a checkpoint with a recipe (as `adaptq export
// --type <recipe>` does) and returns the GGUF's path.
func quantizedGGUF(t testing.TB, ck *model.Checkpoint, recipe string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := shards.NamedRecipe(recipe)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := export.Run(context.Background(), ck, out, r, export.Events{}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, export.GGUFKey)
}

// importFile imports the GGUF file at path into a new directory and
// returns the opened checkpoint.
func importFile(t testing.TB, path string, opts importer.Options) (*model.Checkpoint, *importer.Summary) {
	t.Helper()
	ctx := context.Background()
	src, err := store.NewLocal(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	out, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, sum, err := importer.Import(ctx, src, filepath.Base(path), out, opts)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, out)
	if err != nil {
		t.Fatalf("the import does not open: %v", err)
	}
	return ck, sum
}

// checkTensors compares every tensor of an import with the GGUF's own,
// dequantized with quant.Dequantize row by row: the import's query/key
// row h must be the GGUF row the export's gguf.PermuteQK puts at h's
// place. Matrices are compared after rounding the GGUF values to the
// import's dtype; vectors must be F32 and equal. The import is streamed a
// block of rows at a time, so memory stays bounded for large models.
func checkTensors(t *testing.T, path string, ck *model.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	f, err := gguf.Read(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	specs, err := gguf.LlamaTensors(ck.Config)
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, s := range specs {
		if s.Source == "" {
			continue
		}
		ti, ok := f.Tensor(s.Name)
		if !ok {
			t.Fatalf("GGUF has no %s", s.Name)
		}
		raw, err := f.ReadTensor(fh, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		hf, ok := ck.Tensor(s.Source)
		if !ok {
			t.Fatalf("import has no %s", s.Source)
		}
		if len(hf.Shape) == 1 && hf.DType != safetensors.F32 {
			t.Errorf("%s: vector in %s, want F32", hf.Name, hf.DType)
		}
		cols := int(ti.Dims[0])
		rows := int(ti.NumElements()) / cols
		rowBytes := len(raw) / rows
		// ggufRow[h] is the GGUF row holding Hugging Face row h.
		ggufRow := make([]int, rows)
		for h := range ggufRow {
			ggufRow[h] = h
		}
		if s.PermuteHeadDim > 0 {
			idx := make([]float32, rows)
			for h := range idx {
				idx[h] = float32(h)
			}
			perm := make([]float32, rows)
			if err := gguf.PermuteQK(perm, idx, 1, s.PermuteHeadDim); err != nil {
				t.Fatal(err)
			}
			for r, h := range perm {
				ggufRow[int(h)] = r
			}
		}
		want := make([]float32, cols)
		round := make([]byte, cols*hf.DType.Size())
		err = ck.StreamRows(ctx, s.Source, 4<<20, func(first int64, block []float32) error {
			for i := 0; i < len(block)/cols; i++ {
				h := int(first) + i
				r := ggufRow[h]
				if err := quant.Dequantize(quant.Type(ti.Type), want, raw[r*rowBytes:(r+1)*rowBytes], cols); err != nil {
					return err
				}
				if hf.DType != safetensors.F32 {
					if err := safetensors.EncodeFloat32(round, want, hf.DType); err != nil {
						return err
					}
					if err := safetensors.DecodeFloat32(want, round, hf.DType); err != nil {
						return err
					}
				}
				got := block[i*cols : (i+1)*cols]
				for j := range want {
					if got[j] != want[j] && !(got[j] != got[j] && want[j] != want[j]) {
						return fmt.Errorf("%s (%s): row %d value %d is %g, the GGUF's %s row %d has %g", s.Source, s.Name, h, j, got[j], gguf.TypeName(ti.Type), r, want[j])
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		compared++
	}
	if compared != len(ck.Tensors) {
		t.Errorf("compared %d tensors, the import has %d", compared, len(ck.Tensors))
	}
}

// TestFixtureRoundTrip: the fixture exported as GGUF (F32, and quantized
// to Q8_0 with its fallbacks) and imported again gives the same config,
// tensors equal to the GGUF's dequantized ones (the F32 import of the F32
// export equals the original checkpoint exactly), and a tokenizer whose
// ids on the sample text are the fixture's.
func TestFixtureRoundTrip(t *testing.T) {
	ck := fixture(t)
	ids, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("../testdata/text/tinystories-valid-sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		path  func() string
		dtype safetensors.DType
	}{
		{"f32 export, f32 import", func() string { return floatGGUF(t, ck, gguf.TypeF32) }, safetensors.F32},
		{"f16 export, f16 import", func() string { return floatGGUF(t, ck, gguf.TypeF16) }, safetensors.F16},
		{"q8_0 export, f32 import", func() string { return quantizedGGUF(t, ck, "q8_0") }, safetensors.F32},
		{"q4_k export, bf16 import", func() string { return quantizedGGUF(t, ck, "q4_k") }, safetensors.BF16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path()
			imp, sum := importFile(t, path, importer.Options{DType: tc.dtype})
			want := *ck.Config
			want.TorchDType = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.F16: "float16", safetensors.BF16: "bfloat16"}[tc.dtype]
			if !reflect.DeepEqual(imp.Config, &want) {
				t.Errorf("config %+v\nwant   %+v", imp.Config, &want)
			}
			checkTensors(t, path, imp)
			if sum.Tensors != len(ck.Tensors) || sum.Params != ck.NumParams() {
				t.Errorf("summary %+v, want %d tensors, %d parameters", sum, len(ck.Tensors), ck.NumParams())
			}
			if tc.dtype == safetensors.F32 && tc.name[:3] == "f32" {
				for _, ht := range ck.Tensors {
					a, _ := ck.ReadFloat32(context.Background(), ht.Name)
					b, err := imp.ReadFloat32(context.Background(), ht.Name)
					if err != nil || !slices.Equal(a, b) {
						t.Fatalf("%s differs from the original checkpoint (%v)", ht.Name, err)
					}
				}
			}
			tok, err := tokenizer.Load(filepath.Join(imp.Store.(*store.Local).Root(), model.TokenizerFile))
			if err != nil {
				t.Fatal(err)
			}
			got := tok.Encode(string(text), false)
			if !slices.Equal(got, int32sToInts(ids)) {
				t.Errorf("tokenizer: %d ids, want %d; first difference at %s", len(got), len(ids), firstDiff(got, int32sToInts(ids)))
			}
		})
	}
}

func int32sToInts(v []int32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

func firstDiff(a, b []int) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d (%d vs %d)", i, a[i], b[i])
		}
	}
	return fmt.Sprint(min(len(a), len(b)))
}
