package model_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

// minio is this test binary's MinIO server, started on first use.
var minio testenv.LazyMinIO

func TestMain(m *testing.M) {
	code := m.Run()
	minio.Stop()
	os.Exit(code)
}

// corpusStores returns the local directory dir as a store, and the same
// files uploaded to MinIO under a prefix of their own.
func corpusStores(t *testing.T, dir string) map[string]store.Store {
	t.Helper()
	l, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s3 := minio.Store(t, "adaptq-model-test", t.Name()+"/"+filepath.Base(dir))
	if err := testenv.UploadDir(ctx, dir, s3, ""); err != nil {
		t.Fatal(err)
	}
	return map[string]store.Store{"local": l, "s3": s3}
}

const (
	f32Dir  = "../testdata/models/stories260k"
	bf16Dir = "../testdata/models/stories260k-bf16-sharded"
)

// TestFixtures reads both fixture copies from both stores: same tensors,
// 260,032 parameters, and BF16 values equal to the F32 values rounded.
func TestFixtures(t *testing.T) {
	ctx := context.Background()
	f32s := corpusStores(t, f32Dir)
	bf16s := corpusStores(t, bf16Dir)
	for kind := range f32s {
		t.Run(kind, func(t *testing.T) {
			a, err := model.Open(ctx, f32s[kind])
			if err != nil {
				t.Fatal(err)
			}
			b, err := model.Open(ctx, bf16s[kind])
			if err != nil {
				t.Fatal(err)
			}
			if a.NumParams() != 260032 || b.NumParams() != 260032 {
				t.Fatalf("params %d and %d, want 260032", a.NumParams(), b.NumParams())
			}
			if len(b.Files) != 2 || len(a.Files) != 1 {
				t.Fatalf("files: %d and %d", len(a.Files), len(b.Files))
			}
			cfg := a.Config
			if cfg.HiddenSize != 64 || cfg.IntermediateSize != 172 || cfg.NumLayers != 5 || cfg.NumHeads != 8 ||
				cfg.NumKVHeads != 4 || cfg.HeadDim != 8 || cfg.VocabSize != 512 || !cfg.TieWordEmbeddings || cfg.RMSNormEps != 1e-5 {
				t.Fatalf("config %+v", cfg)
			}
			if len(a.Tensors) != len(b.Tensors) {
				t.Fatalf("tensor counts %d and %d", len(a.Tensors), len(b.Tensors))
			}
			for _, ta := range a.Tensors {
				tb, ok := b.Tensor(ta.Name)
				if !ok || !slices.Equal(ta.Shape, tb.Shape) || tb.DType != safetensors.BF16 || ta.DType != safetensors.F32 {
					t.Fatalf("tensor %s: %+v vs %+v", ta.Name, ta, tb)
				}
				if ta.Role == model.RoleUnknown {
					t.Fatalf("tensor %s has no role", ta.Name)
				}
				va, err := a.ReadFloat32(ctx, ta.Name)
				if err != nil {
					t.Fatal(err)
				}
				vb, err := b.ReadFloat32(ctx, ta.Name)
				if err != nil {
					t.Fatal(err)
				}
				for i := range va {
					if r := safetensors.BF16ToFloat(safetensors.FloatToBF16(va[i])); r != vb[i] {
						t.Fatalf("%s[%d]: bf16(%g)=%g, file has %g", ta.Name, i, va[i], r, vb[i])
					}
				}
			}
			lm, ok := a.Lookup(model.RoleLMHead, -1, false)
			if !ok || lm.Name != "model.embed_tokens.weight" {
				t.Fatalf("tied lm_head lookup: %v %v", lm, ok)
			}
		})
	}
}

// TestStreamRowsBlocks: streaming in small blocks gives the same values as
// one read, for every block size.
func TestStreamRowsBlocks(t *testing.T) {
	ctx := context.Background()
	s, _ := store.NewLocal(bf16Dir)
	ck, err := model.Open(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	name := "model.layers.2.mlp.down_proj.weight"
	want, err := ck.ReadFloat32(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, blk := range []int64{1, 344, 345, 1000, 1 << 20} {
		got := make([]float32, 0, len(want))
		next := int64(0)
		err := ck.StreamRows(ctx, name, blk, func(first int64, rows []float32) error {
			if first != next {
				t.Fatalf("block starts at row %d, want %d", first, next)
			}
			next += int64(len(rows)) / 172
			got = append(got, rows...)
			return nil
		})
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("block %d: %v", blk, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		role  model.Role
		layer int
		bias  bool
	}{
		{"model.embed_tokens.weight", model.RoleEmbed, -1, false},
		{"model.layers.0.input_layernorm.weight", model.RoleAttnNorm, 0, false},
		{"model.layers.31.self_attn.q_proj.weight", model.RoleQ, 31, false},
		{"model.layers.2.self_attn.k_proj.bias", model.RoleK, 2, true},
		{"model.layers.2.self_attn.v_proj.weight", model.RoleV, 2, false},
		{"model.layers.2.self_attn.o_proj.weight", model.RoleO, 2, false},
		{"model.layers.2.self_attn.q_norm.weight", model.RoleQNorm, 2, false},
		{"model.layers.2.self_attn.k_norm.weight", model.RoleKNorm, 2, false},
		{"model.layers.7.post_attention_layernorm.weight", model.RoleMLPNorm, 7, false},
		{"model.layers.7.mlp.gate_proj.weight", model.RoleGate, 7, false},
		{"model.layers.7.mlp.up_proj.weight", model.RoleUp, 7, false},
		{"model.layers.7.mlp.down_proj.weight", model.RoleDown, 7, false},
		{"model.norm.weight", model.RoleFinalNorm, -1, false},
		{"lm_head.weight", model.RoleLMHead, -1, false},
		{"model.layers.07.mlp.up_proj.weight", model.RoleUnknown, -1, false},
		{"model.layers.1.self_attn.rotary_emb.inv_freq", model.RoleUnknown, -1, false},
		{"model.layers.1.mlp.experts.weight", model.RoleUnknown, 1, false},
	} {
		r, l, b := model.Classify(tc.name)
		if r != tc.role || l != tc.layer || b != tc.bias {
			t.Errorf("Classify(%q) = %v %d %v, want %v %d %v", tc.name, r, l, b, tc.role, tc.layer, tc.bias)
		}
		if r != model.RoleUnknown && model.TensorName(r, l, b) != tc.name {
			t.Errorf("TensorName(%v,%d,%v) = %q", r, l, b, model.TensorName(r, l, b))
		}
	}
}

func TestParseConfigFamilies(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		check      func(c *model.Config) bool
	}{
		{"qwen2 defaults", `{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"tie_word_embeddings":true}`,
			func(c *model.Config) bool {
				return c.AttentionBias && c.HeadDim == 64 && c.RopeTheta == 1e6 && c.KVDim() == 128
			}},
		{"qwen3 head_dim", `{"model_type":"qwen3","hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,"attention_bias":false}`,
			func(c *model.Config) bool {
				return c.QKNorm && c.HeadDim == 128 && c.QDim() == 2048 && !c.AttentionBias
			}},
		{"llama3 rope", `{"model_type":"llama","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"rope_theta":500000,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"bos_token_id":128000,"eos_token_id":[128001,128008,128009]}`,
			func(c *model.Config) bool {
				return c.RopeScaling != nil && c.RopeScaling.Type == "llama3" && c.RopeScaling.Factor == 8 && c.RopeTheta == 500000 && len(c.EOSTokenID) == 3 && c.BOSTokenID[0] == 128000
			}},
		{"mistral", `{"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":32000,"sliding_window":4096,"dtype":"bfloat16"}`,
			func(c *model.Config) bool { return c.TorchDType == "bfloat16" && c.RMSNormEps == 1e-6 }},
	} {
		c, err := model.ParseConfig([]byte(tc.json), "config.json")
		if err != nil || !tc.check(c) {
			t.Errorf("%s: %+v %v", tc.name, c, err)
		}
	}
	for _, bad := range []string{
		`{"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":3,"vocab_size":512}`,
		`{"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":7,"vocab_size":512}`,
		`{"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"vocab_size":512,"rope_scaling":{"rope_type":"llama3","factor":8}}`,
		`{"model_type":"llama","hidden_size":64,"intermediate_size":172,"num_hidden_layers":5,"num_attention_heads":8,"vocab_size":512,"rms_norm_eps":0}`,
		`{"hidden_size":64}`,
		`[]`,
	} {
		if _, err := model.ParseConfig([]byte(bad), "config.json"); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
