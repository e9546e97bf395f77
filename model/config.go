package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Architectures adaptq reads (the Llama family).
var supportedModelTypes = []string{"llama", "mistral", "qwen2", "qwen3"}

// RopeScaling is the rope_scaling block of config.json. adaptq's forward
// pass implements the "llama3" type; other types are parsed and reported.
type RopeScaling struct {
	Type                          string  `json:"type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}

// Config holds the hyperparameters adaptq needs from a Hugging Face
// config.json of the Llama family.
type Config struct {
	ModelType             string       `json:"model_type"`
	Architectures         []string     `json:"architectures,omitempty"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumLayers             int          `json:"num_hidden_layers"`
	NumHeads              int          `json:"num_attention_heads"`
	NumKVHeads            int          `json:"num_key_value_heads"`
	HeadDim               int          `json:"head_dim"`
	VocabSize             int          `json:"vocab_size"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings,omitempty"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta"`
	RopeScaling           *RopeScaling `json:"rope_scaling,omitempty"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	AttentionBias         bool         `json:"attention_bias"`
	// QKNorm is true for Qwen3: RMSNorm over each head's queries and keys.
	QKNorm     bool   `json:"qk_norm"`
	TorchDType string `json:"torch_dtype,omitempty"`
	BOSTokenID []int  `json:"bos_token_id,omitempty"`
	EOSTokenID []int  `json:"eos_token_id,omitempty"`
}

// rawConfig mirrors config.json with pointers, so that absent fields can be
// told apart from zero ones.
type rawConfig struct {
	ModelType             *string         `json:"model_type"`
	Architectures         []string        `json:"architectures"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumLayers             *int            `json:"num_hidden_layers"`
	NumHeads              *int            `json:"num_attention_heads"`
	NumKVHeads            *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         *bool           `json:"attention_bias"`
	TorchDType            *string         `json:"torch_dtype"`
	DType                 *string         `json:"dtype"`
	BOSTokenID            json.RawMessage `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
}

// ParseConfig parses a config.json of the Llama family. file names the file
// in errors. Missing required fields, zero or negative sizes and unknown
// architectures are errors; optional fields get the Hugging Face defaults
// of the model type.
func ParseConfig(data []byte, file string) (*Config, error) {
	var raw rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: not a JSON config: %w", file, err)
	}
	if raw.ModelType == nil {
		return nil, fmt.Errorf("%s: missing required field model_type", file)
	}
	c := &Config{ModelType: *raw.ModelType, Architectures: raw.Architectures}
	known := false
	for _, t := range supportedModelTypes {
		known = known || t == c.ModelType
	}
	if !known {
		return nil, fmt.Errorf("%s: model_type %q is not supported (adaptq reads %s)", file, c.ModelType, strings.Join(supportedModelTypes, ", "))
	}
	req := []struct {
		name string
		v    *int
		dst  *int
	}{
		{"hidden_size", raw.HiddenSize, &c.HiddenSize},
		{"intermediate_size", raw.IntermediateSize, &c.IntermediateSize},
		{"num_hidden_layers", raw.NumLayers, &c.NumLayers},
		{"num_attention_heads", raw.NumHeads, &c.NumHeads},
		{"vocab_size", raw.VocabSize, &c.VocabSize},
	}
	for _, r := range req {
		if r.v == nil {
			return nil, fmt.Errorf("%s: missing required field %s", file, r.name)
		}
		if *r.v <= 0 {
			return nil, fmt.Errorf("%s: %s must be positive, is %d", file, r.name, *r.v)
		}
		*r.dst = *r.v
	}
	c.NumKVHeads = c.NumHeads
	if raw.NumKVHeads != nil {
		c.NumKVHeads = *raw.NumKVHeads
	}
	if c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 {
		return nil, fmt.Errorf("%s: num_key_value_heads %d must be positive and divide num_attention_heads %d", file, c.NumKVHeads, c.NumHeads)
	}
	if raw.HeadDim != nil && *raw.HeadDim != 0 {
		c.HeadDim = *raw.HeadDim
	} else {
		if c.HiddenSize%c.NumHeads != 0 {
			return nil, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d and head_dim is not given", file, c.HiddenSize, c.NumHeads)
		}
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%s: head_dim must be positive and even, is %d", file, c.HeadDim)
	}
	if raw.MaxPositionEmbeddings != nil {
		c.MaxPositionEmbeddings = *raw.MaxPositionEmbeddings
	}
	// Defaults of transformers' config classes.
	c.RMSNormEps = 1e-6
	c.RopeTheta = 10000
	switch c.ModelType {
	case "qwen2":
		c.AttentionBias = true // Qwen2 always has q, k, v biases
		c.RopeTheta = 1000000
	case "qwen3":
		c.QKNorm = true
		c.RopeTheta = 1000000
	}
	if raw.RMSNormEps != nil {
		c.RMSNormEps = *raw.RMSNormEps
	}
	if c.RMSNormEps <= 0 {
		return nil, fmt.Errorf("%s: rms_norm_eps must be positive, is %g", file, c.RMSNormEps)
	}
	if raw.RopeTheta != nil {
		c.RopeTheta = *raw.RopeTheta
	}
	if c.RopeTheta <= 0 {
		return nil, fmt.Errorf("%s: rope_theta must be positive, is %g", file, c.RopeTheta)
	}
	if raw.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *raw.TieWordEmbeddings
	}
	if raw.AttentionBias != nil && c.ModelType != "qwen2" {
		c.AttentionBias = *raw.AttentionBias
	}
	if raw.TorchDType != nil {
		c.TorchDType = *raw.TorchDType
	} else if raw.DType != nil {
		c.TorchDType = *raw.DType
	}
	if len(raw.RopeScaling) > 0 && string(raw.RopeScaling) != "null" {
		var rs struct {
			RopeScaling
			RopeType string `json:"rope_type"`
		}
		if err := json.Unmarshal(raw.RopeScaling, &rs); err != nil {
			return nil, fmt.Errorf("%s: rope_scaling: %w", file, err)
		}
		if rs.Type == "" {
			rs.Type = rs.RopeType
		}
		if rs.Type == "" {
			return nil, fmt.Errorf("%s: rope_scaling has no type", file)
		}
		if rs.Type == "llama3" && (rs.Factor <= 0 || rs.LowFreqFactor <= 0 || rs.HighFreqFactor <= rs.LowFreqFactor || rs.OriginalMaxPositionEmbeddings <= 0) {
			return nil, fmt.Errorf("%s: rope_scaling of type llama3 needs positive factor, low_freq_factor < high_freq_factor and original_max_position_embeddings", file)
		}
		c.RopeScaling = &rs.RopeScaling
	}
	var err error
	if c.BOSTokenID, err = tokenIDs(raw.BOSTokenID); err != nil {
		return nil, fmt.Errorf("%s: bos_token_id: %w", file, err)
	}
	if c.EOSTokenID, err = tokenIDs(raw.EOSTokenID); err != nil {
		return nil, fmt.Errorf("%s: eos_token_id: %w", file, err)
	}
	return c, nil
}

// tokenIDs accepts null, a number or a list of numbers.
func tokenIDs(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("want a number or a list of numbers")
	}
	return many, nil
}

// QDim is the width of the query projection's output (heads × head_dim).
func (c *Config) QDim() int { return c.NumHeads * c.HeadDim }

// KVDim is the width of the key and value projections' output.
func (c *Config) KVDim() int { return c.NumKVHeads * c.HeadDim }
