package gguf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

// llama_ftype values of general.file_type for the float exports.
const (
	fileTypeAllF32     uint32 = 0
	fileTypeMostlyF16  uint32 = 1
	fileTypeMostlyBF16 uint32 = 32
)

// FloatModelPlan lays out the float GGUF export of a checkpoint: matrices
// (and the embedding) in typ (TypeF32, TypeF16 or TypeBF16), vectors in
// F32, metadata from the config and the checkpoint's tokenizer.json (and
// tokenizer_config.json when present), unless opts gives them.
// opts.FileType defaults to the type's llama_ftype.
func FloatModelPlan(ctx context.Context, ckpt *model.Checkpoint, typ uint32, opts LlamaOptions) (*Plan, []TensorSpec, error) {
	var ftype uint32
	switch typ {
	case TypeF32:
		ftype = fileTypeAllF32
	case TypeF16:
		ftype = fileTypeMostlyF16
	case TypeBF16:
		ftype = fileTypeMostlyBF16
	default:
		return nil, nil, fmt.Errorf("gguf: float export: type %s is not F32, F16 or BF16", TypeName(typ))
	}
	if opts.FileType == nil {
		opts.FileType = &ftype
	}
	if len(opts.Tokenizer) == 0 {
		b, err := store.ReadAll(ctx, ckpt.Store, model.TokenizerFile)
		if err != nil {
			return nil, nil, fmt.Errorf("gguf: float export: %w", err)
		}
		opts.Tokenizer = b
	}
	if len(opts.TokenizerConfig) == 0 {
		b, err := store.ReadAll(ctx, ckpt.Store, "tokenizer_config.json")
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, nil, fmt.Errorf("gguf: float export: %w", err)
		}
		opts.TokenizerConfig = b
	}
	md, err := LlamaMetadata(ckpt.Config, opts)
	if err != nil {
		return nil, nil, err
	}
	specs, err := LlamaTensors(ckpt.Config)
	if err != nil {
		return nil, nil, err
	}
	plan := &Plan{Metadata: md}
	for _, s := range specs {
		t := typ
		if s.Is1D() {
			t = TypeF32
		}
		if s.Source != "" {
			src, ok := ckpt.Tensor(s.Source)
			if !ok {
				return nil, nil, fmt.Errorf("gguf: float export: checkpoint has no tensor %q (for %q)", s.Source, s.Name)
			}
			if len(src.Shape) != len(s.Dims) {
				return nil, nil, fmt.Errorf("gguf: float export: tensor %q has shape %v, want %d dimensions", s.Source, src.Shape, len(s.Dims))
			}
		}
		info, err := NewTensorInfo(s.Name, t, s.Dims...)
		if err != nil {
			return nil, nil, fmt.Errorf("gguf: float export: %w", err)
		}
		plan.Tensors = append(plan.Tensors, info)
	}
	return plan, specs, nil
}

// WriteFloatModel writes the float GGUF export of a checkpoint (see
// FloatModelPlan) to w, one tensor in memory at a time: query and key rows
// are permuted to llama.cpp's layout, values converted to the tensor's
// type. It returns the number of bytes written.
func WriteFloatModel(ctx context.Context, ckpt *model.Checkpoint, w io.Writer, typ uint32, opts LlamaOptions) (int64, error) {
	plan, specs, err := FloatModelPlan(ctx, ckpt, typ, opts)
	if err != nil {
		return 0, err
	}
	gw, err := NewWriter(w, plan)
	if err != nil {
		return 0, err
	}
	var buf []byte
	for i, s := range specs {
		vals, err := SpecValues(ctx, ckpt, &s)
		if err != nil {
			return 0, err
		}
		t := gw.Tensors()[i]
		buf = EncodeFloat(buf[:0], vals, t.Type)
		if err := gw.WriteTensor(t.Name, buf); err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	if err := gw.Close(); err != nil {
		return 0, err
	}
	return gw.Size(), nil
}

// SpecValues reads the float32 values of an export tensor in llama.cpp's
// layout: the checkpoint tensor with query/key rows permuted when the spec
// says so, or the rope frequency factors.
func SpecValues(ctx context.Context, ckpt *model.Checkpoint, s *TensorSpec) ([]float32, error) {
	if s.Source == "" {
		if s.Name == RopeFreqsName {
			if f, ok := RopeFreqs(ckpt.Config); ok {
				return f, nil
			}
		}
		return nil, fmt.Errorf("gguf: tensor %q has no source", s.Name)
	}
	vals, err := ckpt.ReadFloat32(ctx, s.Source)
	if err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", s.Name, err)
	}
	if s.PermuteHeadDim > 0 {
		out := make([]float32, len(vals))
		if err := PermuteQK(out, vals, int(s.Dims[0]), s.PermuteHeadDim); err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", s.Name, err)
		}
		vals = out
	}
	return vals, nil
}

// EncodeFloat appends float32 values encoded as F32, F16 or BF16 (little
// endian) to dst. Other types panic: quantized types are package quant's.
func EncodeFloat(dst []byte, vals []float32, typ uint32) []byte {
	switch typ {
	case TypeF32:
		for _, v := range vals {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
	case TypeF16:
		for _, v := range vals {
			dst = binary.LittleEndian.AppendUint16(dst, safetensors.FloatToHalf(v))
		}
	case TypeBF16:
		for _, v := range vals {
			dst = binary.LittleEndian.AppendUint16(dst, safetensors.FloatToBF16(v))
		}
	default:
		panic("gguf: EncodeFloat of type " + TypeName(typ))
	}
	return dst
}
