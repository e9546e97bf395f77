package gguf

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

const fixtureDir = "../testdata/models/stories260k"

func openFixture(t testing.TB) *model.Checkpoint {
	t.Helper()
	s, err := store.NewLocal(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	ckpt, err := model.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return ckpt
}

func TestTensorName(t *testing.T) {
	tests := []struct {
		role  model.Role
		layer int
		bias  bool
		want  string
	}{
		{model.RoleEmbed, -1, false, "token_embd.weight"},
		{model.RoleAttnNorm, 0, false, "blk.0.attn_norm.weight"},
		{model.RoleQ, 3, false, "blk.3.attn_q.weight"},
		{model.RoleQ, 3, true, "blk.3.attn_q.bias"},
		{model.RoleK, 11, false, "blk.11.attn_k.weight"},
		{model.RoleK, 11, true, "blk.11.attn_k.bias"},
		{model.RoleV, 2, true, "blk.2.attn_v.bias"},
		{model.RoleO, 2, false, "blk.2.attn_output.weight"},
		{model.RoleQNorm, 1, false, "blk.1.attn_q_norm.weight"},
		{model.RoleKNorm, 1, false, "blk.1.attn_k_norm.weight"},
		{model.RoleMLPNorm, 4, false, "blk.4.ffn_norm.weight"},
		{model.RoleGate, 4, false, "blk.4.ffn_gate.weight"},
		{model.RoleUp, 4, false, "blk.4.ffn_up.weight"},
		{model.RoleDown, 4, false, "blk.4.ffn_down.weight"},
		{model.RoleFinalNorm, -1, false, "output_norm.weight"},
		{model.RoleLMHead, -1, false, "output.weight"},
		{model.RoleUnknown, 0, false, ""},
		{model.RoleQ, -1, false, ""},
	}
	for _, tc := range tests {
		got, err := TensorName(tc.role, tc.layer, tc.bias)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("TensorName(%s, %d, %v) = %q, %v; want %q", tc.role, tc.layer, tc.bias, got, err, tc.want)
		}
	}
}

// hfPermute is transformers' convert_llama_weights_to_hf permutation,
// written from its definition: w.view(heads, headDim/2, 2, rowLen)
// .transpose(1, 2).reshape(rows, rowLen), i.e. row (h, i, j) of the
// interleaved layout moves to row (h, j, i).
func hfPermute(w []float32, heads, headDim, rowLen int) []float32 {
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < headDim/2; i++ {
			for j := 0; j < 2; j++ {
				src := h*headDim + i*2 + j
				dst := h*headDim + j*(headDim/2) + i
				copy(out[dst*rowLen:(dst+1)*rowLen], w[src*rowLen:(src+1)*rowLen])
			}
		}
	}
	return out
}

func TestPermuteQKInvertsHF(t *testing.T) {
	tests := []struct{ heads, headDim, rowLen int }{
		{8, 8, 64},  // stories260k queries
		{4, 8, 64},  // stories260k keys: n_kv_heads
		{1, 2, 1},   // smallest head, a bias
		{2, 128, 3}, // Llama-sized heads
		{3, 6, 5},   // head_dim not a power of two
	}
	for _, tc := range tests {
		n := tc.heads * tc.headDim * tc.rowLen
		orig := make([]float32, n)
		for i := range orig {
			orig[i] = float32(i)
		}
		hf := hfPermute(orig, tc.heads, tc.headDim, tc.rowLen)
		got := make([]float32, n)
		if err := PermuteQK(got, hf, tc.rowLen, tc.headDim); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, orig) {
			t.Errorf("heads %d head_dim %d: PermuteQK does not invert the HF permutation", tc.heads, tc.headDim)
		}
	}
	// Row mapping of one head of 8: llama.cpp rows 0..7 come from HF rows
	// 0,4,1,5,2,6,3,7.
	var src []int
	for r := 0; r < 8; r++ {
		src = append(src, QKRowSource(r, 8))
	}
	if want := []int{0, 4, 1, 5, 2, 6, 3, 7}; !reflect.DeepEqual(src, want) {
		t.Errorf("QKRowSource over one head = %v, want %v", src, want)
	}
	for _, bad := range []struct{ n, rowLen, headDim int }{{10, 3, 2}, {8, 1, 3}, {8, 0, 2}, {8, 2, 0}} {
		if err := PermuteQK(make([]float32, bad.n), make([]float32, bad.n), bad.rowLen, bad.headDim); err == nil {
			t.Errorf("PermuteQK(%d values, rowLen %d, headDim %d): no error", bad.n, bad.rowLen, bad.headDim)
		}
	}
}

func TestRopeFreqs(t *testing.T) {
	cfg := &model.Config{HeadDim: 128, RopeTheta: 500000, RopeScaling: &model.RopeScaling{
		Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}
	f, ok := RopeFreqs(cfg)
	if !ok || len(f) != 64 {
		t.Fatalf("RopeFreqs: ok %v, %d values", ok, len(f))
	}
	if f[0] != 1 || f[63] != 8 {
		t.Errorf("first %g, last %g; want 1 and 8", f[0], f[63])
	}
	for i := 1; i < len(f); i++ {
		if f[i] < f[i-1] {
			t.Errorf("factors not monotonic at %d: %g < %g", i, f[i], f[i-1])
		}
	}
	// Wavelength 2π·θ^(2i/d) crosses 8192/4 and 8192/1 between: count the
	// interpolated dimensions.
	mid := 0
	for _, v := range f {
		if v != 1 && v != 8 {
			mid++
		}
	}
	if mid == 0 || mid > 10 {
		t.Errorf("%d interpolated factors", mid)
	}
	if _, ok := RopeFreqs(&model.Config{HeadDim: 8}); ok {
		t.Error("RopeFreqs without scaling: ok")
	}
}

func TestLlamaMetadataFixture(t *testing.T) {
	ckpt := openFixture(t)
	tok, err := os.ReadFile(filepath.Join(fixtureDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := os.ReadFile(filepath.Join(fixtureDir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ft := uint32(0)
	md, err := LlamaMetadata(ckpt.Config, LlamaOptions{Name: "stories260k", FileType: &ft, Tokenizer: tok, TokenizerConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           "stories260k",
		"general.file_type":                      uint32(0),
		"llama.context_length":                   uint32(512),
		"llama.embedding_length":                 uint32(64),
		"llama.block_count":                      uint32(5),
		"llama.feed_forward_length":              uint32(172),
		"llama.attention.head_count":             uint32(8),
		"llama.attention.head_count_kv":          uint32(4),
		"llama.rope.freq_base":                   float32(10000),
		"llama.rope.dimension_count":             uint32(8),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.vocab_size":                       uint32(512),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.bos_token_id":            uint32(1),
		"tokenizer.ggml.eos_token_id":            uint32(2),
		"tokenizer.ggml.unknown_token_id":        uint32(0),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
		"tokenizer.ggml.add_space_prefix":        true,
	}
	for k, v := range want {
		got, ok := md.Get(k)
		if !ok || got != v {
			t.Errorf("%s = %v (%T), want %v (%T)", k, got, got, v, v)
		}
	}
	for _, k := range []string{"llama.attention.key_length", "tokenizer.ggml.merges", "llama.rope.scaling.type"} {
		if _, ok := md.Get(k); ok {
			t.Errorf("unexpected key %s", k)
		}
	}
	tokens, _ := md.Get("tokenizer.ggml.tokens")
	types, _ := md.Get("tokenizer.ggml.token_type")
	scores, _ := md.Get("tokenizer.ggml.scores")
	toks, typs, scs := tokens.([]string), types.([]int32), scores.([]float32)
	if len(toks) != 512 || len(typs) != 512 || len(scs) != 512 {
		t.Fatalf("%d tokens, %d types, %d scores", len(toks), len(typs), len(scs))
	}
	checks := []struct {
		id    int
		text  string
		typ   int32
		score float32
	}{
		{0, "<unk>", TokenUnknown, -166},
		{1, "<s>", TokenControl, -166},
		{2, "</s>", TokenControl, -166},
		{3, "<0x00>", TokenByte, -166},
		{13, "<0x0A>", TokenByte, -166},
		{258, "<0xFF>", TokenByte, -166},
	}
	for _, c := range checks {
		if toks[c.id] != c.text || typs[c.id] != c.typ || scs[c.id] != c.score {
			t.Errorf("token %d = %q type %d score %g; want %q %d %g", c.id, toks[c.id], typs[c.id], scs[c.id], c.text, c.typ, c.score)
		}
	}
	// The first merges ("▁ t", "h e") give the highest scores.
	byText := map[string]int{}
	for i, s := range toks {
		byText[s] = i
	}
	for text, score := range map[string]float32{"▁t": 0, "he": -1, "▁a": -2, "▁the": -6} {
		if got := scs[byText[text]]; got != score {
			t.Errorf("score of %q = %g, want %g", text, got, score)
		}
	}
}

func TestLlamaMetadataConfigs(t *testing.T) {
	tok, err := os.ReadFile(filepath.Join(fixtureDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	base := model.Config{ModelType: "llama", HiddenSize: 64, IntermediateSize: 172, NumLayers: 2, NumHeads: 8, NumKVHeads: 4,
		HeadDim: 8, VocabSize: 520, RMSNormEps: 1e-6, RopeTheta: 10000, BOSTokenID: []int{1}, EOSTokenID: []int{2}}
	tests := []struct {
		name    string
		edit    func(c *model.Config)
		want    map[string]any
		wantErr string
	}{
		{"head_dim differs", func(c *model.Config) { c.HeadDim = 16 }, map[string]any{
			"llama.attention.key_length": uint32(16), "llama.attention.value_length": uint32(16), "llama.rope.dimension_count": uint32(16)}, ""},
		{"linear rope", func(c *model.Config) { c.RopeScaling = &model.RopeScaling{Type: "linear", Factor: 4} }, map[string]any{
			"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(4)}, ""},
		{"llama3 rope", func(c *model.Config) {
			c.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 256}
		}, map[string]any{"llama.rope.freq_base": float32(10000)}, ""},
		{"yarn rope", func(c *model.Config) { c.RopeScaling = &model.RopeScaling{Type: "yarn", Factor: 4} }, nil, `"yarn"`},
		{"no max positions", func(c *model.Config) { c.MaxPositionEmbeddings = 0 }, map[string]any{"llama.context_length": uint32(2048)}, ""},
		{"padded vocab", func(c *model.Config) {}, map[string]any{"llama.vocab_size": uint32(520)}, ""},
		{"small vocab", func(c *model.Config) { c.VocabSize = 100 }, nil, "more than the model's vocab_size 100"},
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }, map[string]any{"general.architecture": "qwen2", "qwen2.block_count": uint32(2)}, ""},
		{"qwen3", func(c *model.Config) { c.ModelType = "qwen3"; c.QKNorm = true }, map[string]any{"general.architecture": "qwen3", "qwen3.attention.key_length": uint32(8)}, ""},
		{"unknown arch", func(c *model.Config) { c.ModelType = "gemma" }, nil, `"gemma"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			md, err := LlamaMetadata(&cfg, LlamaOptions{Tokenizer: tok})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got, ok := md.Get(k); !ok || got != v {
					t.Errorf("%s = %v (%T), want %v (%T)", k, got, got, v, v)
				}
			}
			if toks, _ := md.Get("tokenizer.ggml.tokens"); len(toks.([]string)) != cfg.VocabSize {
				t.Errorf("%d tokens, want %d", len(toks.([]string)), cfg.VocabSize)
			}
		})
	}
}

// gpt2Tokenizer is a tiny byte-level BPE tokenizer.json with the given
// pre-tokenizer regex ("" for a plain ByteLevel pre-tokenizer).
func gpt2Tokenizer(regex string, arrayMerges bool) []byte {
	pre := `{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`
	if regex != "" {
		quoted := strings.ReplaceAll(strings.ReplaceAll(regex, `\`, `\\`), `"`, `\"`)
		pre = `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"` + quoted + `"},"behavior":"Isolated","invert":false},` + pre + `]}`
	}
	merges := `["Ġ t","h e","Ġt he"]`
	if arrayMerges {
		merges = `[["Ġ","t"],["h","e"],["Ġt","he"]]`
	}
	return []byte(`{"version":"1.0","added_tokens":[{"id":7,"content":"<|begin_of_text|>","special":true},{"id":8,"content":"<|end_of_text|>","special":true},{"id":9,"content":"<tool>","special":false}],
"normalizer":null,"pre_tokenizer":` + pre + `,
"post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{}}]},
"decoder":{"type":"ByteLevel"},
"model":{"type":"BPE","byte_fallback":false,"ignore_merges":true,"vocab":{"Ġ":0,"t":1,"h":2,"e":3,"Ġt":4,"he":5,"Ġthe":6},"merges":` + merges + `}}`)
}

func TestTokenizerMetadataGPT2(t *testing.T) {
	tests := []struct {
		name    string
		json    []byte
		opts    TokenizerOptions
		wantPre string
		wantErr string
	}{
		{"llama3", gpt2Tokenizer(llama3Regex, false), TokenizerOptions{BOS: 7, EOS: 8}, "llama-bpe", ""},
		{"qwen2 array merges", gpt2Tokenizer(qwen2Regex, true), TokenizerOptions{BOS: -1, EOS: 8}, "qwen2", ""},
		{"plain byte level", gpt2Tokenizer("", false), TokenizerOptions{BOS: 7, EOS: 8}, "gpt-2", ""},
		{"unknown regex", gpt2Tokenizer(`\s+|\w+`, false), TokenizerOptions{BOS: 7, EOS: 8}, "", "set TokenizerOptions.Pre"},
		{"unknown regex, pre given", gpt2Tokenizer(`\s+|\w+`, false), TokenizerOptions{BOS: 7, EOS: 8, Pre: "deepseek-llm"}, "deepseek-llm", ""},
		{"padded", gpt2Tokenizer(llama3Regex, false), TokenizerOptions{BOS: 7, EOS: 8, VocabSize: 12}, "llama-bpe", ""},
		{"bos outside", gpt2Tokenizer(llama3Regex, false), TokenizerOptions{BOS: 70, EOS: 8}, "", "bos token id 70"},
		{"unigram", []byte(`{"model":{"type":"Unigram","vocab":[]}}`), TokenizerOptions{}, "", `"Unigram"`},
		{"not json", []byte(`{`), TokenizerOptions{}, "", "tokenizer.json"},
		{"config add_bos false", gpt2Tokenizer(llama3Regex, false), TokenizerOptions{BOS: 7, EOS: 8, Config: []byte(`{"add_bos_token": false}`)}, "llama-bpe", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md, err := TokenizerMetadata(tc.json, tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := max(tc.opts.VocabSize, 10)
			wantTokens := []string{"Ġ", "t", "h", "e", "Ġt", "he", "Ġthe", "<|begin_of_text|>", "<|end_of_text|>", "<tool>"}
			wantTypes := []int32{1, 1, 1, 1, 1, 1, 1, TokenControl, TokenControl, TokenUserDefined}
			for i := 10; i < n; i++ {
				wantTokens = append(wantTokens, "[PAD"+string(rune('0'+i-10))+"]")
				wantTypes = append(wantTypes, TokenUnused)
			}
			if tc.opts.VocabSize == 12 {
				wantTokens[10], wantTokens[11] = "[PAD10]", "[PAD11]"
			}
			addBOS := !strings.Contains(tc.name, "add_bos false")
			want := map[string]any{
				"tokenizer.ggml.model":         "gpt2",
				"tokenizer.ggml.pre":           tc.wantPre,
				"tokenizer.ggml.tokens":        wantTokens,
				"tokenizer.ggml.token_type":    wantTypes,
				"tokenizer.ggml.merges":        []string{"Ġ t", "h e", "Ġt he"},
				"tokenizer.ggml.eos_token_id":  uint32(8),
				"tokenizer.ggml.add_bos_token": addBOS,
				"tokenizer.ggml.add_eos_token": false,
			}
			if tc.opts.BOS >= 0 {
				want["tokenizer.ggml.bos_token_id"] = uint32(7)
			}
			for k, v := range want {
				if got, ok := md.Get(k); !ok || !reflect.DeepEqual(got, v) {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			if _, ok := md.Get("tokenizer.ggml.scores"); ok {
				t.Error("gpt2 vocabulary has scores")
			}
		})
	}
}

func TestWriteFloatModelRoundTrip(t *testing.T) {
	ckpt := openFixture(t)
	ctx := context.Background()
	tests := []struct {
		typ   uint32
		ftype uint32
	}{{TypeF32, 0}, {TypeF16, 1}, {TypeBF16, 32}}
	for _, tc := range tests {
		t.Run(TypeName(tc.typ), func(t *testing.T) {
			var buf bytes.Buffer
			n, err := WriteFloatModel(ctx, ckpt, &buf, tc.typ, LlamaOptions{Name: "stories260k"})
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(buf.Len()) {
				t.Fatalf("returned %d, wrote %d", n, buf.Len())
			}
			r := bytes.NewReader(buf.Bytes())
			f, err := Read(r, int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			if ft, _ := f.Metadata.GetUint("general.file_type"); ft != uint64(tc.ftype) {
				t.Errorf("file_type %d, want %d", ft, tc.ftype)
			}
			// 1 embedding + 5 layers × 9 + final norm; tied: no output.
			if len(f.Tensors) != 47 {
				t.Errorf("%d tensors, want 47", len(f.Tensors))
			}
			if _, ok := f.Tensor("output.weight"); ok {
				t.Error("tied model has output.weight")
			}
			specs, err := LlamaTensors(ckpt.Config)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range specs {
				ti, ok := f.Tensor(s.Name)
				if !ok {
					t.Fatalf("no tensor %q", s.Name)
				}
				src, _ := ckpt.Tensor(s.Source)
				if len(ti.Dims) != len(src.Shape) || int64(ti.Dims[0]) != src.Shape[len(src.Shape)-1] {
					t.Errorf("%s: dims %v for HF shape %v", s.Name, ti.Dims, src.Shape)
				}
				wantType := tc.typ
				if len(ti.Dims) == 1 {
					wantType = TypeF32
				}
				if ti.Type != wantType {
					t.Errorf("%s: type %s, want %s", s.Name, TypeName(ti.Type), TypeName(wantType))
				}
				got, err := f.ReadTensor(r, s.Name)
				if err != nil {
					t.Fatal(err)
				}
				hf, err := ckpt.ReadFloat32(ctx, s.Source)
				if err != nil {
					t.Fatal(err)
				}
				// Expected values, with q/k rows taken from their HF row.
				rowLen := int(ti.Dims[0])
				want := make([]float32, len(hf))
				for row := 0; row < len(hf)/rowLen; row++ {
					from := row
					if s.Role == model.RoleQ || s.Role == model.RoleK {
						from = QKRowSource(row, ckpt.Config.HeadDim)
					}
					copy(want[row*rowLen:], hf[from*rowLen:(from+1)*rowLen])
				}
				if !bytes.Equal(got, EncodeFloat(nil, want, ti.Type)) {
					t.Errorf("%s: bytes differ from the checkpoint's", s.Name)
				}
				if ti.Type == TypeF32 && math.Float32frombits(binary.LittleEndian.Uint32(got)) != want[0] {
					t.Errorf("%s: first value differs", s.Name)
				}
			}
		})
	}
}
