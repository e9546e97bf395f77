package shards

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/llamaquant"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// presetShapes are the checkpoints the preset check runs on: the fixture
// (rows of 64 and 172, which fit no K-quant block and, for 172, no 32-block)
// and synthetic checkpoints with real models' row lengths and head counts,
// few layers and a small vocabulary (the vocabulary changes no rule of a
// dense preset). Each names the presets it checks (nil: all but f32, bf16
// and the i-quant mixtures), whether it also checks them with an
// importance matrix, and the i-quant mixtures it checks (with and without
// one); the selection keeps `make test` quick (llama.cpp's i-quant
// searches are slow), and TestPresetTypesRealModels covers every preset
// on the real models.
var presetShapes = []struct {
	name, config string // config "" is the fixture
	presets      []string
	imatrix      bool
	iq           []string
}{
	{"stories260k", "", allPresets(), true, allIQ()},
	// SmolLM2-135M: rows of 576 (not a multiple of 256), 9/3 heads (GQA 3), tied.
	{"smollm2-135m-2L", `{"model_type":"llama","hidden_size":576,"intermediate_size":1536,"num_hidden_layers":2,"num_attention_heads":9,"num_key_value_heads":3,"vocab_size":2048,"tie_word_embeddings":true}`, nil, false,
		[]string{"iq4_xs", "iq2_xxs"}},
	// Qwen2.5-0.5B: rows of 896 and 4864, 14/2 heads (GQA 7), biases, untied (as the real file).
	{"qwen2.5-0.5b-1L", `{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":1,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":2048,"tie_word_embeddings":false}`, nil, false,
		[]string{"iq2_m"}},
	// Every row a multiple of 256, GQA 4, untied, 16 layers (n/8 = 2, n/16 = 1).
	{"llama-gqa4-16L", `{"model_type":"llama","hidden_size":256,"intermediate_size":256,"num_hidden_layers":16,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":1024,"tie_word_embeddings":false}`, nil, true, nil},
	// The same with 8 layers (n/8 = 1) for the i-quant mixtures, whose
	// searches are slow in llama.cpp too: one of each family of rules
	// (qwen3-4L has the others).
	{"llama-gqa4-8L", `{"model_type":"llama","hidden_size":256,"intermediate_size":256,"num_hidden_layers":8,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":512,"tie_word_embeddings":false}`, []string{}, false,
		[]string{"iq4_xs", "iq3_m", "iq3_xs", "iq3_xxs", "iq2_m", "iq2_xxs", "iq1_s"}},
	// Qwen3 (q/k norms), GQA 2, tied, 12 layers.
	{"qwen3-12L", `{"model_type":"qwen3","hidden_size":256,"intermediate_size":512,"num_hidden_layers":12,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,"vocab_size":1024,"tie_word_embeddings":true}`, nil, false, nil},
	// The same with 4 layers for the i-quant mixtures: GQA below 4 and
	// a tied embedding (the output's rules).
	{"qwen3-4L", `{"model_type":"qwen3","hidden_size":256,"intermediate_size":512,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,"vocab_size":512,"tie_word_embeddings":true}`, []string{}, false,
		[]string{"iq4_nl", "iq3_s", "iq3_xxs", "iq2_s", "iq2_xs", "iq1_m"}},
	// 80 layers and GQA: llama.cpp's LLM_TYPE_70B, whose Q3_K and Q4_K
	// attn_v get Q5_K (the presets with such an attn_v; not the 1- and
	// 2-bit i-quants', which iq2_m checks).
	{"llama-70b-type-80L", `{"model_type":"llama","hidden_size":256,"intermediate_size":256,"num_hidden_layers":80,"num_attention_heads":4,"num_key_value_heads":1,"vocab_size":512,"tie_word_embeddings":false}`,
		[]string{"q2_k", "q3_k_s", "q3_k_m", "q4_k_s", "q4_k_m"}, false, []string{"iq3_m", "iq2_m"}},
}

// iqPreset reports whether a preset is one of the i-quant mixtures.
func iqPreset(name string) bool { return strings.HasPrefix(name, "iq") }

// allPresets names every preset but the i-quant mixtures.
func allPresets() []string {
	var names []string
	for _, p := range Presets() {
		if !iqPreset(p.Name) {
			names = append(names, p.Name)
		}
	}
	return names
}

// imatrixRule reports whether one of llama.cpp's rules for the i-quant
// mixture depends on has_imatrix.
func imatrixRule(name string) bool {
	return name == "iq4_nl" || name == "iq4_xs" || name == "iq3_xxs"
}

// allIQ names every i-quant mixture.
func allIQ() []string {
	var names []string
	for _, p := range Presets() {
		if iqPreset(p.Name) {
			names = append(names, p.Name)
		}
	}
	return names
}

// checkedPresets is a shape's preset list (nil: all but f32, bf16 and the
// i-quant mixtures) and its i-quant mixtures.
func checkedPresets(names, iq []string) []Preset {
	var out []Preset
	for _, p := range Presets() {
		switch {
		case iqPreset(p.Name):
			if slices.Contains(iq, p.Name) {
				out = append(out, p)
			}
		case (names == nil && p.Name != "f32" && p.Name != "bf16") || slices.Contains(names, p.Name):
			out = append(out, p)
		}
	}
	return out
}

// presetCheckpoint writes a shape's checkpoint (with the fixture's
// tokenizer) and its F16 GGUF, and returns both.
func presetCheckpoint(t *testing.T, config string) (*model.Checkpoint, string) {
	t.Helper()
	ctx := context.Background()
	fixtureDir := filepath.Join("..", "testdata", "models", "stories260k")
	dir := fixtureDir
	if config != "" {
		dir = t.TempDir()
		st, err := store.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		raw, cfg, err := synth.ShapeConfig(config, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := synth.Write(ctx, st, raw, cfg, synth.Options{DType: safetensors.F16, Seed: 1}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(fixtureDir, model.TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f16.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := gguf.WriteFloatModel(ctx, ck, f, gguf.TypeF16, gguf.LlamaOptions{Tokenizer: tok}); err != nil {
		t.Fatal(err)
	}
	return ck, path
}

// onesImatrix is an importance matrix of ones for every weight llama.cpp
// quantizes: it changes no value's weight, only llama.cpp's has_imatrix.
func onesImatrix(f *gguf.File) map[string][]float32 {
	im := map[string][]float32{}
	for _, ti := range f.Tensors {
		if len(ti.Dims) == 2 && strings.HasSuffix(ti.Name, ".weight") && !strings.HasSuffix(ti.Name, "_norm.weight") {
			v := make([]float32, ti.Dims[0])
			for i := range v {
				v[i] = 1
			}
			im[ti.Name] = v
		}
	}
	return im
}

// TestPresetTypesLlamaCpp quantizes each shape's F16 GGUF with libllama's
// llama_model_quantize to every preset, with and without an importance
// matrix, and requires the type adaptq's plan gives each tensor to be the
// type in llama.cpp's file, for every tensor name.
func TestPresetTypesLlamaCpp(t *testing.T) {
	lq := llamaquant.Require(t)
	ctx := context.Background()
	var table []string
	for _, shape := range presetShapes {
		t.Run(shape.name, func(t *testing.T) {
			start := time.Now()
			ck, f16 := presetCheckpoint(t, shape.config)
			t.Logf("checkpoint and F16 GGUF: %v", time.Since(start))
			defer func(start time.Time) { t.Logf("presets: %v", time.Since(start)) }(time.Now())
			plan := MakePlan(ck)
			_, f16Header, err := llamaquant.TensorTypes(f16)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkedPresets(shape.presets, shape.iq) {
				// The i-quant mixtures run with and without an importance
				// matrix on every shape: llama.cpp refuses some without
				// one, and ImatrixRequired must say so exactly then.
				iq := iqPreset(p.Name)
				for _, imatrix := range []bool{false, true} {
					if imatrix && !iq && (!shape.imatrix || !quantized(p.Base)) {
						continue
					}
					dst := filepath.Join(t.TempDir(), p.Name+".gguf")
					opt := llamaquant.Options{Threads: 2}
					if imatrix {
						opt.Imatrix = onesImatrix(f16Header)
					}
					r, err := NamedRecipe(p.Name)
					if err != nil {
						t.Fatal(err)
					}
					if iq && !imatrix && shape.config != "" && !imatrixRule(p.Name) && plan.ImatrixRequired(ck, r) == nil {
						continue // the same types as with one
					}
					qerr := lq.Quantize(ctx, f16, dst, p.Name, opt)
					if !imatrix {
						needErr := plan.ImatrixRequired(ck, r)
						var need *ImatrixRequiredError
						if needErr != nil && !errors.As(needErr, &need) {
							t.Fatal(needErr)
						}
						refused := qerr != nil && strings.Contains(qerr.Error(), "importance matrix")
						if refused != (need != nil) {
							t.Errorf("%s without an imatrix: llama.cpp refuses: %v, ImatrixRequired: %v (llama.cpp: %v)", p.Name, refused, needErr, qerr)
						}
						if refused {
							table = append(table, fmt.Sprintf("| %s | %s | %v | refused by both (%s) | 0 |", shape.name, p.Name, imatrix, need.Tensor))
							continue
						}
					}
					if qerr != nil {
						t.Fatal(qerr)
					}
					want, _, err := llamaquant.TensorTypes(dst)
					os.Remove(dst)
					if err != nil {
						t.Fatal(err)
					}
					got, err := plan.types(ck, r, imatrix)
					if err != nil {
						t.Fatal(err)
					}
					ours := map[string]uint32{}
					for _, g := range got {
						ours[g.GGUFName] = uint32(g.Output)
					}
					bad := llamaquant.Mismatches(ours, want)
					for _, m := range bad {
						t.Errorf("%s imatrix=%v: %s", p.Name, imatrix, m)
					}
					table = append(table, fmt.Sprintf("| %s | %s | %v | %d | %d |", shape.name, p.Name, imatrix, len(want), len(bad)))
				}
			}
		})
	}
	t.Logf("\n| shape | preset | imatrix | tensors compared | mismatches |\n| --- | --- | --- | --- | --- |\n%s", strings.Join(table, "\n"))
}
