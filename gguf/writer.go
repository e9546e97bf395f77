package gguf

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	// Name is the llama.cpp tensor name ("blk.0.attn_q.weight").
	Name string
	// Dims are the GGUF dimensions: Dims[0] (ne[0]) is the row length, the
	// reverse of the Hugging Face / NumPy shape.
	Dims []uint64
	// Type is the ggml type id (TypeF32, TypeQ4_K, ...).
	Type uint32
	// Offset is the offset of the tensor's data from the start of the data
	// section (a multiple of the alignment). The Writer computes it.
	Offset uint64
	// Size is the tensor's data size in bytes. For the types package gguf
	// knows it must equal TensorBytes(Type, Dims); for other types it is
	// trusted.
	Size uint64
}

// NumElements is the product of the dimensions.
func (t *TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Plan is everything about a GGUF file except the tensor data: metadata and
// tensor infos in file order.
type Plan struct {
	Metadata Metadata
	Tensors  []TensorInfo
	// Alignment of the tensor data, a power of two from 8 to 1 MiB; 0
	// means DefaultAlignment. It is written
	// as general.alignment (uint32) unless the metadata already holds that
	// key with the same value.
	Alignment uint64
}

// NewTensorInfo returns the info of a tensor with a type package gguf knows,
// its Size computed from the type and dims.
func NewTensorInfo(name string, typ uint32, dims ...uint64) (TensorInfo, error) {
	n, err := TensorBytes(typ, dims)
	if err != nil {
		return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	return TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), Type: typ, Size: n}, nil
}

// Layout checks the plan and computes it: the header bytes (everything
// before the data section, padded to the alignment), the tensor infos with
// their offsets, and the total file size.
func (p *Plan) Layout() (header []byte, tensors []TensorInfo, fileSize uint64, err error) {
	alignment := p.Alignment
	if alignment == 0 {
		alignment = DefaultAlignment
	}
	if alignment < 8 || alignment > 1<<20 || alignment&(alignment-1) != 0 {
		return nil, nil, 0, fmt.Errorf("gguf plan: alignment %d must be a power of two from 8 to 1 MiB", alignment)
	}
	md := append(Metadata(nil), p.Metadata...)
	seen := make(map[string]bool, len(md))
	for _, kv := range md {
		if kv.Key == "" {
			return nil, nil, 0, errors.New("gguf plan: empty metadata key")
		}
		if seen[kv.Key] {
			return nil, nil, 0, fmt.Errorf("gguf plan: metadata key %q appears twice", kv.Key)
		}
		seen[kv.Key] = true
	}
	if v, ok := md.Get(KeyAlignment); ok {
		if a, isU32 := v.(uint32); !isU32 || uint64(a) != alignment {
			return nil, nil, 0, fmt.Errorf("gguf plan: metadata key %q is %v (%T), the plan's alignment is %d (uint32)", KeyAlignment, v, v, alignment)
		}
	} else {
		md = append(md, KV{KeyAlignment, uint32(alignment)})
	}

	tensors = make([]TensorInfo, len(p.Tensors))
	names := make(map[string]bool, len(p.Tensors))
	var off uint64
	for i, t := range p.Tensors {
		if err := checkTensorInfo(&t); err != nil {
			return nil, nil, 0, fmt.Errorf("gguf plan: %w", err)
		}
		if names[t.Name] {
			return nil, nil, 0, fmt.Errorf("gguf plan: tensor %q appears twice", t.Name)
		}
		names[t.Name] = true
		t.Dims = append([]uint64(nil), t.Dims...)
		t.Offset = off
		off = align(off+t.Size, alignment)
		if off > math.MaxInt64/2 {
			return nil, nil, 0, fmt.Errorf("gguf plan: tensor %q: data section too large", t.Name)
		}
		tensors[i] = t
	}

	e := &encoder{b: make([]byte, 0, 4096)}
	e.b = append(e.b, Magic...)
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(md)))
	for _, kv := range md {
		if err := e.kv(kv.Key, kv.Value); err != nil {
			return nil, nil, 0, fmt.Errorf("gguf plan: %w", err)
		}
	}
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(t.Type)
		e.u64(t.Offset)
	}
	for uint64(len(e.b))%alignment != 0 {
		e.b = append(e.b, 0)
	}
	return e.b, tensors, uint64(len(e.b)) + off, nil
}

// checkTensorInfo checks a tensor info of a plan (not its offset).
func checkTensorInfo(t *TensorInfo) error {
	if t.Name == "" {
		return errors.New("tensor with an empty name")
	}
	if len(t.Name) > MaxNameLen {
		return fmt.Errorf("tensor %q: name longer than %d bytes", t.Name, MaxNameLen)
	}
	if len(t.Dims) == 0 || len(t.Dims) > MaxDims {
		return fmt.Errorf("tensor %q: %d dimensions (want 1 to %d)", t.Name, len(t.Dims), MaxDims)
	}
	if _, known := traitsOf(t.Type); known {
		n, err := TensorBytes(t.Type, t.Dims)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if n != t.Size {
			return fmt.Errorf("tensor %q: size %d bytes, but %s %v takes %d", t.Name, t.Size, TypeName(t.Type), t.Dims, n)
		}
	} else if t.Size == 0 || t.Size > 1<<62 {
		return fmt.Errorf("tensor %q: size %d of unknown type %d out of range", t.Name, t.Size, t.Type)
	}
	return nil
}

// Writer streams a GGUF file. NewWriter writes the header (with every
// tensor's offset computed from the plan); then the tensors' data is written
// in plan order, either whole with WriteTensor or in pieces with
// BeginTensor and Write; Close checks that every tensor was written in full.
// Padding between tensors is inserted by the Writer. A Writer is not safe
// for concurrent use.
type Writer struct {
	w         io.Writer
	tensors   []TensorInfo
	alignment uint64
	size      uint64
	next      int    // index of the next tensor to begin
	cur       int    // index of the tensor being written, -1 if none
	left      uint64 // bytes still due for the current tensor
	written   uint64 // bytes written so far
	err       error  // sticky error
	closed    bool
	zeros     []byte // padding
}

// NewWriter checks and lays out the plan and writes the header to w.
func NewWriter(w io.Writer, p *Plan) (*Writer, error) {
	header, tensors, size, err := p.Layout()
	if err != nil {
		return nil, err
	}
	alignment := p.Alignment
	if alignment == 0 {
		alignment = DefaultAlignment
	}
	gw := &Writer{w: w, tensors: tensors, alignment: alignment, size: size, cur: -1, zeros: make([]byte, min(alignment, 4096))}
	if err := gw.raw(header); err != nil {
		return nil, fmt.Errorf("gguf: write header: %w", err)
	}
	return gw, nil
}

// Size is the size of the whole file in bytes, known before any data is
// written (useful for stores that want the object size up front).
func (w *Writer) Size() int64 { return int64(w.size) }

// Tensors returns the tensor infos with their offsets, in file order. The
// slice is the Writer's own: do not modify it.
func (w *Writer) Tensors() []TensorInfo { return w.tensors }

// Next returns the tensor that BeginTensor or WriteTensor expects next;
// ok is false when all tensors have begun.
func (w *Writer) Next() (t TensorInfo, ok bool) {
	if w.next >= len(w.tensors) {
		return TensorInfo{}, false
	}
	return w.tensors[w.next], true
}

func (w *Writer) raw(b []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.w.Write(b)
	w.written += uint64(n)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return err
}

// finish pads after the current tensor once its data is complete.
func (w *Writer) finish() error {
	t := w.tensors[w.cur]
	if w.left != 0 {
		return fmt.Errorf("gguf: tensor %q: %d of %d bytes written", t.Name, t.Size-w.left, t.Size)
	}
	pad := align(t.Size, w.alignment) - t.Size
	w.cur = -1
	if pad == 0 {
		return nil
	}
	for pad > 0 {
		n := min(pad, uint64(len(w.zeros)))
		clear(w.zeros[:n])
		if err := w.raw(w.zeros[:n]); err != nil {
			return fmt.Errorf("gguf: tensor %q: write padding: %w", t.Name, err)
		}
		pad -= n
	}
	return nil
}

// BeginTensor starts the data of the named tensor, which must be the next
// one of the plan; the previous tensor must be complete.
func (w *Writer) BeginTensor(name string) error {
	if w.closed {
		return fmt.Errorf("gguf: tensor %q: writer is closed", name)
	}
	if w.err != nil {
		return fmt.Errorf("gguf: tensor %q: earlier write failed: %w", name, w.err)
	}
	if w.cur >= 0 {
		if err := w.finish(); err != nil {
			return fmt.Errorf("%w; cannot begin tensor %q", err, name)
		}
	}
	if w.next >= len(w.tensors) {
		return fmt.Errorf("gguf: tensor %q: all %d tensors of the plan are written", name, len(w.tensors))
	}
	if want := w.tensors[w.next].Name; want != name {
		return fmt.Errorf("gguf: tensor %q written out of order: the plan's next tensor is %q", name, want)
	}
	w.cur = w.next
	w.next++
	w.left = w.tensors[w.cur].Size
	if w.left == 0 {
		return w.finish()
	}
	return nil
}

// Write writes data of the current tensor. Writing more bytes than remain
// of the tensor is an error (nothing of p is written then).
func (w *Writer) Write(p []byte) (int, error) {
	if w.cur < 0 {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, errors.New("gguf: Write without BeginTensor")
	}
	t := &w.tensors[w.cur]
	if uint64(len(p)) > w.left {
		return 0, fmt.Errorf("gguf: tensor %q: %d bytes written, %d more would exceed its %d bytes", t.Name, t.Size-w.left, len(p), t.Size)
	}
	if w.err != nil {
		return 0, fmt.Errorf("gguf: tensor %q: earlier write failed: %w", t.Name, w.err)
	}
	n, err := w.w.Write(p)
	w.written += uint64(n)
	w.left -= uint64(n)
	if err == nil && n != len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
		return n, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
	}
	if w.left == 0 {
		if err := w.finish(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// WriteTensor writes the whole data of the named tensor, which must be the
// next one of the plan; len(data) must equal the tensor's size.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if err := w.BeginTensor(name); err != nil {
		return err
	}
	if t := w.tensors[w.next-1]; uint64(len(data)) != t.Size {
		w.err = fmt.Errorf("gguf: tensor %q: %d bytes given, the plan says %d", name, len(data), t.Size)
		return w.err
	}
	if len(data) == 0 {
		return nil
	}
	_, err := w.Write(data)
	return err
}

// Close checks that every tensor of the plan was written in full. It does
// not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.err != nil {
		return fmt.Errorf("gguf: earlier write failed: %w", w.err)
	}
	if w.cur >= 0 {
		if err := w.finish(); err != nil {
			return err
		}
	}
	if w.next < len(w.tensors) {
		missing := make([]string, 0, 3)
		for _, t := range w.tensors[w.next:min(w.next+3, len(w.tensors))] {
			missing = append(missing, fmt.Sprintf("%q", t.Name))
		}
		return fmt.Errorf("gguf: %d of %d tensors not written (next: %s)", len(w.tensors)-w.next, len(w.tensors), strings.Join(missing, ", "))
	}
	if w.written != w.size {
		return fmt.Errorf("gguf: wrote %d bytes, the plan's file size is %d", w.written, w.size)
	}
	return nil
}
