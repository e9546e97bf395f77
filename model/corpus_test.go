package model_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/bad from the generator")

const corpusDir = "../testdata/bad"

// tinyConfig is a valid Llama config small enough for hand-made files.
func tinyConfig() map[string]any {
	return map[string]any{
		"model_type": "llama", "architectures": []string{"LlamaForCausalLM"},
		"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
		"num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
		"torch_dtype": "float32",
	}
}

func tinySpecs() []safetensors.TensorSpec {
	cfg := &model.Config{HiddenSize: 8, IntermediateSize: 16, NumLayers: 1, NumHeads: 2, NumKVHeads: 1, HeadDim: 4, VocabSize: 16, TieWordEmbeddings: true}
	var specs []safetensors.TensorSpec
	for _, ref := range cfg.ExpectedTensors() {
		specs = append(specs, safetensors.TensorSpec{Name: ref.Name(), DType: safetensors.F32, Shape: cfg.ExpectedShape(ref.Role, ref.Bias)})
	}
	return specs
}

// tinyFile returns a valid safetensors file for tinySpecs with values v(i).
func tinyFile(t *testing.T, specs []safetensors.TensorSpec, v func(name string, i int) float32) []byte {
	var buf bytes.Buffer
	w, err := safetensors.NewWriter(&buf, specs, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		vals := make([]float32, s.Bytes()/4)
		for i := range vals {
			vals[i] = v(s.Name, i)
		}
		if err := w.WriteTensor(s.Name, vals); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func smooth(_ string, i int) float32 { return float32(math.Sin(float64(i))) * 0.1 }

// withHeader replaces a file's JSON header, keeping its data.
func withHeader(file []byte, header string) []byte {
	n := binary.LittleEndian.Uint64(file)
	data := file[8+n:]
	for len(header)%8 != 0 {
		header += " "
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func headerOf(file []byte) map[string]any {
	n := binary.LittleEndian.Uint64(file)
	var h map[string]any
	json.Unmarshal(file[8:8+n], &h)
	return h
}

func marshal(v any) []byte { b, _ := json.MarshalIndent(v, "", "  "); return b }

// badCase is one broken checkpoint and the words its error must contain.
type badCase struct {
	name  string
	files map[string][]byte
	want  []string
}

func badCorpus(t *testing.T) []badCase {
	cfg := marshal(tinyConfig())
	good := tinyFile(t, tinySpecs(), smooth)
	hdr := headerOf(good)
	editHeader := func(f func(h map[string]any)) []byte {
		h := headerOf(good)
		f(h)
		return withHeader(good, string(marshal(h)))
	}
	entry := func(h map[string]any, name string) map[string]any { return h[name].(map[string]any) }
	_ = hdr
	cfgWith := func(f func(c map[string]any)) []byte { c := tinyConfig(); f(c); return marshal(c) }
	const q = "model.layers.0.self_attn.q_proj.weight"
	const k = "model.layers.0.self_attn.k_proj.weight"
	index := func(m map[string]string) []byte {
		return marshal(map[string]any{"metadata": map[string]any{}, "weight_map": m})
	}
	allIn := func(file string) map[string]string {
		m := map[string]string{}
		for _, s := range tinySpecs() {
			m[s.Name] = file
		}
		return m
	}
	huge := binary.LittleEndian.AppendUint64(nil, 200<<20)
	huge = append(huge, []byte("{}      ")...)
	beyond := binary.LittleEndian.AppendUint64(nil, 4096)
	beyond = append(beyond, []byte(`{"a":1}`)...)
	lastName := tinySpecs()[len(tinySpecs())-1].Name
	return []badCase{
		{"truncated-data", map[string][]byte{"config.json": cfg, "model.safetensors": good[:len(good)-16]}, []string{"model.safetensors", lastName, "beyond"}},
		{"header-beyond-file", map[string][]byte{"config.json": cfg, "model.safetensors": beyond}, []string{"model.safetensors", "header length 4096"}},
		{"header-over-100mb", map[string][]byte{"config.json": cfg, "model.safetensors": huge}, []string{"model.safetensors", "over the"}},
		{"header-not-json", map[string][]byte{"config.json": cfg, "model.safetensors": withHeader(good, "{not json at all")}, []string{"model.safetensors", "not JSON"}},
		{"offsets-out-of-bounds", map[string][]byte{"config.json": cfg, "model.safetensors": editHeader(func(h map[string]any) {
			entry(h, q)["data_offsets"] = []int64{0, 1 << 30}
		})}, []string{"model.safetensors", q, "data_offsets"}},
		{"offsets-reversed", map[string][]byte{"config.json": cfg, "model.safetensors": editHeader(func(h map[string]any) {
			entry(h, q)["data_offsets"] = []int64{256, 0}
		})}, []string{"model.safetensors", q, "increasing"}},
		{"offsets-overlap", map[string][]byte{"config.json": cfg, "model.safetensors": editHeader(func(h map[string]any) {
			entry(h, k)["data_offsets"] = entry(h, q)["data_offsets"].([]any)[:2]
			off := entry(h, q)["data_offsets"].([]any)
			entry(h, k)["data_offsets"] = []any{off[0], off[0].(float64) + 128}
		})}, []string{"model.safetensors", "overlap", "self_attn"}},
		{"shape-size-mismatch", map[string][]byte{"config.json": cfg, "model.safetensors": editHeader(func(h map[string]any) {
			entry(h, q)["shape"] = []int{8, 9}
		})}, []string{"model.safetensors", q, "needs"}},
		{"unknown-dtype", map[string][]byte{"config.json": cfg, "model.safetensors": editHeader(func(h map[string]any) {
			entry(h, q)["dtype"] = "F19"
		})}, []string{"model.safetensors", q, "F19"}},
		{"unsupported-dtype", map[string][]byte{"config.json": cfg, "model.safetensors": editHeader(func(h map[string]any) {
			entry(h, q)["dtype"] = "I32"
		})}, []string{"model.safetensors", q, "I32"}},
		{"shape-config-mismatch", map[string][]byte{"config.json": cfgWith(func(c map[string]any) { c["intermediate_size"] = 32 }), "model.safetensors": good}, []string{"model.safetensors", "mlp", "config.json implies"}},
		{"missing-tensor", map[string][]byte{"config.json": cfgWith(func(c map[string]any) { c["tie_word_embeddings"] = false }), "model.safetensors": good}, []string{"lm_head.weight", "missing"}},
		{"index-missing-file", map[string][]byte{"config.json": cfg, "model.safetensors.index.json": index(allIn("model-00001-of-00001.safetensors"))}, []string{"model.safetensors.index.json", "model-00001-of-00001.safetensors", "missing"}},
		{"index-path-escape", map[string][]byte{"config.json": cfg, "model.safetensors.index.json": index(allIn("../x.safetensors"))}, []string{"model.safetensors.index.json", "../x.safetensors", "leaves"}},
		{"config-missing-field", map[string][]byte{"config.json": cfgWith(func(c map[string]any) { delete(c, "hidden_size") }), "model.safetensors": good}, []string{"config.json", "hidden_size"}},
		{"config-zero-size", map[string][]byte{"config.json": cfgWith(func(c map[string]any) { c["num_hidden_layers"] = 0 }), "model.safetensors": good}, []string{"config.json", "num_hidden_layers", "positive"}},
		{"config-negative-size", map[string][]byte{"config.json": cfgWith(func(c map[string]any) { c["vocab_size"] = -5 }), "model.safetensors": good}, []string{"config.json", "vocab_size", "positive"}},
		{"config-unknown-architecture", map[string][]byte{"config.json": cfgWith(func(c map[string]any) { c["model_type"] = "gpt_neox" }), "model.safetensors": good}, []string{"config.json", "gpt_neox"}},
		{"config-not-json", map[string][]byte{"config.json": []byte("model_type: llama\n"), "model.safetensors": good}, []string{"config.json", "not a JSON"}},
	}
}

// TestBadCorpus opens every broken checkpoint of testdata/bad and checks that
// the error names the file and tensor, without a panic. The committed corpus
// must equal what the generator makes (go test ./model -run BadCorpus
// -update-corpus rewrites it).
func TestBadCorpus(t *testing.T) {
	cases := badCorpus(t)
	if *updateCorpus {
		os.RemoveAll(corpusDir)
		for _, c := range cases {
			for name, b := range c.files {
				p := filepath.Join(corpusDir, c.name, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			os.WriteFile(filepath.Join(corpusDir, c.name, "want-error.txt"), []byte(strings.Join(c.want, "\n")+"\n"), 0o644)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for name, b := range c.files {
				got, err := os.ReadFile(filepath.Join(corpusDir, c.name, name))
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("testdata/bad/%s/%s differs from the generator (run with -update-corpus): %v", c.name, name, err)
				}
			}
			for kind, s := range corpusStores(t, filepath.Join(corpusDir, c.name)) {
				_, err := model.Open(context.Background(), s)
				if err == nil {
					t.Fatalf("%s: opened a broken checkpoint", kind)
				}
				if !errors.Is(err, model.ErrInvalid) {
					t.Errorf("%s: error is not model.ErrInvalid: %v", kind, err)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q does not mention %q", kind, err, w)
					}
				}
			}
		})
	}
}

// faultyStore fails every read with a transport error.
type faultyStore struct{ store.Store }

func (faultyStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("get %s: connection refused", key)
}

// TestStoreFaultIsNotInvalid: a store fault is not reported as bad input,
// so the pipeline retries it.
func TestStoreFaultIsNotInvalid(t *testing.T) {
	l, _ := store.NewLocal("../testdata/models/stories260k")
	_, err := model.Open(context.Background(), faultyStore{l})
	if err == nil || errors.Is(err, model.ErrInvalid) {
		t.Fatalf("store fault classified as invalid input: %v", err)
	}
}

// TestNaNReported: NaN and Inf weights open fine and are counted.
func TestNaNReported(t *testing.T) {
	const q = "model.layers.0.self_attn.q_proj.weight"
	f := tinyFile(t, tinySpecs(), func(name string, i int) float32 {
		if name == q && i%10 == 3 {
			return float32(math.NaN())
		}
		if name == q && i == 5 {
			return float32(math.Inf(-1))
		}
		return smooth(name, i)
	})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), marshal(tinyConfig()), 0o644)
	os.WriteFile(filepath.Join(dir, "model.safetensors"), f, 0o644)
	s, _ := store.NewLocal(dir)
	ck, err := model.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ck.ScanStats(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if st.NaN != 7 || st.Inf != 1 {
		t.Fatalf("NaN %d Inf %d, want 7 and 1", st.NaN, st.Inf)
	}
}
