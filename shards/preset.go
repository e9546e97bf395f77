package shards

import (
	"fmt"
	"strings"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// Preset is one of llama-quantize's file types (llama_ftype): a base type
// and llama.cpp's rules for the tensors that get another one (the
// embedding and lm_head, attn_v and ffn_down in chosen layers, attn_output
// in the 2- and 3-bit mixtures). A recipe with a preset chooses, tensor by
// tensor, the type llama-quantize chooses for that file type on the Llama
// family (llama, mistral, qwen2, qwen3): Type reproduces
// llama_tensor_get_type_impl of src/llama-quant.cpp in the llama.cpp
// release node-llama-cpp 3.21.1 bundles (dense models; not Falcon, not
// mixtures of experts), and the fallback ladder of package quant
// (quant.FitType) then handles rows the chosen type cannot hold, as
// llama.cpp's tensor_type_fallback does. The tests compare every tensor's
// type with libllama's own llama_model_quantize.
type Preset struct {
	// Name is llama-quantize's name in lower case ("q4_k_m").
	Name string
	// FileType is the llama_ftype, written as general.file_type.
	FileType gguf.FileType
	// Base is the type of every weight the rules leave alone
	// (llama_ftype_get_default_type).
	Base quant.Type
}

// presets are the file types adaptq reproduces. The i-quant mixtures
// (iq4_xs, iq3_s, iq3_m, iq3_xxs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_m,
// iq1_s) join this table, and their rules the switches of Type, when
// package quant has their types.
var presets = []Preset{
	{"f32", 0, quant.F32}, {"f16", 1, quant.F16}, {"bf16", 32, quant.BF16},
	{"q8_0", 7, quant.Q8_0}, {"q6_k", 18, quant.Q6_K},
	{"q5_k_m", 17, quant.Q5_K}, {"q5_k_s", 16, quant.Q5_K},
	{"q4_k_m", 15, quant.Q4_K}, {"q4_k_s", 14, quant.Q4_K},
	{"q3_k_l", 13, quant.Q3_K}, {"q3_k_m", 12, quant.Q3_K}, {"q3_k_s", 11, quant.Q3_K},
	{"q2_k", 10, quant.Q2_K},
	{"q5_1", 9, quant.Q5_1}, {"q5_0", 8, quant.Q5_0}, {"q4_1", 3, quant.Q4_1}, {"q4_0", 2, quant.Q4_0},
	{"tq1_0", 36, quant.TQ1_0}, {"tq2_0", 37, quant.TQ2_0},
}

// Presets lists the supported presets.
func Presets() []Preset { return append([]Preset(nil), presets...) }

// LookupPreset finds a preset by llama-quantize's name, ignoring case and
// accepting its aliases ("q4_k" is q4_k_m, as in llama-quantize).
func LookupPreset(name string) (Preset, error) {
	ft, err := gguf.ParseFileType(name)
	if err != nil {
		return Preset{}, err
	}
	for _, p := range presets {
		if p.FileType == ft {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("llama.cpp's preset %s is not supported here yet (its types are missing)", ft)
}

// Slot is one tensor as a recipe's type choice sees it.
type Slot struct {
	Role model.Role
	// Layer is the decoder layer, -1 for the embedding and the head.
	Layer int
	Bias  bool
	// Cols is the row length: the last dimension of the Hugging Face
	// shape, ne[0] in GGUF.
	Cols int
	// Tied says that the embedding also serves as lm_head: the GGUF has no
	// output.weight (a tied model that is not rotated).
	Tied bool
}

// presetModel is what llama.cpp's rules know about the model.
type presetModel struct {
	layers int
	gqa    int  // attention heads per key/value head
	is70B  bool // llama.cpp's LLM_TYPE_70B
	// imatrix says an importance matrix is given.
	imatrix bool
}

func presetModelOf(cfg *model.Config, imatrix bool) presetModel {
	m := presetModel{layers: cfg.NumLayers, imatrix: imatrix}
	if cfg.NumKVHeads > 0 {
		m.gqa = cfg.NumHeads / cfg.NumKVHeads
	}
	// llama.cpp's model type (load_arch_hparams of each architecture):
	// only the 70B type changes a rule of the dense presets.
	switch arch, _ := gguf.Architecture(cfg); arch {
	case "llama":
		m.is70B = cfg.NumLayers == 80 && cfg.NumHeads != cfg.NumKVHeads
	case "qwen2":
		m.is70B = cfg.NumLayers == 80
	}
	return m
}

// useMoreBits is llama.cpp's choice of the layers that get more bits in
// the _M mixtures: the first and last eighth and every third layer between.
func useMoreBits(layer, layers int) bool {
	return layer < layers/8 || layer >= 7*layers/8 || (layer-layers/8)%3 == 2
}

// quantized reports whether t is a block type (llama.cpp applies its rules
// and fallbacks only to those).
func quantized(t quant.Type) bool { return t.BlockSize() > 1 }

// Type is the type llama-quantize chooses for the tensor under this preset
// before the fallback for rows that do not fit (quant.FitType); imatrix
// says an importance matrix is given. RMSNorm weights and biases, which
// llama.cpp never quantizes, are F32 (as in every file adaptq writes).
func (p Preset) Type(cfg *model.Config, s Slot, imatrix bool) quant.Type {
	if s.Bias || s.Role.IsNorm() {
		return quant.F32
	}
	if !quantized(p.Base) {
		return p.Base
	}
	m := presetModelOf(cfg, imatrix)
	switch s.Role {
	case model.RoleLMHead:
		return p.outputType(s.Cols)
	case model.RoleEmbed:
		if s.Tied {
			return p.outputType(s.Cols)
		}
		return p.embedType()
	case model.RoleV:
		return p.attnVType(s.Layer, m)
	case model.RoleDown:
		return p.ffnDownType(s.Layer, m)
	case model.RoleO:
		return p.attnOutputType()
	}
	// The i-quant mixtures also change attn_q and attn_k (iq3_xs, iq3_xxs)
	// and ffn_gate and ffn_up (iq3_xs): their cases go here.
	return p.Base
}

// outputType is the type of lm_head, and of a tied embedding: Q8_0 when
// the rows do not fit the base type's blocks, else Q6_K unless the base
// is Q8_0.
func (p Preset) outputType(cols int) quant.Type {
	if cols%p.Base.BlockSize() != 0 {
		return quant.Q8_0
	}
	if p.Base == quant.Q8_0 {
		return quant.Q8_0
	}
	return quant.Q6_K
}

// embedType is the type of an untied embedding.
func (p Preset) embedType() quant.Type {
	switch p.Name {
	case "tq1_0", "tq2_0":
		return quant.Q4_K
	}
	return p.Base
}

// attnVType raises attn_v; layer counts attn_v tensors from 0, which is the
// layer index in a dense model.
func (p Preset) attnVType(layer int, m presetModel) quant.Type {
	t := p.Base
	switch p.Name {
	case "q2_k":
		t = quant.Q3_K
		if m.gqa >= 4 {
			t = quant.Q4_K
		}
	case "q3_k_m":
		t = quant.Q4_K
		if layer < 2 {
			t = quant.Q5_K
		}
	case "q3_k_l":
		t = quant.Q5_K
	case "q4_k_m", "q5_k_m":
		if useMoreBits(layer, m.layers) {
			t = quant.Q6_K
		}
	case "q4_k_s":
		if layer < 4 {
			t = quant.Q5_K
		}
	}
	// A 70B model's attn_v is 8× smaller than attn_q (8 query heads per
	// key/value head): llama.cpp gives it more bits.
	if m.is70B && (t == quant.Q3_K || t == quant.Q4_K) {
		t = quant.Q5_K
	}
	return t
}

// ffnDownType raises ffn_down, mostly in the first layers and in the
// layers of useMoreBits.
func (p Preset) ffnDownType(layer int, m presetModel) quant.Type {
	n := m.layers
	switch p.Name {
	case "q2_k":
		return quant.Q3_K
	case "q3_k_m":
		if layer < n/16 {
			return quant.Q5_K
		}
		return quant.Q4_K
	case "q3_k_l":
		return quant.Q5_K
	case "q4_k_m", "q5_k_m":
		if useMoreBits(layer, n) {
			return quant.Q6_K
		}
	case "q4_k_s":
		if layer < n/8 {
			return quant.Q5_K
		}
	case "q4_0", "q5_0":
		// With an importance matrix (only then, so that a file without
		// one stays what it always was) the first eighth of ffn_down
		// gets the type with a minimum, which Q4_0 and Q5_0 lack.
		if m.imatrix && layer < n/8 {
			if p.Base == quant.Q4_0 {
				return quant.Q4_1
			}
			return quant.Q5_1
		}
	}
	return p.Base
}

// attnOutputType raises attn_output in the 2- and 3-bit mixtures.
func (p Preset) attnOutputType() quant.Type {
	switch p.Name {
	case "q2_k":
		return quant.Q3_K
	case "q3_k_m":
		return quant.Q4_K
	case "q3_k_l":
		return quant.Q5_K
	}
	return p.Base
}

// PresetNames lists the presets' names, comma-separated (for usage and
// error messages).
func PresetNames() string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
