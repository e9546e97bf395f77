// Package safetensors reads and writes the safetensors file format: the
// length-prefixed JSON header, its tensor table, element types and the bulk
// conversions of F16 and BF16 data to float32. It knows nothing of models or
// stores, so that it can be fuzzed alone.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
)

// MaxHeaderSize is the largest safetensors header adaptq accepts (100 MB, as
// the reference implementation does).
const MaxHeaderSize = 100 << 20

// TensorInfo describes one tensor of a safetensors file. Begin and End are
// byte offsets relative to the start of the data section (after the header).
type TensorInfo struct {
	Name  string  `json:"name"`
	DType DType   `json:"dtype"`
	Shape []int64 `json:"shape"`
	Begin int64   `json:"begin"`
	End   int64   `json:"end"`
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Header is a parsed safetensors header.
type Header struct {
	// DataStart is the file offset of the data section: 8 + header length.
	DataStart int64
	// Tensors are in data order (ascending Begin).
	Tensors  []TensorInfo
	Metadata map[string]string
}

// HeaderLength decodes the 8-byte little-endian header length that starts a
// safetensors file and checks it against the file size.
func HeaderLength(prefix []byte, fileSize int64) (int64, error) {
	if fileSize < 8 || len(prefix) < 8 {
		return 0, fmt.Errorf("file of %d bytes is too short for a safetensors header", fileSize)
	}
	n := binary.LittleEndian.Uint64(prefix)
	if n > MaxHeaderSize {
		return 0, fmt.Errorf("header length %d is over the %d-byte limit", n, MaxHeaderSize)
	}
	if int64(n) > fileSize-8 {
		return 0, fmt.Errorf("header length %d goes beyond the end of the %d-byte file", n, fileSize)
	}
	return int64(n), nil
}

// ParseHeader parses the JSON header of a safetensors file. fileSize is the
// size of the whole file; every tensor's bytes are checked to lie inside the
// data section, to match shape × dtype size exactly and not to overlap.
// Errors name the offending tensor; callers add the file name.
func ParseHeader(header []byte, fileSize int64) (*Header, error) {
	dataStart := 8 + int64(len(header))
	dataLen := fileSize - dataStart
	if dataLen < 0 {
		return nil, fmt.Errorf("header of %d bytes is longer than the file (%d bytes)", len(header), fileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("header is not a JSON object")
	}
	h := &Header{DataStart: dataStart}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("header is not JSON: %w", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, fmt.Errorf("tensor %q appears twice in the header", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return nil, fmt.Errorf("__metadata__ is not a string map: %w", err)
			}
			h.Metadata = md
			continue
		}
		var raw struct {
			DType       *string  `json:"dtype"`
			Shape       *[]int64 `json:"shape"`
			DataOffsets *[]int64 `json:"data_offsets"`
		}
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("tensor %q: bad header entry: %w", name, err)
		}
		if raw.DType == nil || raw.Shape == nil || raw.DataOffsets == nil {
			return nil, fmt.Errorf("tensor %q: header entry needs dtype, shape and data_offsets", name)
		}
		dt, err := ParseDType(*raw.DType)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		t := TensorInfo{Name: name, DType: dt, Shape: *raw.Shape}
		if len(*raw.DataOffsets) != 2 {
			return nil, fmt.Errorf("tensor %q: data_offsets must hold two numbers, has %d", name, len(*raw.DataOffsets))
		}
		t.Begin, t.End = (*raw.DataOffsets)[0], (*raw.DataOffsets)[1]
		if t.Begin < 0 || t.End < t.Begin {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] are not an increasing pair", name, t.Begin, t.End)
		}
		if t.End > dataLen {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] go beyond the %d-byte data section", name, t.Begin, t.End, dataLen)
		}
		want := int64(dt.Size())
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: negative dimension in shape %v", name, t.Shape)
			}
			if d != 0 && want > math.MaxInt64/d {
				return nil, fmt.Errorf("tensor %q: shape %v overflows", name, t.Shape)
			}
			want *= d
		}
		if want != t.End-t.Begin {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data_offsets give %d", name, t.Shape, dt, want, t.End-t.Begin)
		}
		h.Tensors = append(h.Tensors, t)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("header has data after its JSON object")
	}
	sort.SliceStable(h.Tensors, func(i, j int) bool { return h.Tensors[i].Begin < h.Tensors[j].Begin })
	for i := 1; i < len(h.Tensors); i++ {
		a, b := h.Tensors[i-1], h.Tensors[i]
		if b.Begin < a.End {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap tensor %q [%d, %d]", b.Name, b.Begin, b.End, a.Name, a.Begin, a.End)
		}
	}
	return h, nil
}
