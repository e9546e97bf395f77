package safetensors

import "fmt"

// DType is a safetensors element type.
type DType uint8

// The safetensors element types. Only F32, F16 and BF16 can be read as
// float32 weights; the others are parsed and reported as unsupported.
const (
	DTypeInvalid DType = iota
	F64
	F32
	F16
	BF16
	I64
	I32
	I16
	I8
	U64
	U32
	U16
	U8
	Bool
	F8E4M3
	F8E5M2
)

var dtypeNames = [...]string{
	DTypeInvalid: "INVALID",
	F64:          "F64",
	F32:          "F32",
	F16:          "F16",
	BF16:         "BF16",
	I64:          "I64",
	I32:          "I32",
	I16:          "I16",
	I8:           "I8",
	U64:          "U64",
	U32:          "U32",
	U16:          "U16",
	U8:           "U8",
	Bool:         "BOOL",
	F8E4M3:       "F8_E4M3",
	F8E5M2:       "F8_E5M2",
}

var dtypeSizes = [...]int{
	F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1,
	U64: 8, U32: 4, U16: 2, U8: 1, Bool: 1, F8E4M3: 1, F8E5M2: 1,
}

// String returns the safetensors spelling of the type ("F32", "BF16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes of one element, 0 for an invalid type.
func (d DType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// Float reports whether adaptq can read the type as float32 weights.
func (d DType) Float() bool { return d == F32 || d == F16 || d == BF16 }

// ParseDType maps a safetensors dtype string to a DType.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(DTypeInvalid) && n == s {
			return DType(i), nil
		}
	}
	return DTypeInvalid, fmt.Errorf("unknown dtype %q", s)
}

// MarshalText implements encoding.TextMarshaler.
func (d DType) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
