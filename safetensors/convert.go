package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// littleEndian reports whether the host stores integers little-endian, which
// lets the bulk converters reinterpret byte slices in place.
func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// u16s views b (little-endian 16-bit values) as []uint16 when the host is
// little-endian and b is 2-byte aligned; ok is false otherwise.
func u16s(b []byte) (v []uint16, ok bool) {
	if len(b) == 0 || !littleEndian() || uintptr(unsafe.Pointer(&b[0]))%2 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2), true
}

// BF16ToF32 converts len(dst) little-endian BF16 values from src into dst.
// src must hold at least 2*len(dst) bytes.
func BF16ToF32(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	if v, ok := u16s(src); ok {
		v = v[:len(dst)]
		for i, h := range v {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		}
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// F16ToF32 converts len(dst) little-endian IEEE half-precision values from src
// into dst, exactly (every half value is representable as float32).
func F16ToF32(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	if v, ok := u16s(src); ok {
		v = v[:len(dst)]
		for i, h := range v {
			dst[i] = HalfToFloat(h)
		}
		return
	}
	for i := range dst {
		dst[i] = HalfToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// F32FromBytes converts len(dst) little-endian float32 values from src.
func F32FromBytes(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	if littleEndian() {
		copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(src))), len(dst)))
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// HalfToFloat converts one IEEE 754 half-precision value to float32.
func HalfToFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	default: // subnormal: mant × 2^-24
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
}

// FloatToHalf converts a float32 to IEEE 754 half precision, rounding to
// nearest even; values beyond the half range become ±Inf, NaN stays NaN.
func FloatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to Inf: correct
	}
	return sign | uint16(r)
}

// FloatToBF16 converts a float32 to bfloat16, rounding to nearest even.
func FloatToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToFloat converts one bfloat16 value to float32.
func BF16ToFloat(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// EncodeFloat32 writes the values of src into dst in the given dtype
// (F32, F16 or BF16, little-endian). dst must hold len(src)*dtype.Size() bytes.
func EncodeFloat32(dst []byte, src []float32, dt DType) error {
	switch dt {
	case F32:
		for i, f := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
		}
	case F16:
		for i, f := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], FloatToHalf(f))
		}
	case BF16:
		for i, f := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], FloatToBF16(f))
		}
	default:
		return fmt.Errorf("cannot encode float32 values as %s", dt)
	}
	return nil
}

// DecodeFloat32 converts len(dst) values of type dt from src into dst.
func DecodeFloat32(dst []float32, src []byte, dt DType) error {
	if len(src) < len(dst)*dt.Size() {
		return fmt.Errorf("decode %s: %d bytes for %d values", dt, len(src), len(dst))
	}
	switch dt {
	case F32:
		F32FromBytes(dst, src)
	case F16:
		F16ToF32(dst, src)
	case BF16:
		BF16ToF32(dst, src)
	default:
		return fmt.Errorf("dtype %s is not supported as weights (only F32, F16, BF16)", dt)
	}
	return nil
}
