package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// TensorSpec is a tensor to be written: its name, type and shape.
type TensorSpec struct {
	Name  string
	DType DType
	Shape []int64
}

// Bytes is the size of the tensor's data.
func (s TensorSpec) Bytes() int64 {
	n := int64(s.DType.Size())
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// Writer streams a safetensors file: the header, computed from the plan of
// tensors, goes out first; then each tensor's bytes in plan order, as they
// arrive, through Write. Nothing is buffered beyond the header.
type Writer struct {
	w     io.Writer
	specs []TensorSpec
	cur   int   // tensor being written
	left  int64 // bytes still due for the current tensor
	total int64
}

// EncodeHeader builds a safetensors header (length prefix included) for the
// tensors laid out in the given order, padded with spaces to 8 bytes.
func EncodeHeader(specs []TensorSpec, metadata map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			buf.WriteByte(',')
		}
		first = false
	}
	if len(metadata) > 0 {
		sep()
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(metadata[k])
			buf.Write(kb)
			buf.WriteByte(':')
			buf.Write(vb)
		}
		buf.WriteByte('}')
	}
	seen := map[string]bool{}
	var off int64
	for _, s := range specs {
		if seen[s.Name] || s.Name == "__metadata__" || s.Name == "" {
			return nil, fmt.Errorf("safetensors writer: bad or repeated tensor name %q", s.Name)
		}
		seen[s.Name] = true
		if s.DType.Size() == 0 {
			return nil, fmt.Errorf("safetensors writer: tensor %q: invalid dtype", s.Name)
		}
		for _, d := range s.Shape {
			if d < 0 {
				return nil, fmt.Errorf("safetensors writer: tensor %q: negative dimension in %v", s.Name, s.Shape)
			}
		}
		sep()
		nb, _ := json.Marshal(s.Name)
		shape := s.Shape
		if shape == nil {
			shape = []int64{}
		}
		sb, _ := json.Marshal(shape)
		fmt.Fprintf(&buf, `%s:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, nb, s.DType, sb, off, off+s.Bytes())
		off += s.Bytes()
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	out := make([]byte, 8, 8+buf.Len())
	binary.LittleEndian.PutUint64(out, uint64(buf.Len()))
	return append(out, buf.Bytes()...), nil
}

// NewWriter writes the header for specs to w and returns a Writer that
// takes the tensors' bytes in order.
func NewWriter(w io.Writer, specs []TensorSpec, metadata map[string]string) (*Writer, error) {
	hdr, err := EncodeHeader(specs, metadata)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, fmt.Errorf("safetensors writer: header: %w", err)
	}
	sw := &Writer{w: w, specs: specs, total: int64(len(hdr))}
	if len(specs) > 0 {
		sw.left = specs[0].Bytes()
	}
	sw.skipEmpty()
	return sw, nil
}

func (sw *Writer) skipEmpty() {
	for sw.cur < len(sw.specs) && sw.left == 0 {
		sw.cur++
		if sw.cur < len(sw.specs) {
			sw.left = sw.specs[sw.cur].Bytes()
		}
	}
}

// Write takes the next bytes of tensor data; a write may span tensors.
func (sw *Writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if sw.cur >= len(sw.specs) {
			return written, fmt.Errorf("safetensors writer: %d bytes beyond the last tensor", len(p))
		}
		n := min(int64(len(p)), sw.left)
		m, err := sw.w.Write(p[:n])
		written += m
		sw.total += int64(m)
		if err != nil {
			return written, fmt.Errorf("safetensors writer: tensor %q: %w", sw.specs[sw.cur].Name, err)
		}
		sw.left -= n
		p = p[n:]
		sw.skipEmpty()
	}
	return written, nil
}

// WriteTensor writes one tensor's float32 values in its planned dtype. It
// must be the next tensor of the plan.
func (sw *Writer) WriteTensor(name string, values []float32) error {
	if sw.cur >= len(sw.specs) || sw.specs[sw.cur].Name != name {
		return fmt.Errorf("safetensors writer: tensor %q is not next in the plan", name)
	}
	s := sw.specs[sw.cur]
	if int64(len(values))*int64(s.DType.Size()) != sw.left {
		return fmt.Errorf("safetensors writer: tensor %q: %d values, want %d", name, len(values), sw.left/int64(s.DType.Size()))
	}
	const chunk = 1 << 16
	buf := make([]byte, min(len(values), chunk)*s.DType.Size())
	for i := 0; i < len(values); i += chunk {
		v := values[i:min(i+chunk, len(values))]
		b := buf[:len(v)*s.DType.Size()]
		if err := EncodeFloat32(b, v, s.DType); err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
		if _, err := sw.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Close checks that every planned byte was written.
func (sw *Writer) Close() error {
	if sw.cur < len(sw.specs) {
		return fmt.Errorf("safetensors writer: tensor %q is missing %d bytes", sw.specs[sw.cur].Name, sw.left)
	}
	return nil
}

// Size is the number of bytes written so far, header included.
func (sw *Writer) Size() int64 { return sw.total }

// FileSize is the size of the safetensors file the specs make.
func FileSize(specs []TensorSpec, metadata map[string]string) (int64, error) {
	hdr, err := EncodeHeader(specs, metadata)
	if err != nil {
		return 0, err
	}
	n := int64(len(hdr))
	for _, s := range specs {
		n += s.Bytes()
	}
	return n, nil
}
