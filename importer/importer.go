// Package importer turns a GGUF file of the Llama family (architectures
// llama, qwen2, qwen3; any tensor type package quant decodes) into a
// Hugging Face checkpoint in a store: config.json rebuilt from the GGUF
// hyperparameters (gguf.LlamaConfig), safetensors files of the dequantized
// tensors under their Hugging Face names, with query/key rows put back in
// Hugging Face order for the llama architecture (the inverse of the
// export's permutation; Qwen's are stored as is), sharded with
// model.safetensors.index.json, and tokenizer.json and
// tokenizer_config.json rebuilt from tokenizer.ggml.* (gguf.TokenizerFiles).
//
// Matrices are written in the chosen dtype (F16 by default; F32 keeps every
// dequantized value exactly), vectors (norms, biases) in F32, as the GGUF
// holds them. The import is the "original" of every quality comparison
// made from a GGUF: the GGUF's own quantization noise belongs to it.
//
// Everything that can be checked is checked before the first write (the
// header, the hyperparameters, the tokenizer, every tensor's name, shape
// and type, an output location free of another checkpoint), so bad input
// writes nothing; a failure while writing removes what was written.
// config.json is written last, so a checkpoint without it is never
// mistaken for a complete one. Memory holds one block of rows at a time.
package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// TokenizerConfigFile is the name of the tokenizer's settings file.
const TokenizerConfigFile = "tokenizer_config.json"

// DefaultMaxShardBytes is the largest safetensors file written when
// Options.MaxShardBytes is 0.
const DefaultMaxShardBytes = 4 << 30

// blockBytes bounds the float32 values of one block of rows in memory.
const blockBytes = 8 << 20

// Options are the choices of an import.
type Options struct {
	// DType is the dtype of the matrices and the embedding: F16 (the
	// default when zero), BF16 or F32. Vectors are always F32.
	DType safetensors.DType
	// MaxShardBytes splits the tensors into files of at most this many
	// bytes of data (DefaultMaxShardBytes when 0).
	MaxShardBytes int64
	// Progress, if set, is called with the bytes of tensor data written so
	// far and the total.
	Progress func(done, total int64)
}

// Tensor is one tensor of the import: where it comes from and what it
// becomes.
type Tensor struct {
	// GGUF is the llama.cpp name, Name the Hugging Face name.
	GGUF, Name string
	Type       quant.Type
	// Shape is the Hugging Face shape (the GGUF dimensions reversed).
	Shape []int64
	DType safetensors.DType
	// PermuteHeadDim is the head dimension when the rows are llama.cpp's
	// query/key order and must be put back in Hugging Face's, else 0.
	PermuteHeadDim int
	// Offset and Size locate the tensor's bytes in the GGUF file.
	Offset, Size int64
}

// Rows is the number of rows (1 for a vector) and Cols the row length.
func (t *Tensor) Rows() int64 {
	if len(t.Shape) == 1 {
		return 1
	}
	return t.Shape[0]
}

// Cols is the row length of the tensor.
func (t *Tensor) Cols() int64 { return t.Shape[len(t.Shape)-1] }

// Plan is an import decided and checked before anything is written.
type Plan struct {
	// Source names the GGUF file in errors.
	Source string
	Config *model.Config
	// ConfigJSON, TokenizerJSON and TokenizerConfigJSON are the small
	// files, ready to write.
	ConfigJSON, TokenizerJSON, TokenizerConfigJSON []byte
	Tensors                                        []Tensor
	Files                                          []model.ShardFile
	// Params is the number of parameters (values of all tensors).
	Params int64
	// DataBytes is the bytes of tensor data the safetensors files hold.
	DataBytes int64
	byName    map[string]int
}

// NewPlan checks a GGUF file (header f, bytes in r, named source in errors)
// and decides its import: config.json, the tokenizer files and every
// tensor with its Hugging Face name, shape, dtype and file. Errors name the
// file and the key or tensor at fault.
func NewPlan(f *gguf.File, r io.ReaderAt, source string, opts Options) (*Plan, error) {
	p, err := newPlan(f, r, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	p.Source = source
	return p, nil
}

func newPlan(f *gguf.File, r io.ReaderAt, opts Options) (*Plan, error) {
	if opts.DType == 0 {
		opts.DType = safetensors.F16
	}
	if !opts.DType.Float() {
		return nil, fmt.Errorf("import: dtype %s is not F16, BF16 or F32", opts.DType)
	}
	if opts.MaxShardBytes <= 0 {
		opts.MaxShardBytes = DefaultMaxShardBytes
	}
	cfg, err := gguf.LlamaConfig(f, r)
	if err != nil {
		return nil, err
	}
	cfg.TorchDType = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.F16: "float16", safetensors.BF16: "bfloat16"}[opts.DType]
	p := &Plan{Config: cfg, byName: map[string]int{}}
	if p.ConfigJSON, err = cfg.Encode(); err != nil {
		return nil, err
	}
	back, err := model.ParseConfig(p.ConfigJSON, model.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("the rebuilt config.json does not read back: %w", err)
	}
	if p.TokenizerJSON, p.TokenizerConfigJSON, err = gguf.TokenizerFiles(f.Metadata, cfg.MaxPositionEmbeddings); err != nil {
		return nil, err
	}
	tok, err := tokenizer.Parse(p.TokenizerJSON)
	if err != nil {
		return nil, fmt.Errorf("the tokenizer.json rebuilt from tokenizer.ggml.* does not load: %w", err)
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("tokenizer.ggml.tokens: %d tokens, more than the %d rows of token_embd.weight", tok.VocabSize(), cfg.VocabSize)
	}

	// Every tensor the config implies, and nothing else.
	want := map[string]model.TensorRef{}
	for _, ref := range back.ExpectedTensors() {
		name, err := gguf.TensorName(ref.Role, ref.Layer, ref.Bias)
		if err != nil {
			return nil, err
		}
		want[name] = ref
	}
	permute := cfg.ModelType == "llama"
	seen := map[string]bool{}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if ti.Name == gguf.RopeFreqsName {
			continue // read into config.json's rope_scaling
		}
		ref, ok := want[ti.Name]
		if !ok {
			return nil, fmt.Errorf("tensor %q is not part of a %s model with this config (an unsupported feature of the architecture?)", ti.Name, cfg.ModelType)
		}
		seen[ti.Name] = true
		typ := quant.Type(ti.Type)
		if !typ.Valid() {
			return nil, fmt.Errorf("tensor %q has type %s, which package quant does not decode", ti.Name, gguf.TypeName(ti.Type))
		}
		shape := make([]int64, len(ti.Dims))
		for j, d := range ti.Dims {
			shape[len(ti.Dims)-1-j] = int64(d)
		}
		if exp := back.ExpectedShape(ref.Role, ref.Bias); !slices.Equal(shape, exp) {
			return nil, fmt.Errorf("tensor %q has dimensions %v, the metadata implies %v", ti.Name, ti.Dims, reversed(exp))
		}
		t := Tensor{GGUF: ti.Name, Name: ref.Name(), Type: typ, Shape: shape, DType: opts.DType,
			Offset: f.DataOffset + int64(ti.Offset), Size: int64(ti.Size)}
		if len(shape) == 1 {
			t.DType = safetensors.F32
		}
		if permute && (ref.Role == model.RoleQ || ref.Role == model.RoleK) {
			t.PermuteHeadDim = cfg.HeadDim
		}
		p.byName[t.Name] = len(p.Tensors)
		p.Tensors = append(p.Tensors, t)
	}
	for _, ref := range back.ExpectedTensors() {
		name, _ := gguf.TensorName(ref.Role, ref.Layer, ref.Bias)
		if !seen[name] {
			return nil, fmt.Errorf("tensor %q (%s) is missing", name, ref.Name())
		}
	}
	// Model order: the order config.ExpectedTensors lists them in.
	order := map[string]int{}
	for i, ref := range back.ExpectedTensors() {
		order[ref.Name()] = i
	}
	slices.SortFunc(p.Tensors, func(a, b Tensor) int { return order[a.Name] - order[b.Name] })
	specs := make([]safetensors.TensorSpec, len(p.Tensors))
	for i := range p.Tensors {
		t := &p.Tensors[i]
		p.byName[t.Name] = i
		specs[i] = safetensors.TensorSpec{Name: t.Name, DType: t.DType, Shape: t.Shape}
		p.Params += t.Rows() * t.Cols()
		p.DataBytes += specs[i].Bytes()
	}
	p.Files = model.PlanShards(specs, opts.MaxShardBytes)
	return p, nil
}

func reversed(s []int64) []int64 {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// Tensor looks a tensor of the plan up by its Hugging Face name.
func (p *Plan) Tensor(name string) (*Tensor, bool) {
	i, ok := p.byName[name]
	if !ok {
		return nil, false
	}
	return &p.Tensors[i], true
}

// Summary is what an import wrote.
type Summary struct {
	Tensors int
	Params  int64
	// Bytes is the size of everything written, Files the number of
	// safetensors files.
	Bytes   int64
	Files   int
	Seconds float64
}

// safetensorsMetadata is the __metadata__ of every file written.
var safetensorsMetadata = map[string]string{"format": "pt", "generator": "adaptq import"}

// isCheckpointKey reports whether a top-level key is one an import may
// write.
func isCheckpointKey(key string) bool {
	switch key {
	case model.ConfigFile, model.IndexFile, model.TokenizerFile, TokenizerConfigFile:
		return true
	}
	return strings.HasSuffix(key, ".safetensors")
}

// CheckOutput refuses an output location that already holds a checkpoint
// (a config.json, tokenizer files, an index or safetensors files at its
// top level): an import never mixes its files with another's, and its
// cleanup after a failure removes only what it wrote.
func CheckOutput(ctx context.Context, out store.Store) error {
	objs, err := out.List(ctx, "")
	if err != nil {
		return fmt.Errorf("import: list %s: %w", out.Location(), err)
	}
	for _, o := range objs {
		if !strings.Contains(o.Key, "/") && isCheckpointKey(o.Key) {
			return fmt.Errorf("import: %s already holds %s; import into an empty location", out.Location(), o.Key)
		}
	}
	return nil
}

// Write writes the planned checkpoint into out, reading the GGUF's tensor
// bytes from src (the object key of the file the plan was made from): the
// safetensors files, the index when there are several, the tokenizer files
// and config.json last. If anything fails, the objects written so far are
// deleted.
func (p *Plan) Write(ctx context.Context, src store.Store, key string, out store.Store, progress func(done, total int64)) (_ *Summary, err error) {
	start := time.Now()
	if err := CheckOutput(ctx, out); err != nil {
		return nil, err
	}
	var written []string
	defer func() {
		if err == nil {
			return
		}
		// Remove what was written, even when ctx is cancelled.
		clean := context.WithoutCancel(ctx)
		for _, k := range written {
			if derr := out.Delete(clean, k); derr != nil {
				err = errors.Join(err, fmt.Errorf("import: removing %s after the failure: %w", store.Describe(out, k), derr))
			}
		}
	}()
	sum := &Summary{Tensors: len(p.Tensors), Params: p.Params, Files: len(p.Files)}
	var done int64
	for _, f := range p.Files {
		// Listed before the Put: deleting an object a failed Put did not
		// leave is harmless, and CheckOutput made sure none was there.
		written = append(written, f.Name)
		n, err := p.writeFile(ctx, src, key, out, f, &done, progress)
		if err != nil {
			return nil, err
		}
		sum.Bytes += n
	}
	small := []struct {
		key  string
		data []byte
	}{{model.TokenizerFile, p.TokenizerJSON}, {TokenizerConfigFile, p.TokenizerConfigJSON}, {model.ConfigFile, p.ConfigJSON}}
	if len(p.Files) > 1 {
		idx, err := model.IndexJSON(p.Files)
		if err != nil {
			return nil, err
		}
		small = append([]struct {
			key  string
			data []byte
		}{{model.IndexFile, idx}}, small...)
	}
	for _, s := range small {
		written = append(written, s.key)
		if _, err := out.Put(ctx, s.key, bytes.NewReader(s.data), int64(len(s.data))); err != nil {
			return nil, fmt.Errorf("import: write %s: %w", store.Describe(out, s.key), err)
		}
		sum.Bytes += int64(len(s.data))
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// errStoreStopped ends the producer of a file whose Put returned.
var errStoreStopped = errors.New("import: the store stopped reading")

// writeFile streams one safetensors file into out and returns its size.
func (p *Plan) writeFile(ctx context.Context, src store.Store, key string, out store.Store, f model.ShardFile, done *int64, progress func(done, total int64)) (int64, error) {
	size, err := safetensors.FileSize(f.Tensors, safetensorsMetadata)
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	produced := make(chan error, 1)
	go func() {
		err := p.produce(ctx, src, key, pw, f, done, progress)
		pw.CloseWithError(err)
		produced <- err
	}()
	_, putErr := out.Put(ctx, f.Name, pr, size)
	pr.CloseWithError(errStoreStopped)
	prodErr := <-produced
	switch {
	case prodErr != nil && !errors.Is(prodErr, errStoreStopped):
		return 0, prodErr // the cause of the failed Put
	case putErr != nil:
		return 0, fmt.Errorf("import: write %s: %w", store.Describe(out, f.Name), putErr)
	case prodErr != nil:
		return 0, prodErr
	}
	return size, nil
}

// produce writes one safetensors file's bytes to w: the header, then each
// tensor dequantized a block of rows at a time.
func (p *Plan) produce(ctx context.Context, src store.Store, key string, w io.Writer, f model.ShardFile, done *int64, progress func(done, total int64)) error {
	sw, err := safetensors.NewWriter(w, f.Tensors, safetensorsMetadata)
	if err != nil {
		return err
	}
	var vals, perm []float32
	var enc []byte
	for _, spec := range f.Tensors {
		t, _ := p.Tensor(spec.Name)
		err := p.readRows(ctx, src, key, t, func(first int64, rows []float32) error {
			if t.PermuteHeadDim > 0 {
				perm = grow(perm, len(rows))
				unpermuteQK(perm, rows, int(t.Cols()), t.PermuteHeadDim)
				rows = perm
			}
			enc = growBytes(enc, len(rows)*t.DType.Size())
			if err := safetensors.EncodeFloat32(enc, rows, t.DType); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			if _, err := sw.Write(enc); err != nil {
				return err
			}
			*done += int64(len(enc))
			if progress != nil {
				progress(*done, p.DataBytes)
			}
			return nil
		}, &vals)
		if err != nil {
			return err
		}
	}
	return sw.Close()
}

// readRows reads a tensor from the GGUF with one range read and hands fn
// its values dequantized, in blocks of whole rows (of whole heads when the
// rows are permuted), reusing *buf.
func (p *Plan) readRows(ctx context.Context, src store.Store, key string, t *Tensor, fn func(first int64, rows []float32) error, buf *[]float32) error {
	rows, cols := t.Rows(), t.Cols()
	rowBytes := t.Size / rows
	unit := int64(1)
	if t.PermuteHeadDim > 0 {
		unit = int64(t.PermuteHeadDim)
	}
	per := max(unit, blockBytes/(4*cols)/unit*unit)
	rc, err := src.GetRange(ctx, key, t.Offset, t.Size)
	if err != nil {
		return fmt.Errorf("%s: tensor %q: %w", p.Source, t.GGUF, err)
	}
	defer rc.Close()
	raw := make([]byte, min(per, rows)*rowBytes)
	for first := int64(0); first < rows; first += per {
		n := min(per, rows-first)
		b := raw[:n*rowBytes]
		if _, err := io.ReadFull(rc, b); err != nil {
			return fmt.Errorf("%s: tensor %q: read rows %d-%d: %w", p.Source, t.GGUF, first, first+n-1, err)
		}
		*buf = grow(*buf, int(n*cols))
		v := (*buf)[:n*cols]
		if err := quant.Dequantize(t.Type, v, b, int(cols)); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", p.Source, t.GGUF, err)
		}
		if err := fn(first, v); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// unpermuteQK writes to dst the rows of src (whole heads of headDim rows of
// rowLen values, in llama.cpp's order) in Hugging Face's order: llama.cpp
// row r is Hugging Face row gguf.QKRowSource(r, headDim).
func unpermuteQK(dst, src []float32, rowLen, headDim int) {
	rows := len(src) / rowLen
	for r := 0; r < rows; r++ {
		h := gguf.QKRowSource(r, headDim)
		copy(dst[h*rowLen:(h+1)*rowLen], src[r*rowLen:(r+1)*rowLen])
	}
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func growBytes(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// Import reads the GGUF file key of src, checks and plans its import (see
// NewPlan) and writes the checkpoint into out. Nothing is written when the
// file or the output location is refused.
func Import(ctx context.Context, src store.Store, key string, out store.Store, opts Options) (*Plan, *Summary, error) {
	where := store.Describe(src, key)
	info, err := src.Stat(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("import: %w", err)
	}
	ra := store.NewReaderAt(ctx, src, key, info.Size, 0)
	f, err := gguf.Read(ra, info.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	p, err := NewPlan(f, ra, where, opts)
	if err != nil {
		return nil, nil, err
	}
	sum, err := p.Write(ctx, src, key, out, opts.Progress)
	if err != nil {
		return nil, nil, err
	}
	return p, sum, nil
}
