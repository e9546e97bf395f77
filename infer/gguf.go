package infer

import (
	"context"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/kernels"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/store"
)

// Quantized is a Linear held as ggml blocks: RowBlock dequantizes only the
// rows asked for, so a quantized model is never expanded to float32 whole,
// and the integer kernels of matMul read the blocks directly.
type Quantized struct {
	typ        quant.Type
	rows, cols int
	rowBytes   int
	data       []byte
}

// NewQuantized wraps the bytes of a [rows, cols] tensor of type typ.
func NewQuantized(typ quant.Type, rows, cols int, data []byte) (*Quantized, error) {
	rb, err := typ.RowSize(cols)
	if err != nil {
		return nil, err
	}
	if rows <= 0 || len(data) != rows*rb {
		return nil, fmt.Errorf("infer: %s weight of shape [%d %d] needs %d bytes, has %d", typ, rows, cols, rows*rb, len(data))
	}
	return &Quantized{typ: typ, rows: rows, cols: cols, rowBytes: rb, data: data}, nil
}

// Rows is the number of output features.
func (q *Quantized) Rows() int { return q.rows }

// Cols is the number of input features.
func (q *Quantized) Cols() int { return q.cols }

// Type is the ggml type of the blocks.
func (q *Quantized) Type() quant.Type { return q.typ }

// RowBlock dequantizes rows [first, first+n) into buf.
func (q *Quantized) RowBlock(first, n int, buf []float32) ([]float32, error) {
	if first < 0 || n < 0 || first+n > q.rows {
		return nil, fmt.Errorf("infer: rows [%d, %d) out of range of a [%d %d] weight", first, first+n, q.rows, q.cols)
	}
	out := buf[:n*q.cols]
	src := q.data[first*q.rowBytes : (first+n)*q.rowBytes]
	switch {
	case q.typ == quant.F16:
		// The same values as quant.Dequantize, with F16C where available.
		if err := kernels.HalfRow(out, src); err != nil {
			return nil, err
		}
	case q.typ == quant.F32 && littleEndian:
		copy(out, unsafe.Slice((*float32)(unsafe.Pointer(&src[0])), len(out)))
	default:
		if err := quant.Dequantize(q.typ, out, src, q.cols); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// littleEndian is whether float32 bytes can be read in place.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// LoadGGUF reads a GGUF file from a store and builds a model whose linear
// weights stay quantized (see Quantized); vectors are F32. Query and key
// rows are mapped back from llama.cpp's order for the llama architecture.
func LoadGGUF(ctx context.Context, s store.Store, key string, opts Options) (*Model, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("load GGUF: %w", err)
	}
	ra := store.NewReaderAt(ctx, s, key, info.Size, 0)
	f, err := gguf.Read(ra, info.Size)
	if err != nil {
		return nil, fmt.Errorf("load GGUF %s: %w", store.Describe(s, key), err)
	}
	cfg, err := gguf.LlamaConfig(f, ra)
	if err != nil {
		return nil, fmt.Errorf("load GGUF %s: %w", store.Describe(s, key), err)
	}
	where := store.Describe(s, key)
	permute := cfg.ModelType == "llama"
	read := func(role model.Role, layer int, bias bool) (*gguf.TensorInfo, []byte, error) {
		name, err := gguf.TensorName(role, layer, bias)
		if err != nil {
			return nil, nil, err
		}
		ti, ok := f.Tensor(name)
		if !ok {
			return nil, nil, fmt.Errorf("load GGUF %s: no tensor %s", where, name)
		}
		b, err := f.ReadTensor(ra, name)
		if err != nil {
			return nil, nil, fmt.Errorf("load GGUF %s: %w", where, err)
		}
		return ti, b, nil
	}
	vec := func(role model.Role, layer int, bias bool) ([]float32, error) {
		ti, b, err := read(role, layer, bias)
		if err != nil {
			return nil, err
		}
		v := make([]float32, ti.NumElements())
		if err := quant.Dequantize(quant.Type(ti.Type), v, b, len(v)); err != nil {
			return nil, fmt.Errorf("load GGUF %s: tensor %s: %w", where, ti.Name, err)
		}
		if permute && bias && (role == model.RoleQ || role == model.RoleK) {
			v = unpermute(v, 1, cfg.HeadDim)
		}
		return v, nil
	}
	lin := func(role model.Role, layer int) (Linear, error) {
		ti, b, err := read(role, layer, false)
		if err != nil {
			return nil, err
		}
		if len(ti.Dims) != 2 {
			return nil, fmt.Errorf("load GGUF %s: tensor %s has %d dimensions", where, ti.Name, len(ti.Dims))
		}
		q, err := NewQuantized(quant.Type(ti.Type), int(ti.Dims[1]), int(ti.Dims[0]), b)
		if err != nil {
			return nil, fmt.Errorf("load GGUF %s: tensor %s: %w", where, ti.Name, err)
		}
		if permute && (role == model.RoleQ || role == model.RoleK) {
			// Stored row r is Hugging Face row QKRowSource(r): put the
			// blocks back in Hugging Face order once, at load.
			hf := make([]byte, len(q.data))
			for r := range q.rows {
				h := gguf.QKRowSource(r, cfg.HeadDim)
				copy(hf[h*q.rowBytes:(h+1)*q.rowBytes], q.data[r*q.rowBytes:(r+1)*q.rowBytes])
			}
			q.data = hf
		}
		return q, nil
	}
	w := &Weights{Layers: make([]Layer, cfg.NumLayers)}
	if w.Embed, err = lin(model.RoleEmbed, -1); err != nil {
		return nil, err
	}
	if w.FinalNorm, err = vec(model.RoleFinalNorm, -1, false); err != nil {
		return nil, err
	}
	if cfg.TieWordEmbeddings {
		w.LMHead = w.Embed
	} else if w.LMHead, err = lin(model.RoleLMHead, -1); err != nil {
		return nil, err
	}
	for l := range w.Layers {
		L := &w.Layers[l]
		for _, v := range []struct {
			dst  *[]float32
			role model.Role
			bias bool
			want bool
		}{
			{&L.AttnNorm, model.RoleAttnNorm, false, true}, {&L.MLPNorm, model.RoleMLPNorm, false, true},
			{&L.QBias, model.RoleQ, true, cfg.AttentionBias}, {&L.KBias, model.RoleK, true, cfg.AttentionBias},
			{&L.VBias, model.RoleV, true, cfg.AttentionBias},
			{&L.QNorm, model.RoleQNorm, false, cfg.QKNorm}, {&L.KNorm, model.RoleKNorm, false, cfg.QKNorm},
		} {
			if v.want {
				if *v.dst, err = vec(v.role, l, v.bias); err != nil {
					return nil, err
				}
			}
		}
		for _, m := range []struct {
			dst  *Linear
			role model.Role
		}{{&L.Q, model.RoleQ}, {&L.K, model.RoleK}, {&L.V, model.RoleV}, {&L.O, model.RoleO},
			{&L.Gate, model.RoleGate}, {&L.Up, model.RoleUp}, {&L.Down, model.RoleDown}} {
			if *m.dst, err = lin(m.role, l); err != nil {
				return nil, err
			}
		}
	}
	return NewModel(cfg, w, opts)
}

// unpermute maps values stored in llama.cpp's q/k row order back to
// Hugging Face's.
func unpermute(v []float32, rowLen, headDim int) []float32 {
	out := make([]float32, len(v))
	rows := len(v) / rowLen
	for r := 0; r < rows; r++ {
		s := gguf.QKRowSource(r, headDim)
		copy(out[s*rowLen:(s+1)*rowLen], v[r*rowLen:(r+1)*rowLen])
	}
	return out
}
