package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

// File names of a Hugging Face checkpoint.
const (
	ConfigFile      = "config.json"
	SingleFile      = "model.safetensors"
	IndexFile       = "model.safetensors.index.json"
	TokenizerFile   = "tokenizer.json"
	headerProbeSize = 64 << 10
)

// ErrInvalid is matched (errors.Is) by every error of Open that comes from
// the checkpoint's content — a bad or missing config.json, index, header or
// tensor, a truncated file — as opposed to a fault of the store (network,
// permissions), which a retry may cure.
var ErrInvalid = errors.New("invalid checkpoint")

type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// invalid marks err as bad input unless it is a store fault.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	var se storeFault
	if errors.As(err, &se) {
		return err
	}
	return invalidError{err}
}

// storeFault marks an error of the store that is not about the content.
type storeFault struct{ err error }

func (e storeFault) Error() string { return e.err.Error() }
func (e storeFault) Unwrap() error { return e.err }

// classify wraps a store error: a missing object or a range beyond the end
// are the checkpoint's fault; anything else is the store's.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrRange) {
		return err
	}
	return storeFault{err}
}

// Tensor is one tensor of a checkpoint: where its bytes are and what it is.
type Tensor struct {
	Name  string            `json:"name"`
	File  string            `json:"file"`
	DType safetensors.DType `json:"dtype"`
	Shape []int64           `json:"shape"`
	// Offset is the absolute byte offset of the tensor in File.
	Offset int64 `json:"offset"`
	// Size is the tensor's length in bytes.
	Size  int64 `json:"bytes"`
	Role  Role  `json:"role"`
	Layer int   `json:"layer"`
	Bias  bool  `json:"bias,omitempty"`
}

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Rows and Cols view the tensor as a matrix: the first dimension by the
// product of the others (a vector is one row).
func (t *Tensor) Rows() int64 {
	if len(t.Shape) < 2 {
		return 1
	}
	return t.Shape[0]
}

// Cols is the row length of the tensor viewed as a matrix (see Rows).
func (t *Tensor) Cols() int64 {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.NumElements() / t.Rows()
}

// FileInfo describes one safetensors file of a checkpoint.
type FileInfo struct {
	Name     string            `json:"name"`
	Size     int64             `json:"bytes"`
	ETag     string            `json:"etag"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Checkpoint is an opened Hugging Face checkpoint: its config and the
// headers of its safetensors files, read once. Tensor data is read on demand
// with one range read per tensor.
type Checkpoint struct {
	Store   store.Store
	Config  *Config
	Files   []FileInfo
	Tensors []Tensor
	byName  map[string]int
}

// Open reads config.json and the safetensors headers (through
// model.safetensors.index.json when present) of the checkpoint in s, and
// checks every tensor against the config. Errors name the file and tensor.
func Open(ctx context.Context, s store.Store) (*Checkpoint, error) {
	c, err := open(ctx, s)
	return c, invalid(err)
}

func open(ctx context.Context, s store.Store) (*Checkpoint, error) {
	cfgBytes, err := store.ReadAll(ctx, s, ConfigFile)
	err = classify(err)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	cfg, err := ParseConfig(cfgBytes, store.Describe(s, ConfigFile))
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{Store: s, Config: cfg, byName: map[string]int{}}
	files, weightMap, err := c.listFiles(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := c.readHeader(ctx, f, weightMap); err != nil {
			return nil, err
		}
	}
	for name, f := range weightMap {
		if _, ok := c.byName[name]; !ok {
			return nil, fmt.Errorf("%s: tensor %q is listed for %s but that file does not hold it", store.Describe(s, IndexFile), name, f)
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// listFiles returns the safetensors files of the checkpoint and, for a
// sharded one, the index's tensor → file map.
func (c *Checkpoint) listFiles(ctx context.Context) ([]string, map[string]string, error) {
	idx, err := store.ReadAll(ctx, c.Store, IndexFile)
	err = classify(err)
	if errors.Is(err, store.ErrNotFound) {
		return []string{SingleFile}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open checkpoint: %w", err)
	}
	where := store.Describe(c.Store, IndexFile)
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(idx, &index); err != nil {
		return nil, nil, fmt.Errorf("%s: not a JSON index: %w", where, err)
	}
	if len(index.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("%s: weight_map is empty", where)
	}
	set := map[string]bool{}
	for name, f := range index.WeightMap {
		clean, err := store.CleanKey(f)
		if err != nil || path.IsAbs(f) || strings.Contains(f, "..") {
			return nil, nil, fmt.Errorf("%s: tensor %q: file %q leaves the model's location", where, name, f)
		}
		index.WeightMap[name] = clean
		set[clean] = true
	}
	files := make([]string, 0, len(set))
	for f := range set {
		files = append(files, f)
	}
	sort.Strings(files)
	return files, index.WeightMap, nil
}

// readHeader reads one safetensors header with at most two range reads and
// records its tensors.
func (c *Checkpoint) readHeader(ctx context.Context, file string, weightMap map[string]string) error {
	where := store.Describe(c.Store, file)
	info, err := c.Store.Stat(ctx, file)
	err = classify(err)
	if err != nil {
		if weightMap != nil && errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s names %s, which is missing: %w", store.Describe(c.Store, IndexFile), file, err)
		}
		return fmt.Errorf("open checkpoint: %w", err)
	}
	probe := min(info.Size, headerProbeSize)
	buf, err := store.ReadRange(ctx, c.Store, file, 0, probe)
	if err != nil {
		return classify(err)
	}
	n, err := safetensors.HeaderLength(buf, info.Size)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var hdr []byte
	if 8+n <= int64(len(buf)) {
		hdr = buf[8 : 8+n]
	} else if hdr, err = store.ReadRange(ctx, c.Store, file, 8, n); err != nil {
		return classify(err)
	}
	h, err := safetensors.ParseHeader(hdr, info.Size)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	c.Files = append(c.Files, FileInfo{Name: file, Size: info.Size, ETag: info.ETag, Metadata: h.Metadata})
	for _, ti := range h.Tensors {
		if prev, dup := c.byName[ti.Name]; dup {
			return fmt.Errorf("%s: tensor %q is also in %s", where, ti.Name, c.Tensors[prev].File)
		}
		if weightMap != nil && weightMap[ti.Name] != file {
			return fmt.Errorf("%s: tensor %q is not listed for this file in %s", where, ti.Name, IndexFile)
		}
		role, layer, bias := Classify(ti.Name)
		c.byName[ti.Name] = len(c.Tensors)
		c.Tensors = append(c.Tensors, Tensor{
			Name: ti.Name, File: file, DType: ti.DType, Shape: ti.Shape,
			Offset: h.DataStart + ti.Begin, Size: ti.End - ti.Begin,
			Role: role, Layer: layer, Bias: bias,
		})
	}
	return nil
}

// check verifies tensor shapes and layers against the config and that every
// tensor the architecture needs is present.
func (c *Checkpoint) check() error {
	cfg := c.Config
	for i := range c.Tensors {
		t := &c.Tensors[i]
		where := store.Describe(c.Store, t.File)
		if t.Role == RoleUnknown {
			continue // reported by inspect, ignored by the pipeline
		}
		if !t.DType.Float() {
			return fmt.Errorf("%s: tensor %q has dtype %s; adaptq reads weights in F32, F16 or BF16 only", where, t.Name, t.DType)
		}
		if t.Layer >= cfg.NumLayers {
			return fmt.Errorf("%s: tensor %q: layer %d but config has %d layers", where, t.Name, t.Layer, cfg.NumLayers)
		}
		if want := cfg.ExpectedShape(t.Role, t.Bias); !slices.Equal(want, t.Shape) {
			return fmt.Errorf("%s: tensor %q: shape %v, config.json implies %v", where, t.Name, t.Shape, want)
		}
	}
	for _, ref := range cfg.ExpectedTensors() {
		if _, ok := c.byName[ref.Name()]; !ok {
			return fmt.Errorf("%s: tensor %q (%s) is missing from the checkpoint", c.Store.Location(), ref.Name(), ref.Role)
		}
	}
	return nil
}

// Tensor looks a tensor up by name.
func (c *Checkpoint) Tensor(name string) (*Tensor, bool) {
	i, ok := c.byName[name]
	if !ok {
		return nil, false
	}
	return &c.Tensors[i], true
}

// Lookup returns the tensor of a role in a layer (layer -1 for embed,
// final_norm and lm_head). For a tied lm_head it returns the embedding.
func (c *Checkpoint) Lookup(role Role, layer int, bias bool) (*Tensor, bool) {
	if t, ok := c.Tensor(TensorName(role, layer, bias)); ok {
		return t, true
	}
	if role == RoleLMHead && !bias && c.Config.TieWordEmbeddings {
		return c.Tensor(TensorName(RoleEmbed, -1, false))
	}
	return nil, false
}

// NumParams is the number of parameters; tied embeddings count once.
func (c *Checkpoint) NumParams() int64 {
	var n int64
	for i := range c.Tensors {
		n += c.Tensors[i].NumElements()
	}
	return n
}

// SizeOnDisk is the total size of the safetensors files.
func (c *Checkpoint) SizeOnDisk() int64 {
	var n int64
	for _, f := range c.Files {
		n += f.Size
	}
	return n
}

func (c *Checkpoint) get(name string) (*Tensor, error) {
	t, ok := c.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", c.Store.Location(), name)
	}
	return t, nil
}

// ReadRaw reads a tensor's bytes with one range read of exactly its bytes.
func (c *Checkpoint) ReadRaw(ctx context.Context, name string) ([]byte, error) {
	t, err := c.get(name)
	if err != nil {
		return nil, err
	}
	b, err := store.ReadRange(ctx, c.Store, t.File, t.Offset, t.Size)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return b, nil
}

// ReadFloat32 reads a whole tensor as float32 values. Only F32, F16 and
// BF16 tensors can be read; for large tensors prefer StreamRows.
func (c *Checkpoint) ReadFloat32(ctx context.Context, name string) ([]float32, error) {
	t, err := c.get(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	err = c.StreamRows(ctx, name, 8<<20, func(first int64, rows []float32) error {
		copy(out[first*t.Cols():], rows)
		return nil
	})
	return out, err
}

// StreamRows reads a tensor with one range read and hands it to fn in
// blocks of whole rows converted to float32, using about maxBlockBytes of
// source bytes per block (at least one row). first is the index of the
// block's first row. The rows slice is reused between calls. Memory stays
// bounded by the block size whatever the tensor's size.
func (c *Checkpoint) StreamRows(ctx context.Context, name string, maxBlockBytes int64, fn func(first int64, rows []float32) error) error {
	t, err := c.get(name)
	if err != nil {
		return err
	}
	where := store.Describe(c.Store, t.File)
	if !t.DType.Float() {
		return fmt.Errorf("%s: tensor %q has dtype %s, which adaptq does not read (only F32, F16, BF16)", where, name, t.DType)
	}
	rowBytes := t.Cols() * int64(t.DType.Size())
	rowsPerBlock := max(1, maxBlockBytes/max(rowBytes, 1))
	rowsPerBlock = min(rowsPerBlock, max(t.Rows(), 1))
	rc, err := c.Store.GetRange(ctx, t.File, t.Offset, t.Size)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	defer rc.Close()
	buf := make([]byte, rowsPerBlock*rowBytes)
	vals := make([]float32, rowsPerBlock*t.Cols())
	for first := int64(0); first < t.Rows(); first += rowsPerBlock {
		n := min(rowsPerBlock, t.Rows()-first)
		b := buf[:n*rowBytes]
		if _, err := io.ReadFull(rc, b); err != nil {
			return fmt.Errorf("%s: tensor %q: read rows %d-%d: %w", where, name, first, first+n-1, err)
		}
		v := vals[:n*t.Cols()]
		if err := safetensors.DecodeFloat32(v, b, t.DType); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", where, name, err)
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

// Stats summarises a tensor's values.
type Stats struct {
	NaN, Inf int64
	Min, Max float32
	AbsMean  float64
	RMS      float64
}

// ScanStats streams a tensor and counts NaN and Inf values and their range.
func (c *Checkpoint) ScanStats(ctx context.Context, name string) (Stats, error) {
	s := Stats{Min: float32(math.Inf(1)), Max: float32(math.Inf(-1))}
	var n int64
	var sumAbs, sumSq float64
	err := c.StreamRows(ctx, name, 4<<20, func(_ int64, rows []float32) error {
		for _, v := range rows {
			switch {
			case v != v:
				s.NaN++
				continue
			case math.IsInf(float64(v), 0):
				s.Inf++
				continue
			}
			s.Min = min(s.Min, v)
			s.Max = max(s.Max, v)
			a := math.Abs(float64(v))
			sumAbs += a
			sumSq += a * a
			n++
		}
		return nil
	})
	if n > 0 {
		s.AbsMean = sumAbs / float64(n)
		s.RMS = math.Sqrt(sumSq / float64(n))
	}
	return s, err
}
