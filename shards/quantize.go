package shards

import (
	"context"
	"fmt"
	"math"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/rotate"
)

// TensorResult is what was done to one tensor and what it cost, measured.
type TensorResult struct {
	Tensor        string  `json:"tensor"`    // Hugging Face name ("lm_head.weight" also for an untied head)
	GGUFName      string  `json:"gguf_name"` // llama.cpp name; the shard object's entry name
	Role          string  `json:"role"`
	Layer         int     `json:"layer"`
	Shape         []int64 `json:"shape"` // Hugging Face order [rows, cols]
	SourceDType   string  `json:"source_dtype"`
	RequestedType string  `json:"requested_type"`
	OutputType    string  `json:"output_type"`
	Bytes         int64   `json:"bytes"`
	SourceBytes   int64   `json:"source_bytes"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	// RMSE and RelError compare the dequantized tensor with what was
	// quantized (the rotated, permuted weights when a rotation is on).
	RMSE     float64 `json:"rmse"`
	RelError float64 `json:"rel_error"`
	CRC32C   uint32  `json:"crc32c"`
	Offset   int64   `json:"offset"`
	// ZeroFrac and TritEntropy describe the trits of a ternary (TQ1_0,
	// TQ2_0) tensor: the fraction of zeros and the empirical entropy of the
	// trit stream in bits per weight (the floor for any lossless coder of
	// it, at most log2 3). Omitted for the other types.
	ZeroFrac    float64 `json:"zero_frac,omitempty"`
	TritEntropy float64 `json:"trit_entropy,omitempty"`
}

// Output is an encoded shard and its per-tensor results.
type Output struct {
	Shard   Shard
	Object  *Encoded
	Tensors []TensorResult
}

// Progress is told when a tensor of a shard is done.
type Progress func(tensor string, done, total int)

// InputError is bad input (a tensor that cannot be processed as asked): a
// retry will not help. It names the file and the tensor.
type InputError struct {
	File, Tensor string
	Err          error
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s: tensor %q: %v", e.File, e.Tensor, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// Quantize runs one shard through the pipeline: read each tensor with one
// range read, fold norms and rotate (if the recipe rotates), reorder q/k rows
// for llama.cpp, quantize to the recipe's type (or the first fallback that
// fits the row length), measure the error, and encode the shard object.
func Quantize(ctx context.Context, ck *model.Checkpoint, s Shard, r Recipe, progress Progress) (*Output, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	cfg := ck.Config
	jobs, err := shardJobs(ck, s, r)
	if err != nil {
		return nil, err
	}
	out := &Output{Shard: s}
	var tensors []Tensor
	for i, j := range jobs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vals, err := ck.ReadFloat32(ctx, j.src.Name)
		if err != nil {
			return nil, err
		}
		if err := j.transform(ctx, ck, vals, r); err != nil {
			return nil, &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
		}
		if j.permute && gguf.NeedsQKPermute(cfg) {
			perm := make([]float32, len(vals))
			if err := gguf.PermuteQK(perm, vals, int(j.cols), cfg.HeadDim); err != nil {
				return nil, &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
			}
			vals = perm
		}
		res, typ, data, err := quantizeTensor(vals, j, r)
		if err != nil {
			return nil, &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
		}
		out.Tensors = append(out.Tensors, res)
		tensors = append(tensors, Tensor{TensorEntry: TensorEntry{Name: res.GGUFName, Type: uint32(typ), Dims: dimsOf(res.Shape)}, Data: data})
		if progress != nil {
			progress(j.name, i+1, len(jobs))
		}
	}
	enc, err := Encode(tensors, r.Compress)
	if err != nil {
		return nil, err
	}
	for i := range out.Tensors {
		out.Tensors[i].Offset = int64(enc.Tensors[i].Offset)
		out.Tensors[i].CRC32C = enc.Tensors[i].CRC32C
	}
	out.Object = enc
	return out, nil
}

// job is one output tensor of a shard.
type job struct {
	tiedHead   bool   // the embedding doubles as lm_head
	name       string // Hugging Face name of the output
	src        *model.Tensor
	role       model.Role
	layer      int
	bias       bool
	rows, cols int64
	permute    bool // q/k rows (or bias) to llama.cpp order
	kind       rotate.Kind
	rotates    bool
	normName   string // norm folded in (q, k, v, gate, up, lm_head)
	unitNorm   bool   // a norm that the rotation folded away: write ones
	vBiasOf    bool   // v bias: rotated with the head rotation
}

var roleKinds = map[model.Role]rotate.Kind{
	model.RoleEmbed: rotate.KindEmbed, model.RoleQ: rotate.KindQ, model.RoleK: rotate.KindK, model.RoleV: rotate.KindV,
	model.RoleO: rotate.KindO, model.RoleGate: rotate.KindGate, model.RoleUp: rotate.KindUp, model.RoleDown: rotate.KindDown,
	model.RoleLMHead: rotate.KindLMHead,
}

func shardJobs(ck *model.Checkpoint, s Shard, r Recipe) ([]job, error) {
	cfg := ck.Config
	rot := r.Rotation.Enabled()
	var jobs []job
	add := func(name string, t *model.Tensor, role model.Role, layer int, bias bool) {
		j := job{name: name, src: t, role: role, layer: layer, bias: bias, rows: t.Rows(), cols: t.Cols()}
		j.tiedHead = role == model.RoleEmbed && cfg.TieWordEmbeddings && !rot
		if bias {
			j.rows, j.cols = t.NumElements(), 1
		}
		j.permute = (role == model.RoleQ || role == model.RoleK)
		if rot {
			switch {
			case role == model.RoleAttnNorm || role == model.RoleMLPNorm || role == model.RoleFinalNorm:
				j.unitNorm = true
			case bias:
				j.vBiasOf = role == model.RoleV && r.Rotation.Heads
			default:
				if k, ok := roleKinds[role]; ok {
					j.kind, j.rotates = k, true
					switch role {
					case model.RoleQ, model.RoleK, model.RoleV:
						j.normName = model.TensorName(model.RoleAttnNorm, layer, false)
					case model.RoleGate, model.RoleUp:
						j.normName = model.TensorName(model.RoleMLPNorm, layer, false)
					case model.RoleLMHead:
						j.normName = model.TensorName(model.RoleFinalNorm, -1, false)
					}
				}
			}
		}
		jobs = append(jobs, j)
	}
	for _, name := range s.Tensors {
		t, ok := ck.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("shard %s: tensor %q is not in %s", s.Name, name, ck.Store.Location())
		}
		add(name, t, t.Role, t.Layer, t.Bias)
	}
	// A rotation unties a tied head: lm_head = rotated copy of the embedding
	// with the final norm folded in.
	if s.Name == "head" && rot && cfg.TieWordEmbeddings {
		if _, ok := ck.Tensor(model.TensorName(model.RoleLMHead, -1, false)); !ok {
			e, _ := ck.Tensor(model.TensorName(model.RoleEmbed, -1, false))
			add(model.TensorName(model.RoleLMHead, -1, false), e, model.RoleLMHead, -1, false)
		}
	}
	return jobs, nil
}

// transform applies the rotation plan to one tensor's values in place.
func (j *job) transform(ctx context.Context, ck *model.Checkpoint, vals []float32, r Recipe) error {
	switch {
	case j.unitNorm:
		for i := range vals {
			vals[i] = 1
		}
		return nil
	case j.vBiasOf:
		return rotate.RotateVBias(vals, r.Rotation.Seed, headOpts(ck.Config, r))
	case !j.rotates:
		return nil
	}
	var norm []float32
	if j.normName != "" {
		var err error
		if norm, err = ck.ReadFloat32(ctx, j.normName); err != nil {
			return err
		}
	}
	m := &rotate.Matrix{Rows: int(j.rows), Cols: int(j.cols), Data: vals}
	return rotate.RotateTensor(j.kind, m, norm, nil, r.Rotation.Seed, headOpts(ck.Config, r))
}

func headOpts(cfg *model.Config, r Recipe) rotate.Options {
	return rotate.Options{HeadRotation: r.Rotation.Heads, NumHeads: cfg.NumHeads, NumKVHeads: cfg.NumKVHeads}
}

// quantizeTensor encodes values to the recipe's type (or its fallback) and
// measures the error by decoding them again. A ternary output type under a
// BitNet recipe gets BitNet b1.58's quantization (one absmean scale for the
// tensor, quant.QuantizeBitNet); otherwise an Optimized recipe uses
// quant.Quantize (same layout, lower error) and the others
// quant.QuantizeRef.
func quantizeTensor(vals []float32, j job, r Recipe) (TensorResult, quant.Type, []byte, error) {
	req := r.TypeFor(j.role, j.bias, j.tiedHead)
	typ, err := quant.FitType(req, int(j.cols))
	if err != nil {
		return TensorResult{}, 0, nil, err
	}
	rowBytes, err := typ.RowSize(int(j.cols))
	if err != nil {
		return TensorResult{}, 0, nil, err
	}
	data := make([]byte, int64(rowBytes)*j.rows)
	ternary := typ == quant.TQ1_0 || typ == quant.TQ2_0
	var bitnetScale float32
	switch {
	case r.BitNet && ternary:
		bitnetScale = quant.BitNetScale(vals)
		err = quant.QuantizeBitNet(typ, data, vals, int(j.cols), bitnetScale)
	case r.Optimized:
		err = quant.Quantize(typ, data, vals, int(j.cols), nil)
	default:
		err = quant.QuantizeRef(typ, data, vals, int(j.cols))
	}
	if err != nil {
		return TensorResult{}, 0, nil, err
	}
	back := make([]float32, len(vals))
	if err := quant.Dequantize(typ, back, data, int(j.cols)); err != nil {
		return TensorResult{}, 0, nil, err
	}
	var se, ss float64
	for i, v := range vals {
		d := float64(back[i]) - float64(v)
		se += d * d
		ss += float64(v) * float64(v)
	}
	n := float64(len(vals))
	res := TensorResult{
		Tensor: j.name, Role: j.role.String(), Layer: j.layer, Shape: []int64{j.rows, j.cols},
		SourceDType: j.src.DType.String(), RequestedType: req.String(), OutputType: typ.String(),
		Bytes: int64(len(data)), SourceBytes: j.rows * j.cols * int64(j.src.DType.Size()),
		BitsPerWeight: float64(len(data)) * 8 / n, RMSE: math.Sqrt(se / n),
	}
	if ss > 0 {
		res.RelError = math.Sqrt(se / ss)
	}
	switch {
	case r.BitNet && ternary:
		res.ZeroFrac, res.TritEntropy = quant.TritStats(vals, bitnetScale)
	case ternary:
		res.ZeroFrac, res.TritEntropy = decodedTritStats(back)
	}
	if j.bias || len(j.src.Shape) == 1 {
		res.Shape = []int64{j.rows * j.cols}
	}
	res.GGUFName, err = gguf.TensorName(j.role, j.layer, j.bias)
	if err != nil {
		return TensorResult{}, 0, nil, err
	}
	return res, typ, data, nil
}

// decodedTritStats is quant.TritStats for ternary weights that have one
// scale per block (the reference and optimised TQ quantizers): the trit of
// a decoded value d·t is its sign, as every block's d is non-negative.
func decodedTritStats(back []float32) (zeroFrac, entropyBits float64) {
	if len(back) == 0 {
		return 0, 0
	}
	var counts [3]int
	for _, v := range back {
		switch {
		case v > 0:
			counts[2]++
		case v < 0:
			counts[0]++
		default:
			counts[1]++
		}
	}
	n := float64(len(back))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			entropyBits -= p * math.Log2(p)
		}
	}
	return float64(counts[1]) / n, entropyBits
}

func dimsOf(shape []int64) []uint64 {
	d := make([]uint64, len(shape))
	for i, v := range shape {
		d[i] = uint64(v)
	}
	return d
}
