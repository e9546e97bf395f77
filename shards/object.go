// Package shards holds the shard plan (which tensors of a checkpoint make one
// unit of work) and the shard object: one object per layer holding its
// tensors' final bytes, a checked tensor table and an optionally
// zstd-compressed payload. It has no Temporal imports.
package shards

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Object format, version 1 (all integers little-endian):
//
//	magic    [8]byte "ADQSHARD"
//	version  uint32  1
//	flags    uint32  bit 0: payload is zstd-compressed
//	count    uint32  number of tensors (≤ MaxTensors)
//	table    count entries:
//	           nameLen uint16, name [nameLen]byte,
//	           type uint32 (ggml type id), ndims uint32 (1..4), dims [ndims]uint64,
//	           offset uint64, length uint64 (in the raw payload), crc uint32 (CRC-32C of the bytes)
//	rawLen   uint64  payload length before compression
//	dataLen  uint64  payload length as stored
//	hdrCRC   uint32  CRC-32C of every byte above
//	payload  [dataLen]byte
//
// In the raw payload each tensor starts at a multiple of Alignment and the
// gaps are zero, so a tensor's bytes can be copied into a GGUF file as they are.
const (
	Magic      = "ADQSHARD"
	Version    = 1
	Alignment  = 32
	MaxTensors = 1 << 16
	maxDims    = 4
	flagZstd   = 1
)

// TensorEntry describes one tensor in a shard object.
type TensorEntry struct {
	Name   string   `json:"name"`
	Type   uint32   `json:"type"` // ggml type id of the bytes
	Dims   []uint64 `json:"dims"` // Hugging Face order: [rows, cols]
	Offset uint64   `json:"offset"`
	Length uint64   `json:"length"`
	CRC32C uint32   `json:"crc32c"`
}

// Tensor is a tensor's entry and its bytes.
type Tensor struct {
	TensorEntry
	Data []byte
}

// Encoded is an encoded shard object and what was measured on the way.
type Encoded struct {
	Bytes      []byte
	RawSize    int64 // payload bytes before compression
	StoredSize int64 // payload bytes as stored
	Tensors    []TensorEntry
}

// Ratio is the raw payload size over the stored payload size (1 when not
// compressed).
func (e *Encoded) Ratio() float64 {
	if e.StoredSize == 0 {
		return 1
	}
	return float64(e.RawSize) / float64(e.StoredSize)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the checksum used for tensors and headers.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func pad(n uint64) uint64 { return (n + Alignment - 1) / Alignment * Alignment }

// Encode builds a shard object from tensors (their Name, Type, Dims and
// Data; offsets and checksums are computed). compress selects zstd for the
// payload.
func Encode(tensors []Tensor, compress bool) (*Encoded, error) {
	if len(tensors) > MaxTensors {
		return nil, fmt.Errorf("shard: %d tensors, at most %d", len(tensors), MaxTensors)
	}
	var raw bytes.Buffer
	entries := make([]TensorEntry, len(tensors))
	for i, t := range tensors {
		if len(t.Name) == 0 || len(t.Name) > 0xffff {
			return nil, fmt.Errorf("shard: tensor %d: bad name length %d", i, len(t.Name))
		}
		if len(t.Dims) == 0 || len(t.Dims) > maxDims {
			return nil, fmt.Errorf("shard: tensor %q: %d dimensions (1 to %d)", t.Name, len(t.Dims), maxDims)
		}
		off := pad(uint64(raw.Len()))
		raw.Write(make([]byte, off-uint64(raw.Len())))
		raw.Write(t.Data)
		entries[i] = TensorEntry{Name: t.Name, Type: t.Type, Dims: append([]uint64(nil), t.Dims...),
			Offset: off, Length: uint64(len(t.Data)), CRC32C: CRC32C(t.Data)}
	}
	raw.Write(make([]byte, pad(uint64(raw.Len()))-uint64(raw.Len())))
	payload := raw.Bytes()
	var flags uint32
	if compress {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("shard: zstd: %w", err)
		}
		payload = enc.EncodeAll(payload, nil)
		enc.Close()
		flags |= flagZstd
	}
	var h bytes.Buffer
	h.WriteString(Magic)
	le := binary.LittleEndian
	var b8 [8]byte
	put32 := func(v uint32) { le.PutUint32(b8[:4], v); h.Write(b8[:4]) }
	put64 := func(v uint64) { le.PutUint64(b8[:], v); h.Write(b8[:]) }
	put32(Version)
	put32(flags)
	put32(uint32(len(entries)))
	for _, e := range entries {
		le.PutUint16(b8[:2], uint16(len(e.Name)))
		h.Write(b8[:2])
		h.WriteString(e.Name)
		put32(e.Type)
		put32(uint32(len(e.Dims)))
		for _, d := range e.Dims {
			put64(d)
		}
		put64(e.Offset)
		put64(e.Length)
		put32(e.CRC32C)
	}
	put64(uint64(raw.Len()))
	put64(uint64(len(payload)))
	put32(CRC32C(h.Bytes()))
	out := append(h.Bytes(), payload...)
	return &Encoded{Bytes: out, RawSize: int64(raw.Len()), StoredSize: int64(len(payload)), Tensors: entries}, nil
}

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt shard object")

// reader is a bounds-checked cursor over the header.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: header ends early at byte %d", ErrCorrupt, r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if s := r.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

// Decode parses and checks a whole shard object: header checksum, table
// bounds, alignment, overlaps, payload size and every tensor's CRC-32C.
// Errors wrap ErrCorrupt and name the tensor.
func Decode(obj []byte) ([]Tensor, error) {
	r := &reader{b: obj}
	if m := r.take(len(Magic)); m == nil || string(m) != Magic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if v := r.u32(); v != Version && r.err == nil {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, v, Version)
	}
	flags := r.u32()
	if flags&^uint32(flagZstd) != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	count := r.u32()
	if count > MaxTensors || int64(count)*30 > int64(len(obj)) {
		return nil, fmt.Errorf("%w: %d tensors in a %d-byte object", ErrCorrupt, count, len(obj))
	}
	entries := make([]TensorEntry, 0, count)
	for i := uint32(0); i < count && r.err == nil; i++ {
		var e TensorEntry
		e.Name = string(r.take(int(r.u16())))
		e.Type = r.u32()
		nd := r.u32()
		if nd == 0 || nd > maxDims {
			if r.err == nil {
				return nil, fmt.Errorf("%w: tensor %q: %d dimensions", ErrCorrupt, e.Name, nd)
			}
			break
		}
		for range nd {
			e.Dims = append(e.Dims, r.u64())
		}
		e.Offset, e.Length, e.CRC32C = r.u64(), r.u64(), r.u32()
		entries = append(entries, e)
	}
	rawLen, dataLen := r.u64(), r.u64()
	hdrEnd := r.off
	sum := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if CRC32C(obj[:hdrEnd]) != sum {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	if dataLen != uint64(len(obj)-r.off) {
		return nil, fmt.Errorf("%w: payload is %d bytes, header says %d", ErrCorrupt, len(obj)-r.off, dataLen)
	}
	payload := obj[r.off:]
	if flags&flagZstd != 0 {
		if rawLen > 64<<30 {
			return nil, fmt.Errorf("%w: raw payload of %d bytes", ErrCorrupt, rawLen)
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(rawLen+1))
		if err != nil {
			return nil, fmt.Errorf("shard: zstd: %w", err)
		}
		defer dec.Close()
		payload, err = dec.DecodeAll(payload, make([]byte, 0, min(rawLen, uint64(64<<20))))
		if err != nil {
			return nil, fmt.Errorf("%w: payload: %v", ErrCorrupt, err)
		}
	}
	if uint64(len(payload)) != rawLen {
		return nil, fmt.Errorf("%w: raw payload is %d bytes, header says %d", ErrCorrupt, len(payload), rawLen)
	}
	out := make([]Tensor, len(entries))
	var end uint64
	for i, e := range entries {
		if e.Offset%Alignment != 0 || e.Offset < end || e.Length > rawLen || e.Offset > rawLen-e.Length {
			return nil, fmt.Errorf("%w: tensor %q: bytes [%d, +%d) misplaced in a %d-byte payload", ErrCorrupt, e.Name, e.Offset, e.Length, rawLen)
		}
		for _, z := range payload[end:e.Offset] {
			if z != 0 {
				return nil, fmt.Errorf("%w: tensor %q: non-zero padding before it", ErrCorrupt, e.Name)
			}
		}
		end = e.Offset + e.Length
		data := payload[e.Offset:end]
		if CRC32C(data) != e.CRC32C {
			return nil, fmt.Errorf("%w: tensor %q: checksum mismatch", ErrCorrupt, e.Name)
		}
		out[i] = Tensor{TensorEntry: e, Data: data}
	}
	for _, z := range payload[end:] {
		if z != 0 {
			return nil, fmt.Errorf("%w: non-zero padding after the last tensor", ErrCorrupt)
		}
	}
	return out, nil
}

// ReadObject reads and decodes a shard object from r.
func ReadObject(r io.Reader) ([]Tensor, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("shard: read: %w", err)
	}
	return Decode(b)
}
