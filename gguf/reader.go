package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"
	"unicode/utf8"
)

// maxStringLen bounds every string of a header (keys, values, names)
// whatever the file's size.
const maxStringLen = 1 << 24

// File is a parsed GGUF header.
type File struct {
	Version  uint32
	Metadata Metadata
	// Tensors are the tensor infos in file order; Offset is relative to
	// DataOffset.
	Tensors   []TensorInfo
	Alignment uint64
	// DataOffset is the absolute offset of the data section.
	DataOffset int64
	// Size is the size of the file the header was read from.
	Size   int64
	byName map[string]int
}

// Tensor looks a tensor info up by name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorOffset is the absolute offset of the named tensor's data.
func (f *File) TensorOffset(name string) (int64, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return 0, fmt.Errorf("gguf: no tensor %q", name)
	}
	return f.DataOffset + int64(t.Offset), nil
}

// TensorReader returns a reader of exactly the named tensor's bytes in r
// (the file the header was read from).
func (f *File) TensorReader(r io.ReaderAt, name string) (*io.SectionReader, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	return io.NewSectionReader(r, f.DataOffset+int64(t.Offset), int64(t.Size)), nil
}

// ReadTensor reads the named tensor's bytes from r (the file the header was
// read from).
func (f *File) ReadTensor(r io.ReaderAt, name string) ([]byte, error) {
	sr, err := f.TensorReader(r, name)
	if err != nil {
		return nil, err
	}
	b := make([]byte, sr.Size())
	if _, err := io.ReadFull(sr, b); err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: read %d bytes at %d: %w", name, len(b), f.DataOffset+int64(f.Tensors[f.byName[name]].Offset), err)
	}
	return b, nil
}

// decoder reads a header sequentially, tracking the position and bounding
// every length by the bytes left in the file.
type decoder struct {
	r    *bufio.Reader
	pos  int64
	size int64
	buf  [8]byte
}

func (d *decoder) left() int64 { return d.size - d.pos }

func (d *decoder) read(n int) ([]byte, error) {
	if int64(n) > d.left() {
		return nil, fmt.Errorf("at offset %d: %d bytes needed, the file ends after %d: %w", d.pos, n, d.left(), io.ErrUnexpectedEOF)
	}
	b := d.buf[:n]
	if _, err := io.ReadFull(d.r, b); err != nil {
		return nil, fmt.Errorf("at offset %d: %w", d.pos, err)
	}
	d.pos += int64(n)
	return b, nil
}

func (d *decoder) u8() (uint8, error) {
	b, err := d.read(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16() (uint16, error) {
	b, err := d.read(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// count reads a uint64 count of items taking at least minSize bytes each and
// checks it against the bytes left.
func (d *decoder) count(what string, minSize int64) (int, error) {
	at := d.pos
	n, err := d.u64()
	if err != nil {
		return 0, err
	}
	if n > uint64(d.left()/minSize) {
		return 0, fmt.Errorf("at offset %d: %s %d exceeds what the %d bytes left can hold", at, what, n, d.left())
	}
	return int(n), nil
}

func (d *decoder) str() (string, error) {
	at := d.pos
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(d.left()) || n > maxStringLen {
		return "", fmt.Errorf("at offset %d: string length %d exceeds the %d bytes left (or the %d limit)", at, n, d.left(), maxStringLen)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", fmt.Errorf("at offset %d: %w", d.pos, err)
	}
	d.pos += int64(n)
	return string(b), nil
}

func (d *decoder) boolean() (bool, error) {
	at := d.pos
	b, err := d.u8()
	if err != nil {
		return false, err
	}
	if b > 1 {
		return false, fmt.Errorf("at offset %d: bool value %d", at, b)
	}
	return b == 1, nil
}

// scalar reads one value of a non-array type.
func (d *decoder) scalar(t ValueType) (any, error) {
	switch t {
	case ValueUint8:
		return d.u8()
	case ValueInt8:
		v, err := d.u8()
		return int8(v), err
	case ValueUint16:
		return d.u16()
	case ValueInt16:
		v, err := d.u16()
		return int16(v), err
	case ValueUint32:
		return d.u32()
	case ValueInt32:
		v, err := d.u32()
		return int32(v), err
	case ValueFloat32:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case ValueBool:
		return d.boolean()
	case ValueString:
		return d.str()
	case ValueUint64:
		return d.u64()
	case ValueInt64:
		v, err := d.u64()
		return int64(v), err
	case ValueFloat64:
		v, err := d.u64()
		return math.Float64frombits(v), err
	}
	return nil, fmt.Errorf("at offset %d: unknown value type %d", d.pos, uint32(t))
}

// arrayOf reads n elements with read into a new slice.
func arrayOf[T any](n int, read func() (T, error)) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		v, err := read()
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

// array reads an array value: element type, count, elements.
func (d *decoder) array() (any, error) {
	at := d.pos
	et, err := d.u32()
	if err != nil {
		return nil, err
	}
	elem := ValueType(et)
	minSize := int64(elem.size())
	switch {
	case elem == ValueString:
		minSize = 8
	case elem == ValueArray:
		return nil, fmt.Errorf("at offset %d: arrays of arrays are not supported", at)
	case minSize == 0:
		return nil, fmt.Errorf("at offset %d: unknown array element type %d", at, et)
	}
	n, err := d.count(elem.String()+" array length", minSize)
	if err != nil {
		return nil, err
	}
	switch elem {
	case ValueUint8:
		return arrayOf(n, d.u8)
	case ValueInt8:
		return arrayOf(n, func() (int8, error) { v, err := d.u8(); return int8(v), err })
	case ValueUint16:
		return arrayOf(n, d.u16)
	case ValueInt16:
		return arrayOf(n, func() (int16, error) { v, err := d.u16(); return int16(v), err })
	case ValueUint32:
		return arrayOf(n, d.u32)
	case ValueInt32:
		return arrayOf(n, func() (int32, error) { v, err := d.u32(); return int32(v), err })
	case ValueFloat32:
		return arrayOf(n, func() (float32, error) { v, err := d.u32(); return math.Float32frombits(v), err })
	case ValueBool:
		return arrayOf(n, d.boolean)
	case ValueString:
		return arrayOf(n, d.str)
	case ValueUint64:
		return arrayOf(n, d.u64)
	case ValueInt64:
		return arrayOf(n, func() (int64, error) { v, err := d.u64(); return int64(v), err })
	default: // ValueFloat64
		return arrayOf(n, func() (float64, error) { v, err := d.u64(); return math.Float64frombits(v), err })
	}
}

// Read parses the header of a GGUF file of the given size from r: metadata,
// tensor infos and the data offset. Every count and length is checked
// against the file's size before anything is allocated, and every tensor's
// data must lie inside the file, aligned and not overlapping another.
// Errors name the offending key or tensor.
func Read(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("gguf: negative file size %d", size)
	}
	d := &decoder{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size}
	magic, err := d.read(4)
	if err != nil {
		return nil, fmt.Errorf("gguf: read magic: %w", err)
	}
	if string(magic) != Magic {
		return nil, fmt.Errorf("gguf: not a GGUF file (magic %q)", magic)
	}
	f := &File{Size: size, byName: map[string]int{}}
	if f.Version, err = d.u32(); err != nil {
		return nil, fmt.Errorf("gguf: read version: %w", err)
	}
	if f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("gguf: version %d is not supported (want 2 or 3)", f.Version)
	}
	// A tensor info takes at least 24 bytes, a key/value pair 13.
	nTensors, err := d.count("tensor count", 24)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	nKV, err := d.count("metadata count", 13)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f.Metadata = make(Metadata, 0, nKV)
	keys := make(map[string]bool, nKV)
	for i := 0; i < nKV; i++ {
		key, err := d.str()
		if err != nil {
			return nil, fmt.Errorf("gguf: metadata key %d: %w", i, err)
		}
		if key == "" || !utf8.ValidString(key) {
			return nil, fmt.Errorf("gguf: metadata key %d (%q) is empty or not UTF-8", i, key)
		}
		if keys[key] {
			return nil, fmt.Errorf("gguf: metadata key %q appears twice", key)
		}
		keys[key] = true
		t, err := d.u32()
		if err != nil {
			return nil, fmt.Errorf("gguf: metadata key %q: type: %w", key, err)
		}
		var v any
		if ValueType(t) == ValueArray {
			v, err = d.array()
		} else {
			v, err = d.scalar(ValueType(t))
		}
		if err != nil {
			return nil, fmt.Errorf("gguf: metadata key %q: %w", key, err)
		}
		f.Metadata = append(f.Metadata, KV{key, v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Metadata.Get(KeyAlignment); ok {
		a, isU32 := v.(uint32)
		if !isU32 || a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("gguf: metadata key %q is %v (%T), want a power of two (uint32)", KeyAlignment, v, v)
		}
		f.Alignment = uint64(a)
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	for i := 0; i < nTensors; i++ {
		t, err := d.tensorInfo()
		if err != nil {
			if t.Name != "" {
				return nil, fmt.Errorf("gguf: tensor %q: %w", t.Name, err)
			}
			return nil, fmt.Errorf("gguf: tensor info %d: %w", i, err)
		}
		if _, dup := f.byName[t.Name]; dup {
			return nil, fmt.Errorf("gguf: tensor %q appears twice", t.Name)
		}
		if t.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("gguf: tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		f.byName[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}
	f.DataOffset = int64(align(uint64(d.pos), f.Alignment))
	if nTensors > 0 && f.DataOffset > size {
		return nil, fmt.Errorf("gguf: data section at %d starts beyond the end of the file (%d bytes)", f.DataOffset, size)
	}
	if err := f.checkData(); err != nil {
		return nil, err
	}
	return f, nil
}

// tensorInfo reads one tensor info; the returned info carries the name as
// soon as it is read, for error messages.
func (d *decoder) tensorInfo() (TensorInfo, error) {
	var t TensorInfo
	var err error
	if t.Name, err = d.str(); err != nil {
		return t, fmt.Errorf("name: %w", err)
	}
	if t.Name == "" || len(t.Name) > MaxNameLen {
		return t, fmt.Errorf("name length %d (want 1 to %d)", len(t.Name), MaxNameLen)
	}
	nd, err := d.u32()
	if err != nil {
		return t, fmt.Errorf("dimension count: %w", err)
	}
	if nd == 0 || nd > MaxDims {
		return t, fmt.Errorf("%d dimensions (want 1 to %d)", nd, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	for j := range t.Dims {
		if t.Dims[j], err = d.u64(); err != nil {
			return t, fmt.Errorf("dimension %d: %w", j, err)
		}
	}
	if t.Type, err = d.u32(); err != nil {
		return t, fmt.Errorf("type: %w", err)
	}
	if t.Offset, err = d.u64(); err != nil {
		return t, fmt.Errorf("offset: %w", err)
	}
	if t.Size, err = TensorBytes(t.Type, t.Dims); err != nil {
		return t, err
	}
	return t, nil
}

// checkData checks that every tensor's data lies inside the file and that
// no two tensors overlap.
func (f *File) checkData() error {
	dataLen := uint64(f.Size - min(f.DataOffset, f.Size))
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	var end uint64
	prev := ""
	for _, i := range order {
		t := &f.Tensors[i]
		if t.Offset > dataLen || t.Size > dataLen-t.Offset {
			return fmt.Errorf("gguf: tensor %q: data [%d, +%d) of the data section reaches beyond the end of the file (%d bytes of data)", t.Name, t.Offset, t.Size, dataLen)
		}
		if t.Offset < end {
			return fmt.Errorf("gguf: tensor %q at data offset %d overlaps tensor %q (ends at %d)", t.Name, t.Offset, prev, end)
		}
		end, prev = t.Offset+t.Size, t.Name
	}
	return nil
}
