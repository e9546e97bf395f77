package model_test

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
)

// TestEncodeRoundTrip: ParseConfig reads back exactly the Config that
// Encode wrote, for every architecture and rope scaling type, and a value
// that came from a float32 is written with the float32's shortest digits.
func TestEncodeRoundTrip(t *testing.T) {
	fixture, err := os.ReadFile(f32Dir + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	configs := map[string]string{
		"fixture":      string(fixture),
		"llama-3.1-8b": `{"model_type":"llama","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_theta":500000.0,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"torch_dtype":"bfloat16","bos_token_id":128000,"eos_token_id":[128001,128008,128009]}`,
		"linear":       `{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"rope_scaling":{"type":"linear","factor":2.0},"attention_bias":true}`,
		"qwen2":        `{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"max_position_embeddings":32768,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true,"bos_token_id":151643,"eos_token_id":151645}`,
		"qwen3":        `{"model_type":"qwen3","hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,"rms_norm_eps":1e-6,"rope_theta":1000000,"tie_word_embeddings":true}`,
		"mistral":      `{"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":32768,"rope_theta":1000000.0,"torch_dtype":"bfloat16"}`,
	}
	classes := map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
	for name, src := range configs {
		t.Run(name, func(t *testing.T) {
			want, err := model.ParseConfig([]byte(src), name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := want.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := model.ParseConfig(b, "encoded "+name)
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if len(want.Architectures) == 0 {
				// Encode names transformers' class of the model type.
				want.Architectures = []string{classes[want.ModelType]}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("read back %+v\nwant      %+v\nfrom %s", got, want, b)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m["hidden_act"] != "silu" || m["head_dim"] == nil {
				t.Errorf("hidden_act %v, head_dim %v", m["hidden_act"], m["head_dim"])
			}
		})
	}

	// A float32 epsilon, converted as the GGUF importer does.
	c, err := model.ParseConfig([]byte(configs["qwen2"]), "qwen2")
	if err != nil {
		t.Fatal(err)
	}
	c.RMSNormEps = 1e-5
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"rms_norm_eps": 1e-05`) || !strings.Contains(string(b), `"rope_theta": 1000000.0`) {
		t.Errorf("floats not in shortest form:\n%s", b)
	}
	if _, err := (&model.Config{ModelType: "gpt2"}).Encode(); err == nil {
		t.Error("model_type gpt2 encoded")
	}
}
