// Package synth writes synthetic Hugging Face checkpoints with the exact
// tensor shapes of real architectures and Gaussian weights with sparse
// outliers, for speed and scale tests. The weights carry no knowledge: a
// synthetic model's perplexity means nothing, its sizes and timings do.
package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

// shapes are the named architectures, as their config.json files give them.
var shapes = map[string]string{
	"llama-2-7b":   `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"intermediate_size":11008,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":32,"vocab_size":32000,"max_position_embeddings":4096,"rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":false,"torch_dtype":"float16","bos_token_id":1,"eos_token_id":2}`,
	"llama-3-8b":   `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"max_position_embeddings":8192,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","bos_token_id":128000,"eos_token_id":128001}`,
	"llama-3.1-8b": `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_theta":500000.0,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"tie_word_embeddings":false,"torch_dtype":"bfloat16","bos_token_id":128000,"eos_token_id":[128001,128008,128009]}`,
	"llama-3-70b":  `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8192,"intermediate_size":28672,"num_hidden_layers":80,"num_attention_heads":64,"num_key_value_heads":8,"vocab_size":128256,"max_position_embeddings":8192,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","bos_token_id":128000,"eos_token_id":128001}`,
	"qwen2.5-0.5b": `{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"max_position_embeddings":32768,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true,"torch_dtype":"bfloat16","bos_token_id":151643,"eos_token_id":151643}`,
}

// Shapes lists the named architectures.
func Shapes() []string {
	out := make([]string, 0, len(shapes))
	for k := range shapes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ShapeConfig returns the config.json of a named architecture, or parses
// arg as a config.json object when it starts with "{". layers > 0 replaces
// num_hidden_layers.
func ShapeConfig(arg string, layers int) (map[string]any, *model.Config, error) {
	src := arg
	if !strings.HasPrefix(strings.TrimSpace(arg), "{") {
		var ok bool
		if src, ok = shapes[arg]; !ok {
			return nil, nil, fmt.Errorf("unknown shape %q (known: %s, or a config.json object)", arg, strings.Join(Shapes(), ", "))
		}
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(src), &raw); err != nil {
		return nil, nil, fmt.Errorf("shape: %w", err)
	}
	if layers > 0 {
		raw["num_hidden_layers"] = layers
	}
	b, _ := json.Marshal(raw)
	cfg, err := model.ParseConfig(b, "shape")
	if err != nil {
		return nil, nil, err
	}
	return raw, cfg, nil
}

// Options says what to generate.
type Options struct {
	DType safetensors.DType // F32, F16 or BF16
	Seed  uint64
	// MaxShardBytes splits the weights over several files (with an index)
	// when the total is larger; 0 means 4 GiB.
	MaxShardBytes int64
	// Progress, if set, is called with the bytes written so far and the total.
	Progress func(done, total int64)
}

// Write generates the checkpoint of the config into s: config.json, the
// safetensors file(s) and, when sharded, model.safetensors.index.json.
func Write(ctx context.Context, s store.Store, raw map[string]any, cfg *model.Config, opt Options) error {
	if !opt.DType.Float() {
		return fmt.Errorf("synth: dtype %s is not F32, F16 or BF16", opt.DType)
	}
	if opt.MaxShardBytes <= 0 {
		opt.MaxShardBytes = 4 << 30
	}
	raw["torch_dtype"] = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.F16: "float16", safetensors.BF16: "bfloat16"}[opt.DType]
	cfgJSON, _ := json.MarshalIndent(raw, "", "  ")
	if _, err := s.Put(ctx, model.ConfigFile, strings.NewReader(string(cfgJSON)+"\n"), int64(len(cfgJSON)+1)); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	var specs []safetensors.TensorSpec
	var total int64
	for _, ref := range cfg.ExpectedTensors() {
		sp := safetensors.TensorSpec{Name: ref.Name(), DType: opt.DType, Shape: cfg.ExpectedShape(ref.Role, ref.Bias)}
		specs = append(specs, sp)
		total += sp.Bytes()
	}
	files := model.PlanShards(specs, opt.MaxShardBytes)
	var done int64
	for _, f := range files {
		if err := writeFile(ctx, s, f.Name, f.Tensors, opt, &done, total); err != nil {
			return err
		}
	}
	if len(files) > 1 {
		idx, err := model.IndexJSON(files)
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		if _, err := s.Put(ctx, model.IndexFile, bytes.NewReader(idx), int64(len(idx))); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	return nil
}

func writeFile(ctx context.Context, s store.Store, name string, specs []safetensors.TensorSpec, opt Options, done *int64, total int64) error {
	md := map[string]string{"format": "pt", "generator": "adaptq synth"}
	size, err := safetensors.FileSize(specs, md)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		w, err := safetensors.NewWriter(pw, specs, md)
		if err == nil {
			for _, sp := range specs {
				if err = writeTensor(ctx, w, sp, opt, done, total); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	if _, err := s.Put(ctx, name, pr, size); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("synth: write %s: %w", name, err)
	}
	return nil
}

// chunkRows is the number of values generated per parallel task.
const chunkValues = 1 << 20

// writeTensor generates a tensor in chunks, in parallel, deterministically:
// each chunk's generator is seeded by (seed, tensor name, chunk index).
func writeTensor(ctx context.Context, w *safetensors.Writer, sp safetensors.TensorSpec, opt Options, done *int64, total int64) error {
	role, _, bias := model.Classify(sp.Name)
	n := sp.Bytes() / int64(sp.DType.Size())
	nameSeed := fnv(sp.Name)
	workers := runtime.GOMAXPROCS(0)
	type result struct {
		buf []byte
		err error
	}
	// A window of in-flight chunks, written in order.
	window := make([]chan result, 0, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := int64(0)
	launch := func() {
		start := next * chunkValues
		cnt := min(chunkValues, n-start)
		idx := next
		next++
		ch := make(chan result, 1)
		window = append(window, ch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]float32, cnt)
			fill(vals, role, bias, rand.New(rand.NewPCG(opt.Seed^nameSeed, uint64(idx))))
			buf := make([]byte, cnt*int64(sp.DType.Size()))
			err := safetensors.EncodeFloat32(buf, vals, sp.DType)
			ch <- result{buf, err}
		}()
	}
	chunks := (n + chunkValues - 1) / chunkValues
	for next < chunks && len(window) < workers {
		launch()
	}
	for len(window) > 0 {
		r := <-window[0]
		window = window[1:]
		if r.err != nil {
			return r.err
		}
		if _, err := w.Write(r.buf); err != nil {
			return err
		}
		*done += int64(len(r.buf))
		if opt.Progress != nil {
			opt.Progress(*done, total)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if next < chunks {
			launch()
		}
	}
	return nil
}

// fill draws weights: N(0, 0.02²) for matrices with one value in a thousand
// an outlier 10 to 50 times larger; RMSNorm weights around 1; biases small.
func fill(v []float32, role model.Role, bias bool, r *rand.Rand) {
	switch {
	case role.IsNorm():
		for i := range v {
			v[i] = float32(1 + 0.1*r.NormFloat64())
		}
	case bias:
		for i := range v {
			v[i] = float32(0.01 * r.NormFloat64())
		}
	default:
		for i := range v {
			x := 0.02 * r.NormFloat64()
			if r.Uint32()%1000 == 0 {
				x *= 10 + 40*r.Float64()
			}
			v[i] = float32(x)
		}
	}
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
