package gguf

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/ohms-project/adaptq/model"
)

// shortFloat is the float64 nearest the shortest decimal that reads back as
// x in float32: 1e-05 for float32(1e-5), not 9.999999747378752e-06. The
// GGUF keeps hyperparameters in float32; Hugging Face configs write the
// decimal the model was trained with, which this recovers.
func shortFloat(x float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	return v
}

// LlamaConfig rebuilds the Hugging Face config of a Llama-family GGUF file
// (architectures llama, qwen2, qwen3), read from r: the inverse of
// LlamaMetadata. It
// reads <arch>.context_length (max_position_embeddings),
// embedding_length, block_count, feed_forward_length, attention.head_count,
// head_count_kv (default: head_count), attention.key_length (default:
// embedding_length / head_count; value_length and rope.dimension_count
// must agree), rope.freq_base (llama.cpp's default 10000 when absent),
// attention.layer_norm_rms_epsilon, rope.scaling.type/factor ("linear")
// or the rope_freqs tensor (Llama 3 scaling, see llama3Scaling), the
// vocabulary size from token_embd.weight (which <arch>.vocab_size and the
// token list must match), tie_word_embeddings when there is no
// output.weight, attention biases when blk.0.attn_q.bias is present and
// bos/eos ids from tokenizer.ggml.*. Floats are recovered as the shortest
// decimal of their float32. TorchDType is left empty. Errors name the key
// or tensor.
func LlamaConfig(f *File, r io.ReaderAt) (*model.Config, error) {
	md := f.Metadata
	arch, err := md.GetString("general.architecture")
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	switch arch {
	case "llama", "qwen2", "qwen3":
	default:
		return nil, fmt.Errorf("gguf: general.architecture %q is not one adaptq imports (llama, qwen2, qwen3)", arch)
	}
	if _, ok := md.Get(arch + ".expert_count"); ok {
		return nil, fmt.Errorf("gguf: metadata key %q: mixture-of-experts models are not supported", arch+".expert_count")
	}
	c := &model.Config{ModelType: arch}
	p := arch + "."
	positive := func(key string) (int, error) {
		v, err := md.GetUint(p + key)
		if err != nil {
			return 0, fmt.Errorf("gguf: %w", err)
		}
		if v == 0 || v > math.MaxInt32 {
			return 0, fmt.Errorf("gguf: metadata key %q is %d, want 1 to %d", p+key, v, math.MaxInt32)
		}
		return int(v), nil
	}
	optional := func(key string, def int) (int, error) {
		if _, ok := md.Get(p + key); !ok {
			return def, nil
		}
		return positive(key)
	}
	for _, r := range []struct {
		key string
		dst *int
	}{
		{"context_length", &c.MaxPositionEmbeddings},
		{"embedding_length", &c.HiddenSize},
		{"block_count", &c.NumLayers},
		{"feed_forward_length", &c.IntermediateSize},
		{"attention.head_count", &c.NumHeads},
	} {
		if *r.dst, err = positive(r.key); err != nil {
			return nil, err
		}
	}
	if c.NumKVHeads, err = optional("attention.head_count_kv", c.NumHeads); err != nil {
		return nil, err
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return nil, fmt.Errorf("gguf: metadata key %q is %d, which does not divide %s (%d)", p+"attention.head_count_kv", c.NumKVHeads, p+"attention.head_count", c.NumHeads)
	}
	if c.HeadDim, err = optional("attention.key_length", c.HiddenSize/c.NumHeads); err != nil {
		return nil, err
	}
	if c.HeadDim == 0 || c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("gguf: head dimension %d (%s / %s, or %s) is not positive and even", c.HeadDim, p+"embedding_length", p+"attention.head_count", p+"attention.key_length")
	}
	for _, key := range []string{"attention.value_length", "rope.dimension_count"} {
		v, err := optional(key, c.HeadDim)
		if err != nil {
			return nil, err
		}
		if v != c.HeadDim {
			return nil, fmt.Errorf("gguf: metadata key %q is %d but the head dimension is %d (partial rope and unequal key/value heads are not supported)", p+key, v, c.HeadDim)
		}
	}
	float := func(key string, def float32, required bool) (float64, error) {
		v, ok := md.Get(p + key)
		if !ok {
			if required {
				return 0, fmt.Errorf("gguf: metadata key %q is missing", p+key)
			}
			return shortFloat(def), nil
		}
		x, ok := v.(float32)
		if !ok {
			return 0, fmt.Errorf("gguf: metadata key %q is %T, want float32", p+key, v)
		}
		if !(x > 0) || math.IsInf(float64(x), 0) {
			return 0, fmt.Errorf("gguf: metadata key %q is %g, want a positive number", p+key, x)
		}
		return shortFloat(x), nil
	}
	if c.RopeTheta, err = float("rope.freq_base", 10000, false); err != nil {
		return nil, err
	}
	if c.RMSNormEps, err = float("attention.layer_norm_rms_epsilon", 0, true); err != nil {
		return nil, err
	}
	if c.RopeScaling, err = ropeScaling(f, r, c, p); err != nil {
		return nil, err
	}

	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		return nil, fmt.Errorf("gguf: tensor %q is missing", "token_embd.weight")
	}
	if len(emb.Dims) != 2 || emb.Dims[0] != uint64(c.HiddenSize) || emb.Dims[1] == 0 || emb.Dims[1] > math.MaxInt32 {
		return nil, fmt.Errorf("gguf: tensor %q has dimensions %v, want [%d n_vocab]", emb.Name, emb.Dims, c.HiddenSize)
	}
	c.VocabSize = int(emb.Dims[1])
	if v, ok := md.Get(p + "vocab_size"); ok {
		n, err := md.GetUint(p + "vocab_size")
		if err != nil || n != uint64(c.VocabSize) {
			return nil, fmt.Errorf("gguf: metadata key %q is %v but tensor %q has %d rows", p+"vocab_size", v, emb.Name, c.VocabSize)
		}
	}
	if v, ok := md.Get("tokenizer.ggml.tokens"); ok {
		toks, isList := v.([]string)
		if !isList || len(toks) != c.VocabSize {
			n := -1
			if isList {
				n = len(toks)
			}
			return nil, fmt.Errorf("gguf: metadata key %q holds %d tokens (%T) but tensor %q has %d rows", "tokenizer.ggml.tokens", n, v, emb.Name, c.VocabSize)
		}
	}
	_, hasOutput := f.Tensor("output.weight")
	c.TieWordEmbeddings = !hasOutput
	switch arch {
	case "qwen2":
		c.AttentionBias = true
	case "qwen3":
		c.QKNorm = true
	}
	if _, ok := f.Tensor("blk.0.attn_q.bias"); ok {
		c.AttentionBias = true
	}
	for _, key := range []string{"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"} {
		if _, ok := md.Get(key); !ok {
			continue
		}
		id, err := md.GetUint(key)
		if err != nil {
			return nil, fmt.Errorf("gguf: %w", err)
		}
		if id >= uint64(c.VocabSize) {
			return nil, fmt.Errorf("gguf: metadata key %q is %d, outside the vocabulary of %d tokens", key, id, c.VocabSize)
		}
		if key == "tokenizer.ggml.bos_token_id" {
			c.BOSTokenID = []int{int(id)}
		} else {
			c.EOSTokenID = []int{int(id)}
		}
	}
	return c, nil
}

// ropeScaling reads the rope scaling of a GGUF file: rope.scaling.type
// "linear" with rope.scaling.factor (or the older rope.scale_linear), or a
// rope_freqs tensor (Llama 3); "none" or no key is no scaling, and other
// types (yarn, longrope) are errors.
func ropeScaling(f *File, r io.ReaderAt, c *model.Config, p string) (*model.RopeScaling, error) {
	md := f.Metadata
	typ := ""
	if v, ok := md.Get(p + "rope.scaling.type"); ok {
		s, isStr := v.(string)
		if !isStr {
			return nil, fmt.Errorf("gguf: metadata key %q is %T, want string", p+"rope.scaling.type", v)
		}
		typ = s
	}
	factor := func(key string) (float64, error) {
		v, ok := md.Get(p + key)
		if !ok {
			return 0, fmt.Errorf("gguf: metadata key %q is missing (rope scaling %q needs it)", p+key, typ)
		}
		x, isF := v.(float32)
		if !isF || !(x > 0) || math.IsInf(float64(x), 0) {
			return 0, fmt.Errorf("gguf: metadata key %q is %v (%T), want a positive float32", p+key, v, v)
		}
		return shortFloat(x), nil
	}
	_, hasFreqs := f.Tensor(RopeFreqsName)
	switch {
	case typ == "linear":
		fac, err := factor("rope.scaling.factor")
		if err != nil {
			return nil, err
		}
		return &model.RopeScaling{Type: "linear", Factor: fac}, nil
	case typ == "" || typ == "none":
		if _, ok := md.Get(p + "rope.scale_linear"); ok {
			typ = "linear"
			fac, err := factor("rope.scale_linear")
			if err != nil {
				return nil, err
			}
			if fac != 1 {
				return &model.RopeScaling{Type: "linear", Factor: fac}, nil
			}
		}
		if hasFreqs {
			return llama3Scaling(f, r, c)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("gguf: metadata key %q is %q; adaptq reads linear and Llama 3 (rope_freqs) rope scaling only", p+"rope.scaling.type", typ)
}

// llama3Scaling recovers Llama 3.1-style rope scaling from the rope_freqs
// tensor (head_dim/2 F32 factors, see RopeFreqs), read from r. The factor
// is the largest value; with low_freq_factor 1, as every Llama 3.x release
// has it, the interpolated factors between the two wavelength bounds give
// high_freq_factor and original_max_position_embeddings. The result is
// accepted only if RopeFreqs reproduces the tensor to 1e-6 relative.
func llama3Scaling(f *File, r io.ReaderAt, c *model.Config) (*model.RopeScaling, error) {
	t, _ := f.Tensor(RopeFreqsName)
	if t.Type != TypeF32 || len(t.Dims) != 1 || t.Dims[0] != uint64(c.HeadDim/2) {
		return nil, fmt.Errorf("gguf: tensor %q is %s %v, want F32 [%d]", t.Name, TypeName(t.Type), t.Dims, c.HeadDim/2)
	}
	b, err := f.ReadTensor(r, t.Name)
	if err != nil {
		return nil, err
	}
	freqs := make([]float64, len(b)/4)
	for i := range freqs {
		freqs[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	fail := fmt.Errorf("gguf: tensor %q: its factors are not Llama 3 rope scaling with low_freq_factor 1", t.Name)
	factor := slices.Max(freqs)
	if !(factor > 1) || math.IsInf(factor, 0) || slices.Min(freqs) != 1 {
		return nil, fail
	}
	// Between the bounds, factor f_i gives smooth_i = (1/f_i − 1/factor) /
	// (1 − 1/factor), which is linear in the inverse frequency inv_i:
	// smooth = A·inv + B with A = old_ctx / (2π (high − low)) and
	// B = −low / (high − low).
	var xs, ys []float64
	for i, v := range freqs {
		if v > 1 && v < factor {
			inv := 1 / math.Pow(c.RopeTheta, float64(float32(2*i)/float32(c.HeadDim)))
			xs = append(xs, inv)
			ys = append(ys, (1/v-1/factor)/(1-1/factor))
		}
	}
	rs := &model.RopeScaling{Type: "llama3", Factor: shortFloat(float32(factor)), LowFreqFactor: 1}
	if len(xs) >= 2 {
		n := len(xs) - 1
		a := (ys[n] - ys[0]) / (xs[n] - xs[0])
		bb := ys[0] - a*xs[0]
		if !(bb < 0) {
			return nil, fail
		}
		high := 1 - 1/bb
		rs.HighFreqFactor = shortFloat(float32(high))
		rs.OriginalMaxPositionEmbeddings = int(math.Round(a * 2 * math.Pi * (high - 1)))
	} else {
		// Too few interpolated values to solve for the bounds: Llama 3.1's.
		rs.HighFreqFactor, rs.OriginalMaxPositionEmbeddings = 4, 8192
	}
	try := *c
	try.RopeScaling = rs
	got, ok := RopeFreqs(&try)
	if !ok || len(got) != len(freqs) {
		return nil, fail
	}
	for i, v := range got {
		if math.Abs(float64(v)-freqs[i]) > 1e-6*freqs[i] {
			return nil, fail
		}
	}
	return rs, nil
}
