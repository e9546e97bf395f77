package gguf

import (
	"fmt"
	"math"
	"strconv"

	"github.com/ohms-project/adaptq/model"
)

// Architecture is llama.cpp's architecture name for a config's model type:
// "llama" for llama and mistral, "qwen2" and "qwen3" for those (llama.cpp
// runs Qwen with the NeoX rope layout and needs their own names).
func Architecture(cfg *model.Config) (string, error) {
	switch cfg.ModelType {
	case "llama", "mistral":
		return "llama", nil
	case "qwen2", "qwen3":
		return cfg.ModelType, nil
	}
	return "", fmt.Errorf("gguf: model_type %q has no llama.cpp architecture here", cfg.ModelType)
}

// NeedsQKPermute reports whether the query and key rows of the config's
// checkpoint must be reordered with PermuteQK for llama.cpp: true for the
// "llama" architecture, which applies rope to adjacent pairs, false for
// Qwen, whose NeoX rope uses Hugging Face's rotate_half layout as is.
func NeedsQKPermute(cfg *model.Config) bool {
	a, err := Architecture(cfg)
	return err == nil && a == "llama"
}

// TensorName is llama.cpp's name of a role's weight or bias in a layer
// ("blk.3.attn_q.weight", "token_embd.weight"); layer is ignored for the
// embedding, final norm and output.
func TensorName(role model.Role, layer int, bias bool) (string, error) {
	suffix := ".weight"
	if bias {
		suffix = ".bias"
	}
	var base string
	switch role {
	case model.RoleEmbed:
		return "token_embd" + suffix, nil
	case model.RoleFinalNorm:
		return "output_norm" + suffix, nil
	case model.RoleLMHead:
		return "output" + suffix, nil
	case model.RoleAttnNorm:
		base = "attn_norm"
	case model.RoleQ:
		base = "attn_q"
	case model.RoleK:
		base = "attn_k"
	case model.RoleV:
		base = "attn_v"
	case model.RoleO:
		base = "attn_output"
	case model.RoleQNorm:
		base = "attn_q_norm"
	case model.RoleKNorm:
		base = "attn_k_norm"
	case model.RoleMLPNorm:
		base = "ffn_norm"
	case model.RoleGate:
		base = "ffn_gate"
	case model.RoleUp:
		base = "ffn_up"
	case model.RoleDown:
		base = "ffn_down"
	default:
		return "", fmt.Errorf("gguf: tensor role %s has no llama.cpp name", role)
	}
	if layer < 0 {
		return "", fmt.Errorf("gguf: tensor role %s needs a layer, got %d", role, layer)
	}
	return "blk." + strconv.Itoa(layer) + "." + base + suffix, nil
}

// QKRowSource maps a row of a query or key projection (or bias) in
// llama.cpp's layout to the Hugging Face row it comes from. Hugging Face
// stores each head's rows in rotate_half order (the first halves of all
// rotation pairs, then the second halves); llama.cpp's "llama" rope rotates
// adjacent rows. Within head h, llama.cpp row 2i+j (i < headDim/2, j ∈ {0,1})
// is Hugging Face row j·headDim/2 + i. This undoes the permutation of
// transformers' convert_llama_weights_to_hf. Since the mapping works head by
// head, it is the same for queries (n_heads heads) and keys (n_kv_heads
// heads): only headDim matters.
func QKRowSource(row, headDim int) int {
	h, k := row/headDim, row%headDim
	return h*headDim + (k%2)*(headDim/2) + k/2
}

// PermuteQK writes to dst the rows of src (rows of rowLen values, whole
// heads of headDim rows) in llama.cpp's order: dst row r is src row
// QKRowSource(r, headDim). Apply it to q_proj and k_proj weights (rowLen =
// hidden size) and biases (rowLen 1) of the "llama" architecture before
// quantizing. dst and src must not overlap.
func PermuteQK(dst, src []float32, rowLen, headDim int) error {
	if rowLen <= 0 || headDim <= 0 || headDim%2 != 0 {
		return fmt.Errorf("gguf: permute q/k: row length %d and head_dim %d must be positive, head_dim even", rowLen, headDim)
	}
	if len(src)%(rowLen*headDim) != 0 || len(dst) != len(src) {
		return fmt.Errorf("gguf: permute q/k: %d values are not whole heads of %d rows of %d (or dst has %d)", len(src), headDim, rowLen, len(dst))
	}
	rows := len(src) / rowLen
	for r := 0; r < rows; r++ {
		s := QKRowSource(r, headDim)
		copy(dst[r*rowLen:(r+1)*rowLen], src[s*rowLen:(s+1)*rowLen])
	}
	return nil
}

// RopeFreqs returns the per-dimension rope frequency factors llama.cpp
// reads from the rope_freqs tensor for Llama 3.1-style "llama3" rope
// scaling (head_dim/2 values: 1 for high frequencies, factor for low ones,
// smoothly interpolated between), computed as transformers does. ok is
// false when the config has no llama3 scaling.
func RopeFreqs(cfg *model.Config) (freqs []float32, ok bool) {
	rs := cfg.RopeScaling
	if rs == nil || rs.Type != "llama3" {
		return nil, false
	}
	dim := cfg.HeadDim
	oldCtx := float64(rs.OriginalMaxPositionEmbeddings)
	lowWavelen := oldCtx / rs.LowFreqFactor
	highWavelen := oldCtx / rs.HighFreqFactor
	freqs = make([]float32, dim/2)
	for i := range freqs {
		// The inverse frequency as torch computes it in float32.
		inv := 1 / math.Pow(cfg.RopeTheta, float64(float32(2*i)/float32(dim)))
		wavelen := 2 * math.Pi / inv
		switch {
		case wavelen < highWavelen:
			freqs[i] = 1
		case wavelen > lowWavelen:
			freqs[i] = float32(rs.Factor)
		default:
			smooth := (oldCtx/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			freqs[i] = float32(1 / ((1-smooth)/rs.Factor + smooth))
		}
	}
	return freqs, true
}

// RopeFreqsName is the name of the rope frequency factor tensor.
const RopeFreqsName = "rope_freqs.weight"

// TensorSpec is one tensor of a Llama-family GGUF export: its GGUF name and
// dimensions and where its values come from.
type TensorSpec struct {
	// Name is the llama.cpp name.
	Name string
	// Source is the Hugging Face tensor name; empty for rope_freqs.weight,
	// whose values come from RopeFreqs.
	Source string
	Role   model.Role
	Layer  int
	Bias   bool
	// Dims are the GGUF dimensions (the Hugging Face shape reversed).
	Dims []uint64
	// PermuteHeadDim is non-zero when the rows must be reordered with
	// PermuteQK(dst, src, Dims[0], PermuteHeadDim) before quantizing.
	PermuteHeadDim int
}

// Is1D reports whether the tensor is a vector (norm weights, biases,
// rope_freqs), which exports keep in F32.
func (s *TensorSpec) Is1D() bool { return len(s.Dims) == 1 }

// LlamaTensors lists the tensors of the GGUF export of a checkpoint with
// config cfg, in model order: the rope_freqs tensor when rope scaling is
// "llama3", the embedding, the layers, the final norm and, unless the
// embeddings are tied, the output projection (llama.cpp uses token_embd
// when output is absent).
func LlamaTensors(cfg *model.Config) ([]TensorSpec, error) {
	if _, err := Architecture(cfg); err != nil {
		return nil, err
	}
	var specs []TensorSpec
	if freqs, ok := RopeFreqs(cfg); ok {
		specs = append(specs, TensorSpec{Name: RopeFreqsName, Layer: -1, Dims: []uint64{uint64(len(freqs))}})
	}
	permute := NeedsQKPermute(cfg)
	for _, ref := range cfg.ExpectedTensors() {
		name, err := TensorName(ref.Role, ref.Layer, ref.Bias)
		if err != nil {
			return nil, err
		}
		shape := cfg.ExpectedShape(ref.Role, ref.Bias)
		dims := make([]uint64, len(shape))
		for i, d := range shape {
			dims[len(shape)-1-i] = uint64(d)
		}
		s := TensorSpec{Name: name, Source: ref.Name(), Role: ref.Role, Layer: ref.Layer, Bias: ref.Bias, Dims: dims}
		if permute && (ref.Role == model.RoleQ || ref.Role == model.RoleK) {
			s.PermuteHeadDim = cfg.HeadDim
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// LlamaOptions are the inputs of LlamaMetadata besides the config.
type LlamaOptions struct {
	// Name is general.name (omitted when empty).
	Name string
	// FileType is general.file_type (llama_ftype: 0 all F32, 1 mostly
	// F16, 15 Q4_K_M, ...), omitted when nil.
	FileType *uint32
	// Tokenizer is tokenizer.json; TokenizerConfig is
	// tokenizer_config.json (optional).
	Tokenizer       []byte
	TokenizerConfig []byte
	// Pre overrides the GPT-2 pre-tokenizer name (see TokenizerOptions).
	Pre string
}

// LlamaMetadata returns the metadata of a Llama-family GGUF file: general.*,
// the architecture's hyperparameters and tokenizer.ggml.*. Rope scaling:
// "llama3" is carried by the rope_freqs tensor (see RopeFreqs; no scaling
// keys, as llama.cpp's converter does), "linear" by rope.scaling.type and
// rope.scaling.factor; other types are errors. A config without
// max_position_embeddings gets context_length 2048.
func LlamaMetadata(cfg *model.Config, opts LlamaOptions) (Metadata, error) {
	arch, err := Architecture(cfg)
	if err != nil {
		return nil, err
	}
	md := Metadata{{"general.architecture", arch}}
	if opts.Name != "" {
		md = append(md, KV{"general.name", opts.Name})
	}
	if opts.FileType != nil {
		md = append(md, KV{"general.file_type", *opts.FileType})
	}
	md = append(md, KV{"general.quantization_version", uint32(2)})
	ctxLen := cfg.MaxPositionEmbeddings
	if ctxLen <= 0 {
		ctxLen = 2048
	}
	p := arch + "."
	md = append(md,
		KV{p + "context_length", uint32(ctxLen)},
		KV{p + "embedding_length", uint32(cfg.HiddenSize)},
		KV{p + "block_count", uint32(cfg.NumLayers)},
		KV{p + "feed_forward_length", uint32(cfg.IntermediateSize)},
		KV{p + "attention.head_count", uint32(cfg.NumHeads)},
		KV{p + "attention.head_count_kv", uint32(cfg.NumKVHeads)},
		KV{p + "rope.freq_base", float32(cfg.RopeTheta)},
		KV{p + "rope.dimension_count", uint32(cfg.HeadDim)},
		KV{p + "attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)},
		KV{p + "vocab_size", uint32(cfg.VocabSize)},
	)
	if cfg.NumHeads*cfg.HeadDim != cfg.HiddenSize || arch == "qwen3" {
		md = append(md,
			KV{p + "attention.key_length", uint32(cfg.HeadDim)},
			KV{p + "attention.value_length", uint32(cfg.HeadDim)})
	}
	if rs := cfg.RopeScaling; rs != nil {
		switch rs.Type {
		case "llama3":
			// Carried by the rope_freqs tensor.
		case "linear":
			md = append(md, KV{p + "rope.scaling.type", "linear"}, KV{p + "rope.scaling.factor", float32(rs.Factor)})
		default:
			return nil, fmt.Errorf("gguf: rope_scaling type %q is not supported (llama3 and linear are)", rs.Type)
		}
	}
	if len(opts.Tokenizer) == 0 {
		return nil, fmt.Errorf("gguf: no tokenizer.json given for the tokenizer metadata")
	}
	topts := TokenizerOptions{Config: opts.TokenizerConfig, Pre: opts.Pre, VocabSize: cfg.VocabSize, BOS: -1, EOS: -1}
	if len(cfg.BOSTokenID) > 0 {
		topts.BOS = cfg.BOSTokenID[0]
	}
	if len(cfg.EOSTokenID) > 0 {
		topts.EOS = cfg.EOSTokenID[0]
	}
	tmd, err := TokenizerMetadata(opts.Tokenizer, topts)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	return append(md, tmd...), nil
}
