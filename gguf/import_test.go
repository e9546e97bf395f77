package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/tokenizer"
)

// tinyModel returns a small, complete Llama-family GGUF file (one layer,
// hidden 8, F32 tensors of zeros) with a SentencePiece-style or a GPT-2
// byte-level vocabulary: a seed for the import fuzz target.
func tinyModel(tb testing.TB, arch string, spm bool) []byte {
	tb.Helper()
	var md Metadata
	var tokens []string
	if spm {
		tokens = []string{"<unk>", "<s>", "</s>", "<0x0A>", "▁", "a", "b", "▁a", "ab", "▁ab", "<tool>"}
		md = Metadata{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", tokens},
			{"tokenizer.ggml.scores", []float32{-9, -9, -9, -9, -9, -9, -9, -1, -2, -3, -9}},
			{"tokenizer.ggml.token_type", []int32{2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 4}},
			{"tokenizer.ggml.bos_token_id", uint32(1)}, {"tokenizer.ggml.eos_token_id", uint32(2)},
			{"tokenizer.ggml.unknown_token_id", uint32(0)}, {"tokenizer.ggml.add_space_prefix", true}}
	} else {
		tokens = []string{"Ġ", "a", "b", "Ċ", "1", "Ġa", "ab", "Ġab", "<|end|>", "<tool>", "[PAD10]"}
		md = Metadata{{"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.pre", "qwen2"}, {"tokenizer.ggml.tokens", tokens},
			{"tokenizer.ggml.token_type", []int32{1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 5}},
			{"tokenizer.ggml.merges", []string{"Ġ a", "a b", "Ġa b"}},
			{"tokenizer.ggml.eos_token_id", uint32(8)}, {"tokenizer.ggml.padding_token_id", uint32(8)},
			{"tokenizer.ggml.add_bos_token", false}, {"tokenizer.chat_template", "{{ messages }}"}}
	}
	p := arch + "."
	md = append(Metadata{{"general.architecture", arch},
		{p + "context_length", uint32(64)}, {p + "embedding_length", uint32(8)}, {p + "block_count", uint32(1)},
		{p + "feed_forward_length", uint32(16)}, {p + "attention.head_count", uint32(2)},
		{p + "attention.head_count_kv", uint32(1)}, {p + "rope.freq_base", float32(10000)},
		{p + "attention.layer_norm_rms_epsilon", float32(1e-5)}}, md...)
	cfg := &model.Config{ModelType: arch, HiddenSize: 8, IntermediateSize: 16, NumLayers: 1, NumHeads: 2, NumKVHeads: 1,
		HeadDim: 4, VocabSize: len(tokens), TieWordEmbeddings: true, AttentionBias: arch == "qwen2", QKNorm: arch == "qwen3"}
	specs, err := LlamaTensors(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	plan := &Plan{Metadata: md}
	for _, s := range specs {
		plan.Tensors = append(plan.Tensors, mustInfo(tb, s.Name, TypeF32, s.Dims...))
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, plan)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ti := range w.Tensors() {
		if err := w.WriteTensor(ti.Name, make([]byte, ti.Size)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// checkImportRoundTrip is the property of the import path: whatever a
// parsed file's metadata, a config LlamaConfig accepts is written by
// Config.Encode and read back identically by model.ParseConfig, and
// tokenizer files TokenizerFiles accepts load in package tokenizer and,
// written back by TokenizerMetadata, give the same tokens (padding
// aside), token types and merges.
func checkImportRoundTrip(t *testing.T, data []byte) {
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return
	}
	if cfg, err := LlamaConfig(f, bytes.NewReader(data)); err == nil {
		b, err := cfg.Encode()
		if err != nil {
			t.Fatalf("config accepted but not encoded: %v", err)
		}
		back, err := model.ParseConfig(b, "config.json")
		if err != nil {
			t.Fatalf("config.json does not read back: %v\n%s", err, b)
		}
		cfg.Architectures = back.Architectures
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("config.json reads back as %+v, want %+v", back, cfg)
		}
	}
	tj, tc, err := TokenizerFiles(f.Metadata, 0)
	if err != nil {
		return
	}
	tok, err := tokenizer.Parse(tj)
	if err != nil {
		t.Fatalf("tokenizer.json does not load: %v\n%.2000s", err, tj)
	}
	tok.Encode("ab a\nb 1 <tool>", true)
	v, _ := f.Metadata.Get("tokenizer.ggml.tokens")
	tokens := v.([]string)
	md, err := TokenizerMetadata(tj, TokenizerOptions{Config: tc, VocabSize: len(tokens), BOS: -1, EOS: -1})
	if err != nil {
		t.Fatalf("rebuilt tokenizer files are not exported: %v", err)
	}
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = TokenNormal
	}
	if v, ok := f.Metadata.Get("tokenizer.ggml.token_type"); ok {
		types = v.([]int32)
	}
	gotTokens, _ := md.Get("tokenizer.ggml.tokens")
	gotTypes, _ := md.Get("tokenizer.ggml.token_type")
	for i, tt := range gotTokens.([]string) {
		if types[i] == TokenUnused {
			continue // written back as [PAD<id>]
		}
		if tt != tokens[i] {
			t.Fatalf("token %d is %q after the round trip, was %q", i, tt, tokens[i])
		}
	}
	model, _ := f.Metadata.GetString("tokenizer.ggml.model")
	if model == "gpt2" {
		a, _ := f.Metadata.Get("tokenizer.ggml.merges")
		b, _ := md.Get("tokenizer.ggml.merges")
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("merges %v after the round trip, were %v", b, a)
		}
		for i, tt := range gotTypes.([]int32) {
			if w := types[i]; w != tt && w != TokenUnknown && w != TokenByte {
				t.Fatalf("token %d has type %d after the round trip, was %d", i, tt, w)
			}
		}
	}
}

// TestImportTinyModels: the tiny models of every architecture and both
// vocabulary kinds rebuild config and tokenizer, and round-trip.
func TestImportTinyModels(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		for _, spm := range []bool{true, false} {
			data := tinyModel(t, arch, spm)
			f, err := Read(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := LlamaConfig(f, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s spm=%v: %v", arch, spm, err)
			}
			want := &model.Config{ModelType: arch, HiddenSize: 8, IntermediateSize: 16, NumLayers: 1, NumHeads: 2, NumKVHeads: 1,
				HeadDim: 4, VocabSize: 11, MaxPositionEmbeddings: 64, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
				AttentionBias: arch == "qwen2", QKNorm: arch == "qwen3", EOSTokenID: []int{8}}
			if spm {
				want.BOSTokenID, want.EOSTokenID = []int{1}, []int{2}
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("%s spm=%v: config %+v\nwant %+v", arch, spm, cfg, want)
			}
			checkImportRoundTrip(t, data)
			tj, tc, err := TokenizerFiles(f.Metadata, 64)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := tokenizer.Parse(tj)
			if err != nil {
				t.Fatal(err)
			}
			if spm {
				// "▁ab" is the best-scored merge result; BOS is added.
				if got := tok.Encode("ab", true); !slices.Equal(got, []int{1, 9}) {
					t.Errorf("spm: ab → %v, want [1 9]", got)
				}
			} else {
				if got := tok.Encode(" ab<tool>a", false); !slices.Equal(got, []int{7, 9, 1}) {
					t.Errorf("gpt2: \" ab<tool>a\" → %v, want [7 9 1]", got)
				}
				for _, w := range []string{`"chat_template": "{{ messages }}"`, `"pad_token": "<|end|>"`, `"model_max_length": 64`} {
					if !strings.Contains(string(tc), w) {
						t.Errorf("tokenizer_config.json lacks %s:\n%s", w, tc)
					}
				}
			}
		}
	}
}

// TestLlama3ScalingRoundTrip: the rope_freqs tensor of a Llama 3.1 config
// gives its rope_scaling back.
func TestLlama3ScalingRoundTrip(t *testing.T) {
	cfg := &model.Config{ModelType: "llama", HeadDim: 128, RopeTheta: 500000,
		RopeScaling: &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}
	freqs, _ := RopeFreqs(cfg)
	data := make([]byte, 4*len(freqs))
	for i, v := range freqs {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	plan := &Plan{Tensors: []TensorInfo{mustInfo(t, RopeFreqsName, TypeF32, uint64(len(freqs)))}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor(RopeFreqsName, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := llama3Scaling(f, bytes.NewReader(buf.Bytes()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg.RopeScaling) {
		t.Errorf("rope scaling %+v, want %+v", got, cfg.RopeScaling)
	}
	// Factors that are not Llama 3's are refused.
	binary.LittleEndian.PutUint32(data[4*40:], math.Float32bits(2.5))
	buf.Reset()
	w, _ = NewWriter(&buf, plan)
	_ = w.WriteTensor(RopeFreqsName, data)
	_ = w.Close()
	f, _ = Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if _, err := llama3Scaling(f, bytes.NewReader(buf.Bytes()), cfg); err == nil || !strings.Contains(err.Error(), "rope_freqs.weight") {
		t.Errorf("changed factors: %v", err)
	}
}

// FuzzImportMetadata fuzzes the import path from GGUF bytes to config.json
// and tokenizer.json (see checkImportRoundTrip).
func FuzzImportMetadata(f *testing.F) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		f.Add(tinyModel(f, arch, true))
		f.Add(tinyModel(f, arch, false))
	}
	f.Fuzz(checkImportRoundTrip)
}
