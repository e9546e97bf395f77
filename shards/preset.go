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
// mixtures of experts; the i-quant mixtures' rules are tabled in
// docs/PRESETS.md), and the fallback ladder of package quant
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

// presets are the file types adaptq reproduces: every llama-quantize
// preset of the dense Llama family except q2_k_s and the MoE/FP4 ones.
// Note llama.cpp's own defaults: iq2_s's base type is IQ2_XS and iq2_m's
// IQ2_S, iq3_xs's and iq3_m's IQ3_S.
var presets = []Preset{
	{"f32", 0, quant.F32}, {"f16", 1, quant.F16}, {"bf16", 32, quant.BF16},
	{"q8_0", 7, quant.Q8_0}, {"q6_k", 18, quant.Q6_K},
	{"q5_k_m", 17, quant.Q5_K}, {"q5_k_s", 16, quant.Q5_K},
	{"q4_k_m", 15, quant.Q4_K}, {"q4_k_s", 14, quant.Q4_K},
	{"q3_k_l", 13, quant.Q3_K}, {"q3_k_m", 12, quant.Q3_K}, {"q3_k_s", 11, quant.Q3_K},
	{"q2_k", 10, quant.Q2_K},
	{"q5_1", 9, quant.Q5_1}, {"q5_0", 8, quant.Q5_0}, {"q4_1", 3, quant.Q4_1}, {"q4_0", 2, quant.Q4_0},
	{"iq4_nl", 25, quant.IQ4_NL}, {"iq4_xs", 30, quant.IQ4_XS},
	{"iq3_m", 27, quant.IQ3_S}, {"iq3_s", 26, quant.IQ3_S}, {"iq3_xs", 22, quant.IQ3_S}, {"iq3_xxs", 23, quant.IQ3_XXS},
	{"iq2_m", 29, quant.IQ2_S}, {"iq2_s", 28, quant.IQ2_XS}, {"iq2_xs", 20, quant.IQ2_XS}, {"iq2_xxs", 19, quant.IQ2_XXS},
	{"iq1_m", 31, quant.IQ1_M}, {"iq1_s", 24, quant.IQ1_S},
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
	}
	if p.lowBitIQ() {
		// llama.cpp's rules for the 1- and 2-bit i-quant mixtures come
		// before, and instead of, all the others.
		return p.lowBitIQType(s, m)
	}
	switch s.Role {
	case model.RoleV:
		return p.attnVType(s.Layer, m)
	case model.RoleDown:
		return p.ffnDownType(s.Layer, m)
	case model.RoleO:
		return p.attnOutputType()
	case model.RoleQ, model.RoleK:
		switch p.Name {
		case "iq3_xs":
			return quant.IQ3_XXS
		case "iq3_xxs":
			return quant.IQ2_S
		}
	case model.RoleGate, model.RoleUp:
		// iq3_xs: the middle three quarters of the layers get IQ3_XXS.
		if p.Name == "iq3_xs" && s.Layer >= m.layers/8 && s.Layer < 7*m.layers/8 {
			return quant.IQ3_XXS
		}
	}
	return p.Base
}

// lowBitIQ reports whether the preset is one of the 1- and 2-bit i-quant
// mixtures, which llama.cpp treats as a group.
func (p Preset) lowBitIQ() bool {
	switch p.Name {
	case "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq1_s", "iq1_m":
		return true
	}
	return false
}

// lowBitIQType is the type of a projection under a lowBitIQ preset: more
// bits for attn_v (Q4_K with four or more query heads per key/value head),
// for the first eighth of ffn_down and for attn_output; iq2_s and iq2_m
// raise them to IQ3_S, the others to Q2_K (attn_output: IQ2_XXS for iq1_*).
func (p Preset) lowBitIQType(s Slot, m presetModel) quant.Type {
	wide := p.Name == "iq2_s" || p.Name == "iq2_m"
	switch s.Role {
	case model.RoleV:
		switch {
		case m.gqa >= 4:
			return quant.Q4_K
		case wide:
			return quant.IQ3_S
		}
		return quant.Q2_K
	case model.RoleDown:
		if s.Layer < m.layers/8 {
			if wide {
				return quant.IQ3_S
			}
			return quant.Q2_K
		}
	case model.RoleO:
		switch {
		case p.Name == "iq1_s" || p.Name == "iq1_m":
			return quant.IQ2_XXS
		case wide:
			return quant.IQ3_S
		}
	}
	return p.Base
}

// outputType is the type of lm_head, and of a tied embedding: Q8_0 when
// the rows do not fit the base type's blocks, else Q5_K for the 1- and
// 2-bit i-quant mixtures and iq3_xxs, and Q6_K unless the base is Q8_0.
func (p Preset) outputType(cols int) quant.Type {
	switch {
	case cols%p.Base.BlockSize() != 0, p.Base == quant.Q8_0:
		return quant.Q8_0
	case p.lowBitIQ() || p.Name == "iq3_xxs":
		return quant.Q5_K
	}
	return quant.Q6_K
}

// embedType is the type of an untied embedding.
func (p Preset) embedType() quant.Type {
	switch p.Name {
	case "tq1_0", "tq2_0":
		return quant.Q4_K
	case "iq2_xxs", "iq2_xs", "iq1_s", "iq1_m":
		return quant.Q2_K
	case "iq2_s", "iq2_m", "iq3_xxs":
		return quant.IQ3_S
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
	case "iq3_xxs":
		switch {
		case m.gqa >= 4:
			t = quant.Q4_K
		case !m.imatrix:
			t = quant.IQ3_S
		}
	case "iq3_xs", "iq3_s":
		if m.gqa >= 4 {
			t = quant.Q4_K
		}
	case "iq3_m":
		t = quant.Q4_K
	case "q3_k_m":
		t = quant.Q4_K
		if layer < 2 {
			t = quant.Q5_K
		}
	case "q3_k_l":
		t = quant.Q5_K
	case "iq4_nl", "iq4_xs":
		if m.gqa >= 4 {
			t = quant.Q5_K
		}
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
	case "iq3_xxs":
		// Without an importance matrix only.
		if !m.imatrix {
			if layer < n/8 {
				return quant.Q4_K
			}
			return quant.Q3_K
		}
	case "q3_k_m":
		if layer < n/16 {
			return quant.Q5_K
		}
		return quant.Q4_K
	case "iq3_m":
		if layer < n/8 {
			return quant.Q4_K
		}
	case "q3_k_l":
		return quant.Q5_K
	case "q4_k_m", "q5_k_m":
		if useMoreBits(layer, n) {
			return quant.Q6_K
		}
	case "iq4_nl", "iq4_xs":
		if !m.imatrix && layer < n/8 {
			return quant.Q5_K
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
	case "iq3_xxs":
		return quant.IQ3_S
	case "q3_k_m", "iq3_m":
		return quant.Q4_K
	case "q3_k_l":
		return quant.Q5_K
	}
	return p.Base
}

// NeedsImatrix reports whether llama-quantize refuses to write a tensor
// of type t (the type after the fallback) without an importance matrix
// ("this quantization requires an importance matrix!",
// tensor_requires_imatrix): IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_M and
// IQ1_S, except for the embedding and lm_head.
func NeedsImatrix(t quant.Type, role model.Role) bool {
	if role == model.RoleEmbed || role == model.RoleLMHead {
		return false
	}
	switch t {
	case quant.IQ3_XXS, quant.IQ2_XXS, quant.IQ2_XS, quant.IQ2_S, quant.IQ1_M, quant.IQ1_S:
		return true
	}
	return false
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
