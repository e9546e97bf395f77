package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// KV is one metadata key/value pair. Value holds one of the Go types that
// stand for the GGUF value types:
//
//	uint8 int8 uint16 int16 uint32 int32 float32 bool string uint64 int64 float64
//
// or an array: a slice of one of those types ([]uint8 ... []float64,
// []bool, []string). Arrays of arrays are not supported (llama.cpp does not
// read them either).
type KV struct {
	Key   string
	Value any
}

// Metadata is an ordered list of key/value pairs; keys are unique.
type Metadata []KV

// Get returns the value of key.
func (m Metadata) Get(key string) (any, bool) {
	for i := range m {
		if m[i].Key == key {
			return m[i].Value, true
		}
	}
	return nil, false
}

// Set replaces the value of key, or appends the pair when key is absent.
func (m *Metadata) Set(key string, v any) {
	for i := range *m {
		if (*m)[i].Key == key {
			(*m)[i].Value = v
			return
		}
	}
	*m = append(*m, KV{key, v})
}

// GetString returns the string value of key; a missing key or another type is
// an error naming the key.
func (m Metadata) GetString(key string) (string, error) {
	v, ok := m.Get(key)
	if !ok {
		return "", fmt.Errorf("metadata key %q is missing", key)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("metadata key %q is %T, want string", key, v)
	}
	return s, nil
}

// GetUint returns an unsigned or non-negative signed integer value of key as
// uint64; a missing key, a negative value or a non-integer type is an error.
func (m Metadata) GetUint(key string) (uint64, error) {
	v, ok := m.Get(key)
	if !ok {
		return 0, fmt.Errorf("metadata key %q is missing", key)
	}
	var n int64
	switch x := v.(type) {
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	default:
		return 0, fmt.Errorf("metadata key %q is %T, want an integer", key, v)
	}
	if n < 0 {
		return 0, fmt.Errorf("metadata key %q is negative (%d)", key, n)
	}
	return uint64(n), nil
}

// valueType returns the GGUF type of a Go value and, for arrays, the element
// type and length.
func valueType(v any) (t, elem ValueType, n int, err error) {
	switch x := v.(type) {
	case uint8:
		return ValueUint8, 0, 0, nil
	case int8:
		return ValueInt8, 0, 0, nil
	case uint16:
		return ValueUint16, 0, 0, nil
	case int16:
		return ValueInt16, 0, 0, nil
	case uint32:
		return ValueUint32, 0, 0, nil
	case int32:
		return ValueInt32, 0, 0, nil
	case float32:
		return ValueFloat32, 0, 0, nil
	case bool:
		return ValueBool, 0, 0, nil
	case string:
		return ValueString, 0, 0, nil
	case uint64:
		return ValueUint64, 0, 0, nil
	case int64:
		return ValueInt64, 0, 0, nil
	case float64:
		return ValueFloat64, 0, 0, nil
	case []uint8:
		return ValueArray, ValueUint8, len(x), nil
	case []int8:
		return ValueArray, ValueInt8, len(x), nil
	case []uint16:
		return ValueArray, ValueUint16, len(x), nil
	case []int16:
		return ValueArray, ValueInt16, len(x), nil
	case []uint32:
		return ValueArray, ValueUint32, len(x), nil
	case []int32:
		return ValueArray, ValueInt32, len(x), nil
	case []float32:
		return ValueArray, ValueFloat32, len(x), nil
	case []bool:
		return ValueArray, ValueBool, len(x), nil
	case []string:
		return ValueArray, ValueString, len(x), nil
	case []uint64:
		return ValueArray, ValueUint64, len(x), nil
	case []int64:
		return ValueArray, ValueInt64, len(x), nil
	case []float64:
		return ValueArray, ValueFloat64, len(x), nil
	}
	return 0, 0, 0, fmt.Errorf("value of Go type %T has no GGUF type", v)
}

// encoder appends little-endian GGUF encodings to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }

func (e *encoder) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// kv appends a key/value pair: key, value type, value.
func (e *encoder) kv(key string, v any) error {
	t, elem, _, err := valueType(v)
	if err != nil {
		return fmt.Errorf("metadata key %q: %w", key, err)
	}
	e.str(key)
	e.u32(uint32(t))
	if t == ValueArray {
		e.u32(uint32(elem))
	}
	e.value(v)
	return nil
}

// value appends a value (without its type), arrays with element type
// already written by the caller and length written here.
func (e *encoder) value(v any) {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.boolean(x)
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []uint8:
		e.u64(uint64(len(x)))
		e.b = append(e.b, x...)
	case []int8:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u8(uint8(y))
		}
	case []uint16:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u16(y)
		}
	case []int16:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u16(uint16(y))
		}
	case []uint32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(y)
		}
	case []int32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(uint32(y))
		}
	case []float32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(math.Float32bits(y))
		}
	case []bool:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.boolean(y)
		}
	case []string:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.str(y)
		}
	case []uint64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(y)
		}
	case []int64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(uint64(y))
		}
	case []float64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(math.Float64bits(y))
		}
	}
}
