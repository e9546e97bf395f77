package shards

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/internal/llamaquant"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

// realPresets are the presets TestPresetTypesRealModels checks on every
// real model (issue 11's list, and the importance-matrix forms of three).
var realPresets = []struct {
	name    string
	imatrix bool
}{
	{"q8_0", false}, {"q6_k", false}, {"q5_k_m", false}, {"q4_k_m", false}, {"q4_k_s", false},
	{"q3_k_m", false}, {"q3_k_s", false}, {"q2_k", false}, {"q4_0", false},
	{"q4_k_m", true}, {"q3_k_m", true}, {"q2_k", true},
}

// TestPresetTypesRealModels imports each real model (testdata/models/
// REAL.md) at F16, writes the F16 GGUF llama.cpp's quantizer starts from,
// quantizes it with libllama's llama_model_quantize to each of realPresets
// (an imatrix of ones where asked) and requires adaptq's plan to give every
// tensor llama.cpp's type. Minutes per model: not part of `make test`
// (ADAPTQ_REAL_PRESETS=1; ADAPTQ_REAL_PRESETS=smollm2-135m,... names the
// models).
func TestPresetTypesRealModels(t *testing.T) {
	sel := os.Getenv("ADAPTQ_REAL_PRESETS")
	if sel == "" {
		t.Skip("set ADAPTQ_REAL_PRESETS=1 (or a list of model names) to check the presets on the real models")
	}
	lq := llamaquant.Require(t)
	ctx := context.Background()
	var table []string
	for _, name := range []string{"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} {
		if sel != "1" && !strings.Contains(","+sel+",", ","+name+",") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			src := testenv.RealModel(t, name)
			dir := t.TempDir()
			in, err := store.NewLocal(filepath.Dir(src))
			if err != nil {
				t.Fatal(err)
			}
			out, err := store.NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := importer.Import(ctx, in, filepath.Base(src), out, importer.Options{DType: safetensors.F16}); err != nil {
				t.Fatal(err)
			}
			ck, err := model.Open(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := os.ReadFile(filepath.Join(dir, model.TokenizerFile))
			if err != nil {
				t.Fatal(err)
			}
			f16 := filepath.Join(t.TempDir(), "f16.gguf")
			f, err := os.Create(f16)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gguf.WriteFloatModel(ctx, ck, f, gguf.TypeF16, gguf.LlamaOptions{Tokenizer: tok}); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			_, hdr, err := llamaquant.TensorTypes(f16)
			if err != nil {
				t.Fatal(err)
			}
			plan := MakePlan(ck)
			for _, p := range realPresets {
				dst := filepath.Join(t.TempDir(), p.name+".gguf")
				opt := llamaquant.Options{Threads: 2}
				if p.imatrix {
					opt.Imatrix = onesImatrix(hdr)
				}
				if err := lq.Quantize(ctx, f16, dst, p.name, opt); err != nil {
					t.Fatal(err)
				}
				want, _, err := llamaquant.TensorTypes(dst)
				os.Remove(dst)
				if err != nil {
					t.Fatal(err)
				}
				r, err := NamedRecipe(p.name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := plan.types(ck, r, p.imatrix)
				if err != nil {
					t.Fatal(err)
				}
				ours := map[string]uint32{}
				for _, g := range got {
					ours[g.GGUFName] = uint32(g.Output)
				}
				bad := llamaquant.Mismatches(ours, want)
				for _, m := range bad {
					t.Errorf("%s imatrix=%v: %s", p.name, p.imatrix, m)
				}
				table = append(table, fmt.Sprintf("| %s | %s | %v | %d | %d |", name, p.name, p.imatrix, len(want), len(bad)))
			}
		})
	}
	t.Logf("\n| model | preset | imatrix | tensors compared | mismatches |\n| --- | --- | --- | --- | --- |\n%s", strings.Join(table, "\n"))
}
