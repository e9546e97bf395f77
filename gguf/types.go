// Package gguf writes and reads GGUF version 3 files, the model format of
// llama.cpp, and maps Llama-family Hugging Face checkpoints onto it: tensor
// names, the query/key row order, hyperparameter and tokenizer metadata.
//
// A GGUF file is a header (magic, version, counts), metadata key/value
// pairs, tensor infos (name, dimensions, ggml type, offset), padding to the
// alignment, and the tensor data, each tensor starting at an aligned offset
// relative to the start of the data section. All integers are
// little-endian. The Writer streams a file to any io.Writer from a Plan
// fixed in advance; Read parses one from an io.ReaderAt, bounding every
// count and length by the file's size.
package gguf

import (
	"fmt"
	"math/bits"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package writes (and the only one Read
// accepts besides 2, which has the same layout).
const Version = 3

// DefaultAlignment is the alignment of tensor data when general.alignment is
// not given.
const DefaultAlignment = 32

// KeyAlignment is the metadata key holding the data alignment (uint32).
const KeyAlignment = "general.alignment"

// MaxDims is the most dimensions a ggml tensor has.
const MaxDims = 4

// MaxNameLen is the longest tensor name llama.cpp accepts (GGML_MAX_NAME
// is 64 bytes including the terminating NUL).
const MaxNameLen = 63

// ValueType is the type of a metadata value.
type ValueType uint32

// Metadata value types, with their GGUF ids.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

// String returns the type's name ("uint32", "array", ...).
func (t ValueType) String() string {
	names := [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size is the encoded size of a fixed-size scalar, 0 for string and array.
func (t ValueType) size() int {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

// ggml tensor type ids (enum ggml_type) of the types this package sizes.
const (
	TypeF32   uint32 = 0
	TypeF16   uint32 = 1
	TypeQ4_0  uint32 = 2
	TypeQ8_0  uint32 = 8
	TypeQ2_K  uint32 = 10
	TypeQ3_K  uint32 = 11
	TypeQ4_K  uint32 = 12
	TypeQ5_K  uint32 = 13
	TypeQ6_K  uint32 = 14
	TypeBF16  uint32 = 30
	TypeTQ1_0 uint32 = 34
	TypeTQ2_0 uint32 = 35
)

// typeTraits is a ggml type's block layout: BlockSize values are stored in
// TypeSize bytes.
type typeTraits struct {
	name      string
	blockSize uint64
	typeSize  uint64
}

// traitsOf is the block layout of the known types (checked against
// ggml_blck_size and ggml_type_size of llama.cpp's libggml-base). The
// types adaptq writes have constants above; the others are here so that
// Read sizes the tensors of any llama.cpp file.
func traitsOf(typ uint32) (typeTraits, bool) {
	switch typ {
	case TypeF32:
		return typeTraits{"F32", 1, 4}, true
	case TypeF16:
		return typeTraits{"F16", 1, 2}, true
	case TypeQ4_0:
		return typeTraits{"Q4_0", 32, 18}, true
	case 3:
		return typeTraits{"Q4_1", 32, 20}, true
	case 6:
		return typeTraits{"Q5_0", 32, 22}, true
	case 7:
		return typeTraits{"Q5_1", 32, 24}, true
	case TypeQ8_0:
		return typeTraits{"Q8_0", 32, 34}, true
	case 9:
		return typeTraits{"Q8_1", 32, 36}, true
	case TypeQ2_K:
		return typeTraits{"Q2_K", 256, 84}, true
	case TypeQ3_K:
		return typeTraits{"Q3_K", 256, 110}, true
	case TypeQ4_K:
		return typeTraits{"Q4_K", 256, 144}, true
	case TypeQ5_K:
		return typeTraits{"Q5_K", 256, 176}, true
	case TypeQ6_K:
		return typeTraits{"Q6_K", 256, 210}, true
	case 15:
		return typeTraits{"Q8_K", 256, 292}, true
	case 16:
		return typeTraits{"IQ2_XXS", 256, 66}, true
	case 17:
		return typeTraits{"IQ2_XS", 256, 74}, true
	case 18:
		return typeTraits{"IQ3_XXS", 256, 98}, true
	case 19:
		return typeTraits{"IQ1_S", 256, 50}, true
	case 20:
		return typeTraits{"IQ4_NL", 32, 18}, true
	case 21:
		return typeTraits{"IQ3_S", 256, 110}, true
	case 22:
		return typeTraits{"IQ2_S", 256, 82}, true
	case 23:
		return typeTraits{"IQ4_XS", 256, 136}, true
	case 24:
		return typeTraits{"I8", 1, 1}, true
	case 25:
		return typeTraits{"I16", 1, 2}, true
	case 26:
		return typeTraits{"I32", 1, 4}, true
	case 27:
		return typeTraits{"I64", 1, 8}, true
	case 28:
		return typeTraits{"F64", 1, 8}, true
	case 29:
		return typeTraits{"IQ1_M", 256, 56}, true
	case TypeBF16:
		return typeTraits{"BF16", 1, 2}, true
	case TypeTQ1_0:
		return typeTraits{"TQ1_0", 256, 54}, true
	case TypeTQ2_0:
		return typeTraits{"TQ2_0", 256, 66}, true
	case 39:
		return typeTraits{"MXFP4", 32, 17}, true
	}
	return typeTraits{}, false
}

// TypeName returns the ggml name of a tensor type ("F32", "Q4_K", ...), or
// "type(N)" for types this package does not know.
func TypeName(typ uint32) string {
	if tr, ok := traitsOf(typ); ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", typ)
}

// BlockLayout returns how many values a block of the type holds and how many
// bytes it takes; ok is false for types this package does not know.
func BlockLayout(typ uint32) (blockSize, typeSize int, ok bool) {
	tr, ok := traitsOf(typ)
	return int(tr.blockSize), int(tr.typeSize), ok
}

// TensorBytes is the size in bytes of a tensor of the given type and GGUF
// dimensions (dims[0] is the row length, which must be a multiple of the
// type's block size). Overflow, zero dimensions and unknown types are errors.
func TensorBytes(typ uint32, dims []uint64) (uint64, error) {
	tr, ok := traitsOf(typ)
	if !ok {
		return 0, fmt.Errorf("ggml type %d is not known to package gguf", typ)
	}
	if len(dims) == 0 || len(dims) > MaxDims {
		return 0, fmt.Errorf("%d dimensions (want 1 to %d)", len(dims), MaxDims)
	}
	if dims[0]%tr.blockSize != 0 {
		return 0, fmt.Errorf("row length %d is not a multiple of the %s block size %d", dims[0], tr.name, tr.blockSize)
	}
	for _, d := range dims {
		if d == 0 {
			return 0, fmt.Errorf("dimensions %v include 0", dims)
		}
	}
	n := tr.typeSize
	for i, d := range dims {
		if i == 0 {
			d /= tr.blockSize
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > 1<<62 {
			return 0, fmt.Errorf("dimensions %v overflow", dims)
		}
		n = lo
	}
	return n, nil
}

// align rounds n up to a multiple of a (a > 0).
func align(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		return n + a - r
	}
	return n
}
