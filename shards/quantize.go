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
	Object  *Object
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
	return QuantizeWeighted(ctx, ck, s, r, nil, progress)
}

// QuantizeWeighted is Quantize with an importance matrix: each weight with
// an entry in imp (by GGUF name) is quantized with quant.QuantizeRefWeighted,
// or quant.Quantize given the importance when the recipe is Optimized, as
// llama-quantize --imatrix does; BitNet's ternary quantization ignores it.
// A recipe that names an importance matrix (r.Imatrix) needs imp, and imp
// needs such a recipe (its presets choose types by has_imatrix).
func QuantizeWeighted(ctx context.Context, ck *model.Checkpoint, s Shard, r Recipe, imp Importance, progress Progress) (*Output, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if (r.Imatrix != nil) != (imp != nil) {
		return nil, fmt.Errorf("shard %s: the recipe names an importance matrix (%v) but %d weights have importance: give both or neither", s.Name, r.Imatrix != nil, len(imp))
	}
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
		res, typ, data, err := j.run(ctx, ck, r, imp, blockBytes, false)
		if err != nil {
			return nil, err
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
		if err := rotate.RotateVBias(vals, r.Rotation.Seed, headOpts(ck.Config, r)); err != nil {
			return &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
		}
		return nil
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
	if err := rotate.RotateTensor(j.kind, m, norm, nil, r.Rotation.Seed, headOpts(ck.Config, r)); err != nil {
		return &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
	}
	return nil
}

func headOpts(cfg *model.Config, r Recipe) rotate.Options {
	return rotate.Options{HeadRotation: r.Rotation.Heads, NumHeads: cfg.NumHeads, NumKVHeads: cfg.NumKVHeads}
}

// blockBytes is about how much source data a streamed tensor holds in
// memory at once.
const blockBytes = 16 << 20

// rowLocal reports whether every transform of the job works on rows
// independently (in groups of headDim rows for the q/k permutation), so the
// tensor can be streamed in row blocks: everything but o/down under a
// rotation (Qᵀ·W mixes rows) and v under the per-head rotation.
func (j *job) rowLocal(r Recipe) bool {
	if j.unitNorm || j.vBiasOf || j.bias || j.rows <= 1 {
		return false
	}
	if !j.rotates {
		return true
	}
	switch j.kind {
	case rotate.KindO, rotate.KindDown:
		return false
	case rotate.KindV:
		return !r.Rotation.Heads
	}
	return true
}

// run reads, transforms and quantizes one tensor. Row-local tensors (the
// large ones: embeddings, lm_head, most projections) are streamed in row
// blocks, so memory stays near one block plus the quantized bytes whatever
// the tensor's size; the others are transformed whole. Errors of the
// transform and the codec are *InputError; read errors are the store's.
// block is the streaming block size in source bytes; whole forces the
// whole-tensor path (tests compare the two).
func (j *job) run(ctx context.Context, ck *model.Checkpoint, r Recipe, imp Importance, block int64, whole bool) (TensorResult, quant.Type, []byte, error) {
	cfg := ck.Config
	bad := func(err error) error { return &InputError{File: j.src.File, Tensor: j.src.Name, Err: err} }
	fail := func(err error) (TensorResult, quant.Type, []byte, error) { return TensorResult{}, 0, nil, err }
	q, err := newTensorQuant(cfg, j, r)
	if err != nil {
		return fail(bad(err))
	}
	if q.imp, err = j.importance(imp); err != nil {
		return fail(bad(err))
	}
	permute := j.permute && gguf.NeedsQKPermute(cfg)
	if whole || !j.rowLocal(r) {
		vals, err := ck.ReadFloat32(ctx, j.src.Name)
		if err != nil {
			return fail(err)
		}
		if err := j.transform(ctx, ck, vals, r); err != nil {
			return fail(err)
		}
		if permute {
			perm := make([]float32, len(vals))
			if err := gguf.PermuteQK(perm, vals, int(j.cols), cfg.HeadDim); err != nil {
				return fail(bad(err))
			}
			vals = perm
		}
		if q.bitnet {
			q.scale = quant.BitNetScale(vals)
		}
		if err := q.add(0, vals); err != nil {
			return fail(bad(err))
		}
		res, typ, data, err := q.finish(j)
		if err != nil {
			return fail(bad(err))
		}
		return res, typ, data, nil
	}
	var norm []float32
	if j.rotates && j.normName != "" {
		if norm, err = ck.ReadFloat32(ctx, j.normName); err != nil {
			return fail(err)
		}
	}
	rowBytes := j.cols * int64(j.src.DType.Size())
	group := int64(1)
	if permute {
		group = int64(cfg.HeadDim)
	}
	rowsPer := max(group, block/max(rowBytes, 1)/group*group)
	var perm []float32
	// prepare transforms a block of source rows in place and returns the
	// values to quantize.
	prepare := func(rows []float32) ([]float32, error) {
		n := len(rows) / int(j.cols)
		if j.rotates {
			m := &rotate.Matrix{Rows: n, Cols: int(j.cols), Data: rows}
			if err := rotate.RotateTensor(j.kind, m, norm, nil, r.Rotation.Seed, headOpts(cfg, r)); err != nil {
				return nil, bad(err)
			}
		}
		if !permute {
			return rows, nil
		}
		if cap(perm) < len(rows) {
			perm = make([]float32, len(rows))
		}
		if err := gguf.PermuteQK(perm[:len(rows)], rows, int(j.cols), cfg.HeadDim); err != nil {
			return nil, bad(err)
		}
		return perm[:len(rows)], nil
	}
	if q.bitnet {
		// BitNet's scale is the mean |W| of the whole (transformed) tensor:
		// one streaming pass for it, one to quantize.
		var sum float64
		var n int64
		err := ck.StreamRows(ctx, j.src.Name, rowsPer*rowBytes, func(_ int64, rows []float32) error {
			v, err := prepare(rows)
			for _, x := range v {
				sum += math.Abs(float64(x))
			}
			n += int64(len(v))
			return err
		})
		if err != nil {
			return fail(err)
		}
		if n > 0 {
			q.scale = float32(sum / float64(n))
		}
	}
	err = ck.StreamRows(ctx, j.src.Name, rowsPer*rowBytes, func(first int64, rows []float32) error {
		v, err := prepare(rows)
		if err != nil {
			return err
		}
		if err := q.add(first, v); err != nil {
			return bad(err)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	res, typ, data, err := q.finish(j)
	if err != nil {
		return fail(bad(err))
	}
	return res, typ, data, nil
}

// tensorQuant quantizes a tensor block by block into its final bytes and
// accumulates the error of the decoded values.
type tensorQuant struct {
	req, typ quant.Type
	cols     int
	rowBytes int
	data     []byte
	r        Recipe
	bitnet   bool
	scale    float32 // BitNet's per-tensor scale
	back     []float32
	se, ss   float64
	n        int64
	trits    [3]int64
	imp      []float32 // per-column importance, nil for none
}

// importance is the job's entry of imp: none for a bias, a norm or the
// token embedding (a tied head included, as llama.cpp looks it up by the
// embedding's name).
func (j *job) importance(imp Importance) ([]float32, error) {
	if imp == nil || j.bias || j.role.IsNorm() || j.role == model.RoleEmbed {
		return nil, nil
	}
	name, err := gguf.TensorName(j.role, j.layer, false)
	if err != nil {
		return nil, err
	}
	v, ok := imp[name]
	if !ok {
		return nil, nil
	}
	if len(v) != int(j.cols) {
		return nil, fmt.Errorf("importance of %s has %d columns, the weight %d", name, len(v), j.cols)
	}
	return v, nil
}

// slot is the job as the recipe's type choice sees it.
func (j *job) slot() Slot {
	return Slot{Role: j.role, Layer: j.layer, Bias: j.bias, Cols: int(j.cols), Tied: j.tiedHead}
}

// TensorType is the type a recipe gives one tensor of a plan.
type TensorType struct {
	GGUFName  string     `json:"gguf_name"`
	Requested quant.Type `json:"requested"`
	Output    quant.Type `json:"output"` // after the fallback for rows Requested cannot hold
}

// Types lists the type of every tensor the plan's shards write under the
// recipe, in plan order, without reading any tensor data: what Quantize
// will write.
func (p *Plan) Types(ck *model.Checkpoint, r Recipe) ([]TensorType, error) {
	return p.types(ck, r, r.Imatrix != nil)
}

// types is Types with llama.cpp's has_imatrix: whether an importance matrix
// is given, which changes the choice of some presets.
func (p *Plan) types(ck *model.Checkpoint, r Recipe, imatrix bool) ([]TensorType, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var out []TensorType
	for _, s := range p.Shards {
		jobs, err := shardJobs(ck, s, r)
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			req := r.typeFor(ck.Config, j.slot(), imatrix)
			typ, err := quant.FitType(req, int(j.cols))
			if err != nil {
				return nil, &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
			}
			name, err := gguf.TensorName(j.role, j.layer, j.bias)
			if err != nil {
				return nil, err
			}
			out = append(out, TensorType{GGUFName: name, Requested: req, Output: typ})
		}
	}
	return out, nil
}

func newTensorQuant(cfg *model.Config, j *job, r Recipe) (*tensorQuant, error) {
	req := r.TypeFor(cfg, j.slot())
	typ, err := r.OutputType(cfg, j.slot())
	if err != nil {
		return nil, err
	}
	rowBytes, err := typ.RowSize(int(j.cols))
	if err != nil {
		return nil, err
	}
	ternary := typ == quant.TQ1_0 || typ == quant.TQ2_0
	return &tensorQuant{req: req, typ: typ, cols: int(j.cols), rowBytes: rowBytes, r: r,
		data: make([]byte, int64(rowBytes)*j.rows), bitnet: r.BitNet && ternary}, nil
}

// add quantizes whole rows starting at row first. A ternary output type
// under a BitNet recipe gets BitNet b1.58's quantization (the tensor's
// absmean scale, quant.QuantizeBitNet); otherwise an Optimized recipe uses
// quant.Quantize (same layout, lower error) and the others
// quant.QuantizeRefWeighted (quant.QuantizeRef without an importance),
// both given the tensor's importance if it has one.
func (q *tensorQuant) add(first int64, vals []float32) error {
	rows := len(vals) / q.cols
	dst := q.data[first*int64(q.rowBytes) : (first+int64(rows))*int64(q.rowBytes)]
	var err error
	switch {
	case q.bitnet:
		err = quant.QuantizeBitNet(q.typ, dst, vals, q.cols, q.scale)
	case q.r.Optimized:
		err = quant.Quantize(q.typ, dst, vals, q.cols, q.imp)
	default:
		err = quant.QuantizeRefWeighted(q.typ, dst, vals, q.cols, q.imp)
	}
	if err != nil {
		return err
	}
	if cap(q.back) < len(vals) {
		q.back = make([]float32, len(vals))
	}
	back := q.back[:len(vals)]
	if err := quant.Dequantize(q.typ, back, dst, q.cols); err != nil {
		return err
	}
	for i, v := range vals {
		d := float64(back[i]) - float64(v)
		q.se += d * d
		q.ss += float64(v) * float64(v)
	}
	q.n += int64(len(vals))
	if q.typ == quant.TQ1_0 || q.typ == quant.TQ2_0 {
		// The trit of a decoded value d·t is its sign (every block's d ≥ 0).
		for _, v := range back {
			switch {
			case v > 0:
				q.trits[2]++
			case v < 0:
				q.trits[0]++
			default:
				q.trits[1]++
			}
		}
	}
	return nil
}

// finish measures the tensor's result.
func (q *tensorQuant) finish(j *job) (TensorResult, quant.Type, []byte, error) {
	n := float64(max(q.n, 1))
	res := TensorResult{
		Tensor: j.name, Role: j.role.String(), Layer: j.layer, Shape: []int64{j.rows, j.cols},
		SourceDType: j.src.DType.String(), RequestedType: q.req.String(), OutputType: q.typ.String(),
		Bytes: int64(len(q.data)), SourceBytes: j.rows * j.cols * int64(j.src.DType.Size()),
		BitsPerWeight: float64(len(q.data)) * 8 / n, RMSE: math.Sqrt(q.se / n),
	}
	if q.ss > 0 {
		res.RelError = math.Sqrt(q.se / q.ss)
	}
	if q.typ == quant.TQ1_0 || q.typ == quant.TQ2_0 {
		res.ZeroFrac, res.TritEntropy = tritStats(q.trits)
	}
	if j.bias || len(j.src.Shape) == 1 {
		res.Shape = []int64{j.rows * j.cols}
	}
	var err error
	if res.GGUFName, err = gguf.TensorName(j.role, j.layer, j.bias); err != nil {
		return TensorResult{}, 0, nil, err
	}
	return res, q.typ, q.data, nil
}

// tritStats is the fraction of zeros and the empirical entropy in bits per
// weight of a trit stream with the given counts of −1, 0 and 1.
func tritStats(counts [3]int64) (zeroFrac, entropyBits float64) {
	var n int64
	for _, c := range counts {
		n += c
	}
	if n == 0 {
		return 0, 0
	}
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(n)
			entropyBits -= p * math.Log2(p)
		}
	}
	return float64(counts[1]) / float64(n), entropyBits
}

func dimsOf(shape []int64) []uint64 {
	d := make([]uint64, len(shape))
	for i, v := range shape {
		d[i] = uint64(v)
	}
	return d
}
