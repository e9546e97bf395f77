package export_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/internal/llamaquant"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// imatrixPresets are the presets the importance-weighted export is checked
// on: every one whose types take an importance (Q8_0 ignores it; q8_0
// is there as the control).
var imatrixPresets = []string{"q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
	"q4_0", "q4_1", "q5_0", "q5_1", "q8_0"}

// f16Checkpoint returns a checkpoint holding F16 values and the F16 GGUF
// of the same values, which is what llama-quantize reads. For the fixture
// (stored as F32) it is the F16 GGUF imported back (importer, F16): the
// rounding to F16 is what makes the two sources hold the same values. A
// synthetic shape is written as F16 directly.
func f16Checkpoint(t *testing.T, config string) (*model.Checkpoint, string) {
	t.Helper()
	ctx := context.Background()
	tok, err := os.ReadFile("../testdata/models/stories260k/" + model.TokenizerFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, _ := store.NewLocal(dir)
	writeGGUF := func(ck *model.Checkpoint) string {
		path := filepath.Join(t.TempDir(), "f16.gguf")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := gguf.WriteFloatModel(ctx, ck, f, gguf.TypeF16, gguf.LlamaOptions{Tokenizer: tok}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if config == "" {
		f16 := writeGGUF(fixture(t))
		src, _ := store.NewLocal(filepath.Dir(f16))
		if _, _, err := importer.Import(ctx, src, filepath.Base(f16), st, importer.Options{DType: safetensors.F16}); err != nil {
			t.Fatal(err)
		}
		ck, err := model.Open(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		return ck, f16
	}
	raw, cfg, err := synth.ShapeConfig(config, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, st, raw, cfg, synth.Options{DType: safetensors.F16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, model.TokenizerFile), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	return ck, writeGGUF(ck)
}

// spreadIMatrix is an importance matrix for every weight an imatrix of ck
// may hold, with importances spread over four orders of magnitude (so the
// weighting changes most blocks), in the file adaptq reads.
func spreadIMatrix(t *testing.T, ck *model.Checkpoint) (*gguf.IMatrix, []byte) {
	t.Helper()
	r, _ := shards.NamedRecipe("q8_0")
	cols, _, err := shards.MakePlan(ck).IMatrixWeights(ck, r)
	if err != nil {
		t.Fatal(err)
	}
	im := &gguf.IMatrix{Datasets: []string{"spread"}, ChunkCount: 3, ChunkSize: 100, Entries: map[string]*gguf.IMatrixEntry{}}
	seed := uint64(12345)
	for _, name := range sortedKeys(cols) {
		n := cols[name]
		e := &gguf.IMatrixEntry{Cols: n, Mats: 1, Sum2: make([]float32, n), Counts: []float32{300}}
		for i := range e.Sum2 {
			seed = seed*6364136223846793005 + 1442695040888963407
			u := float64(seed>>11) / (1 << 53)
			e.Sum2[i] = float32(300 * math.Pow(10, 4*u-2))
		}
		im.Entries[name] = e
	}
	var buf bytes.Buffer
	if err := gguf.WriteIMatrix(&buf, im); err != nil {
		t.Fatal(err)
	}
	// What adaptq reads back is what it quantizes with.
	back, err := gguf.ReadIMatrix(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	return back, buf.Bytes()
}

func sortedKeys(m map[string]int) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}

// TestIMatrixExportEqualsLlamaCpp is the oracle test of the
// importance-weighted export: for every preset whose types take an
// importance, `adaptq export --imatrix F` (export.RunWeighted with the file
// read back) writes, tensor for tensor, the type and the bytes that
// libllama's llama_model_quantize writes from the F16 GGUF of the same
// values given the same importance (Options.Imatrix: the file's Σx²/count
// per column), on the fixture (rows of 64 and 172: fallbacks included)
// and on a synthetic model whose rows are multiples of 256.
func TestIMatrixExportEqualsLlamaCpp(t *testing.T) {
	lq := llamaquant.Require(t)
	ctx := context.Background()
	var table []string
	for _, shape := range []struct{ name, config string }{
		{"stories260k-f16", ""},
		{"llama-gqa4-4L", `{"model_type":"llama","hidden_size":256,"intermediate_size":512,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":1024,"tie_word_embeddings":false}`},
	} {
		t.Run(shape.name, func(t *testing.T) {
			ck, f16 := f16Checkpoint(t, shape.config)
			im, file := spreadIMatrix(t, ck)
			imp, err := shards.ImportanceOf(im)
			if err != nil {
				t.Fatal(err)
			}
			imDir := t.TempDir()
			if err := os.WriteFile(filepath.Join(imDir, "imatrix.gguf"), file, 0o644); err != nil {
				t.Fatal(err)
			}
			imStore, _ := store.NewLocal(imDir)
			for _, preset := range imatrixPresets {
				r, err := shards.NamedRecipe(preset)
				if err != nil {
					t.Fatal(err)
				}
				read, sha, err := export.ReadIMatrix(ctx, imStore, "imatrix.gguf")
				if err != nil {
					t.Fatal(err)
				}
				r.Imatrix = &shards.IMatrixRef{Location: filepath.Join(imDir, "imatrix.gguf"), SHA256: sha}
				outDir := t.TempDir()
				out, _ := store.NewLocal(outDir)
				if _, _, err := export.RunWeighted(ctx, ck, out, r, read, export.Events{}); err != nil {
					t.Fatal(err)
				}
				theirs := filepath.Join(t.TempDir(), preset+".gguf")
				if err := lq.Quantize(ctx, f16, theirs, preset, llamaquant.Options{Threads: 2, Imatrix: imp}); err != nil {
					t.Fatal(err)
				}
				n, weighted, bad := compareTensors(t, filepath.Join(outDir, export.GGUFKey), theirs, imp)
				for _, b := range bad {
					t.Errorf("%s: %s", preset, b)
				}
				if preset == "q4_k_m" {
					// The control: without the importance our file is not
					// llama.cpp's weighted one, so the comparison can fail.
					plainDir := t.TempDir()
					plain, _ := store.NewLocal(plainDir)
					r.Imatrix = nil
					if _, _, err := export.Run(ctx, ck, plain, r, export.Events{}); err != nil {
						t.Fatal(err)
					}
					if _, _, diff := compareTensors(t, filepath.Join(plainDir, export.GGUFKey), theirs, imp); len(diff) == 0 {
						t.Error("q4_k_m: the unweighted export equals llama.cpp's weighted file")
					}
				}
				table = append(table, fmt.Sprintf("| %s | %s | %d | %d | %d |", shape.name, preset, n, weighted, len(bad)))
				os.Remove(theirs)
			}
		})
	}
	t.Logf("\n| checkpoint | preset | tensors compared | with importance | differing |\n| --- | --- | --- | --- | --- |\n%s", strings.Join(table, "\n"))
}

// compareTensors compares every tensor of llama.cpp's file with ours of
// the same name: type and bytes. It returns the tensors compared, how many
// of them had an importance, and the differences.
func compareTensors(t *testing.T, ours, theirs string, imp shards.Importance) (int, int, []string) {
	t.Helper()
	open := func(path string) (*gguf.File, *os.File) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		st, _ := f.Stat()
		g, err := gguf.Read(f, st.Size())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return g, f
	}
	og, of := open(ours)
	tg, tf := open(theirs)
	var bad []string
	n, weighted := 0, 0
	for _, ti := range tg.Tensors {
		oi, ok := og.Tensor(ti.Name)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: not in our file", ti.Name))
			continue
		}
		n++
		if _, ok := imp[ti.Name]; ok {
			weighted++
		}
		if oi.Type != ti.Type {
			bad = append(bad, fmt.Sprintf("%s: type %s, llama.cpp %s", ti.Name, gguf.TypeName(oi.Type), gguf.TypeName(ti.Type)))
			continue
		}
		a, err := og.ReadTensor(of, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := tg.ReadTensor(tf, ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			i := 0
			for i < len(a) && i < len(b) && a[i] == b[i] {
				i++
			}
			bad = append(bad, fmt.Sprintf("%s (%s): bytes differ from byte %d of %d", ti.Name, gguf.TypeName(ti.Type), i, len(b)))
		}
	}
	if len(og.Tensors) != len(tg.Tensors) {
		bad = append(bad, fmt.Sprintf("%d tensors in our file, %d in llama.cpp's", len(og.Tensors), len(tg.Tensors)))
	}
	return n, weighted, bad
}
