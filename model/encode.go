package model

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/ohms-project/adaptq/safetensors"
)

// architectureClass is transformers' model class of each model type, for
// the "architectures" field of a config.json that does not name one.
var architectureClass = map[string]string{
	"llama":   "LlamaForCausalLM",
	"mistral": "MistralForCausalLM",
	"qwen2":   "Qwen2ForCausalLM",
	"qwen3":   "Qwen3ForCausalLM",
}

// jsonFloat is a float64 written with the fewest digits that read back as
// the same value (1e-05, not 9.999999747378752e-06, when the value came
// from a float32 and was rounded to the shortest float32 decimal first).
type jsonFloat float64

// MarshalJSON writes the shortest decimal that parses back to the value.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		// Whole numbers as Python writes them: 1000000.0, not 1e+06.
		return strconv.AppendFloat(nil, v, 'f', 1, 64), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// Encode returns a config.json for c, in the form transformers writes for
// the model type, which ParseConfig reads back as an identical Config.
// Fields ParseConfig derives from the model type (Qwen2's biases, Qwen3's
// q/k norms) are implied by model_type; head_dim is always written.
func (c *Config) Encode() ([]byte, error) {
	class, ok := architectureClass[c.ModelType]
	if !ok {
		return nil, fmt.Errorf("config: model_type %q has no transformers class here", c.ModelType)
	}
	archs := c.Architectures
	if len(archs) == 0 {
		archs = []string{class}
	}
	// json.Marshal sorts the keys, as transformers does.
	m := map[string]any{
		"architectures":       archs,
		"model_type":          c.ModelType,
		"hidden_act":          "silu",
		"hidden_size":         c.HiddenSize,
		"intermediate_size":   c.IntermediateSize,
		"num_hidden_layers":   c.NumLayers,
		"num_attention_heads": c.NumHeads,
		"num_key_value_heads": c.NumKVHeads,
		"head_dim":            c.HeadDim,
		"vocab_size":          c.VocabSize,
		"rms_norm_eps":        jsonFloat(c.RMSNormEps),
		"rope_theta":          jsonFloat(c.RopeTheta),
		"tie_word_embeddings": c.TieWordEmbeddings,
		"use_cache":           true,
	}
	if c.MaxPositionEmbeddings > 0 {
		m["max_position_embeddings"] = c.MaxPositionEmbeddings
	}
	switch c.ModelType {
	case "llama", "mistral":
		m["attention_bias"] = c.AttentionBias
		m["mlp_bias"] = false
	case "qwen3":
		m["attention_bias"] = c.AttentionBias
	}
	if c.TorchDType != "" {
		m["torch_dtype"] = c.TorchDType
	}
	if rs := c.RopeScaling; rs != nil {
		r := map[string]any{"rope_type": rs.Type, "factor": jsonFloat(rs.Factor)}
		if rs.LowFreqFactor != 0 {
			r["low_freq_factor"] = jsonFloat(rs.LowFreqFactor)
		}
		if rs.HighFreqFactor != 0 {
			r["high_freq_factor"] = jsonFloat(rs.HighFreqFactor)
		}
		if rs.OriginalMaxPositionEmbeddings != 0 {
			r["original_max_position_embeddings"] = rs.OriginalMaxPositionEmbeddings
		}
		m["rope_scaling"] = r
	}
	ids := func(v []int) any {
		if len(v) == 1 {
			return v[0]
		}
		return v
	}
	if len(c.BOSTokenID) > 0 {
		m["bos_token_id"] = ids(c.BOSTokenID)
	}
	if len(c.EOSTokenID) > 0 {
		m["eos_token_id"] = ids(c.EOSTokenID)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return append(b, '\n'), nil
}

// ShardFile is one safetensors file of a checkpoint being written: its name
// and its tensors in order.
type ShardFile struct {
	Name    string
	Tensors []safetensors.TensorSpec
}

// Bytes is the size of the file's tensor data (without the header).
func (f *ShardFile) Bytes() int64 {
	var n int64
	for _, s := range f.Tensors {
		n += s.Bytes()
	}
	return n
}

// PlanShards splits tensors, in order, into safetensors files holding at
// most maxBytes of tensor data each (a larger tensor gets a file of its
// own), named as transformers names them: model.safetensors when there is
// one file, model-00001-of-0000N.safetensors when there are N. maxBytes ≤ 0
// means one file.
func PlanShards(tensors []safetensors.TensorSpec, maxBytes int64) []ShardFile {
	var files []ShardFile
	var cur ShardFile
	var curBytes int64
	for _, s := range tensors {
		if len(cur.Tensors) > 0 && maxBytes > 0 && curBytes+s.Bytes() > maxBytes {
			files = append(files, cur)
			cur, curBytes = ShardFile{}, 0
		}
		cur.Tensors = append(cur.Tensors, s)
		curBytes += s.Bytes()
	}
	files = append(files, cur)
	for i := range files {
		files[i].Name = SingleFile
		if len(files) > 1 {
			files[i].Name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(files))
		}
	}
	return files
}

// IndexJSON returns model.safetensors.index.json for a checkpoint split
// into files: metadata.total_size (bytes of tensor data) and the weight map
// from tensor name to file.
func IndexJSON(files []ShardFile) ([]byte, error) {
	var total int64
	weights := map[string]string{}
	for i := range files {
		total += files[i].Bytes()
		for _, s := range files[i].Tensors {
			weights[s.Name] = files[i].Name
		}
	}
	b, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weights}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return append(b, '\n'), nil
}
