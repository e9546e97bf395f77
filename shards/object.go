// Package shards holds the shard plan (which tensors of a checkpoint make one
// unit of work) and the shard object: one object per layer holding its
// tensors' final bytes, a checked tensor table and an optionally
// zstd-compressed payload. It has no Temporal imports.
package shards

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
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

// Object is a shard object ready to be written: its header is built and
// every tensor's offset and checksum computed, but the payload is not
// copied — WriteTo streams the tensors' own bytes (an uncompressed object
// costs no second copy of a layer in memory).
type Object struct {
	header     []byte
	tensors    []Tensor
	compressed []byte // the zstd payload, when compressed
	RawSize    int64  // payload bytes before compression
	StoredSize int64  // payload bytes as stored
	Tensors    []TensorEntry
}

// Size is the object's size in bytes.
func (o *Object) Size() int64 { return int64(len(o.header)) + o.StoredSize }

// Ratio is the raw payload size over the stored payload size (1 when not
// compressed).
func (o *Object) Ratio() float64 {
	if o.StoredSize == 0 {
		return 1
	}
	return float64(o.RawSize) / float64(o.StoredSize)
}

// WriteTo writes the object: header, then the payload.
func (o *Object) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(o.header)
	total := int64(n)
	if err != nil {
		return total, err
	}
	if o.compressed != nil {
		n, err := w.Write(o.compressed)
		return total + int64(n), err
	}
	var zeros [Alignment]byte
	var off uint64
	for i, t := range o.tensors {
		e := o.Tensors[i]
		n, err := w.Write(zeros[:e.Offset-off])
		total += int64(n)
		if err != nil {
			return total, err
		}
		n, err = w.Write(t.Data)
		total += int64(n)
		if err != nil {
			return total, err
		}
		off = e.Offset + e.Length
	}
	n, err = w.Write(zeros[:uint64(o.RawSize)-off])
	return total + int64(n), err
}

// Bytes returns the whole object in memory.
func (o *Object) Bytes() []byte {
	var b bytes.Buffer
	b.Grow(int(o.Size()))
	o.WriteTo(&b) // a bytes.Buffer does not fail
	return b.Bytes()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the checksum used for tensors and headers.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func pad(n uint64) uint64 { return (n + Alignment - 1) / Alignment * Alignment }

// Encode builds a shard object from tensors (their Name, Type, Dims and
// Data; offsets and checksums are computed). compress selects zstd for the
// payload. The object refers to the tensors' data until it is written.
func Encode(tensors []Tensor, compress bool) (*Object, error) {
	if len(tensors) > MaxTensors {
		return nil, fmt.Errorf("shard: %d tensors, at most %d", len(tensors), MaxTensors)
	}
	o := &Object{tensors: tensors, Tensors: make([]TensorEntry, len(tensors))}
	var end uint64
	for i, t := range tensors {
		if len(t.Name) == 0 || len(t.Name) > 0xffff {
			return nil, fmt.Errorf("shard: tensor %d: bad name length %d", i, len(t.Name))
		}
		if len(t.Dims) == 0 || len(t.Dims) > maxDims {
			return nil, fmt.Errorf("shard: tensor %q: %d dimensions (1 to %d)", t.Name, len(t.Dims), maxDims)
		}
		off := pad(end)
		o.Tensors[i] = TensorEntry{Name: t.Name, Type: t.Type, Dims: append([]uint64(nil), t.Dims...),
			Offset: off, Length: uint64(len(t.Data)), CRC32C: CRC32C(t.Data)}
		end = off + uint64(len(t.Data))
	}
	o.RawSize = int64(pad(end))
	o.StoredSize = o.RawSize
	var flags uint32
	if compress {
		var raw bytes.Buffer
		raw.Grow(int(o.RawSize))
		o.WriteTo(&raw) // header is empty yet: the payload only
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("shard: zstd: %w", err)
		}
		o.compressed = enc.EncodeAll(raw.Bytes(), nil)
		enc.Close()
		o.StoredSize = int64(len(o.compressed))
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
	put32(uint32(len(o.Tensors)))
	for _, e := range o.Tensors {
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
	put64(uint64(o.RawSize))
	put64(uint64(o.StoredSize))
	put32(CRC32C(h.Bytes()))
	o.header = h.Bytes()
	if compress {
		o.tensors = nil // the compressed payload holds them now
	}
	return o, nil
}

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt shard object")

// headerReader reads the header from a stream, keeping its CRC.
type headerReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	n   int64 // header bytes read
	err error
}

func (h *headerReader) take(n int) []byte {
	if h.err != nil {
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(h.r, b); err != nil {
		h.err = fmt.Errorf("%w: header ends early at byte %d", ErrCorrupt, h.n)
		return nil
	}
	h.crc.Write(b)
	h.n += int64(n)
	return b
}

func (h *headerReader) u16() uint16 {
	if b := h.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (h *headerReader) u32() uint32 {
	if b := h.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (h *headerReader) u64() uint64 {
	if b := h.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Header is a shard object's parsed and checked header.
type Header struct {
	Entries    []TensorEntry
	Compressed bool
	RawLen     uint64 // payload bytes before compression
	DataLen    uint64 // payload bytes as stored
	Size       int64  // header bytes: the payload starts here
}

// ReadHeader reads and checks the header of a shard object from r (and
// nothing after it): magic, version, flags, counts, the header checksum
// and the tensors' placement in the payload.
func ReadHeader(r io.Reader) (*Header, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return readHeader(br)
}

func readHeader(br *bufio.Reader) (*Header, error) {
	h := &headerReader{r: br, crc: crc32.New(castagnoli)}
	if m := h.take(len(Magic)); m == nil || string(m) != Magic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if v := h.u32(); v != Version && h.err == nil {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, v, Version)
	}
	flags := h.u32()
	if h.err == nil && flags&^uint32(flagZstd) != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	count := h.u32()
	if h.err == nil && count > MaxTensors {
		return nil, fmt.Errorf("%w: %d tensors, at most %d", ErrCorrupt, count, MaxTensors)
	}
	hd := &Header{Compressed: flags&flagZstd != 0}
	for i := uint32(0); i < count && h.err == nil; i++ {
		var e TensorEntry
		e.Name = string(h.take(int(h.u16())))
		e.Type = h.u32()
		nd := h.u32()
		if h.err == nil && (nd == 0 || nd > maxDims) {
			return nil, fmt.Errorf("%w: tensor %q: %d dimensions", ErrCorrupt, e.Name, nd)
		}
		for range nd {
			e.Dims = append(e.Dims, h.u64())
		}
		e.Offset, e.Length, e.CRC32C = h.u64(), h.u64(), h.u32()
		hd.Entries = append(hd.Entries, e)
	}
	hd.RawLen, hd.DataLen = h.u64(), h.u64()
	if h.err != nil {
		return nil, h.err
	}
	want := h.crc.Sum32()
	var sb [4]byte
	if _, err := io.ReadFull(br, sb[:]); err != nil {
		return nil, fmt.Errorf("%w: header ends early at byte %d", ErrCorrupt, h.n)
	}
	if binary.LittleEndian.Uint32(sb[:]) != want {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	hd.Size = h.n + 4
	var end uint64
	for _, e := range hd.Entries {
		if e.Offset%Alignment != 0 || e.Offset < end || e.Length > hd.RawLen || e.Offset > hd.RawLen-e.Length {
			return nil, fmt.Errorf("%w: tensor %q: bytes [%d, +%d) misplaced in a %d-byte payload", ErrCorrupt, e.Name, e.Offset, e.Length, hd.RawLen)
		}
		end = e.Offset + e.Length
	}
	if !hd.Compressed && hd.DataLen != hd.RawLen {
		return nil, fmt.Errorf("%w: uncompressed payload of %d bytes stored in %d", ErrCorrupt, hd.RawLen, hd.DataLen)
	}
	return hd, nil
}

// Stream reads a shard object from r and hands each tensor to fn in order,
// with a reader of exactly its bytes, so that a tensor can be copied onward
// (into a GGUF file) without holding the object in memory. Everything is
// checked as it goes by — header checksum, table bounds, alignment, zero
// padding, payload size, and each tensor's CRC-32C once fn has read it (what
// fn leaves unread is read and checked after it returns). A corrupt object
// gives an error wrapping ErrCorrupt that names the tensor; bytes handed to
// fn before the error was found must then be discarded by the caller.
func Stream(r io.Reader, fn func(e TensorEntry, data io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	hd, err := readHeader(br)
	if err != nil {
		return err
	}
	stored := &countingReader{r: io.LimitReader(br, int64(hd.DataLen))}
	var payload io.Reader = stored
	if hd.Compressed {
		dec, err := zstd.NewReader(stored, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return fmt.Errorf("shard: zstd: %w", err)
		}
		defer dec.Close()
		payload = dec
	}
	raw := &countingReader{r: payload}
	if err := streamPayload(raw, hd.Entries, hd.RawLen, fn); err != nil {
		return err
	}
	if hd.Compressed {
		// The decoder may stop before the end of the stored stream.
		if _, err := io.Copy(io.Discard, stored); err != nil {
			return fmt.Errorf("%w: payload: %v", ErrCorrupt, err)
		}
	}
	if uint64(stored.n) != hd.DataLen {
		return fmt.Errorf("%w: payload is %d bytes, header says %d", ErrCorrupt, stored.n, hd.DataLen)
	}
	var one [1]byte
	if n, _ := br.Read(one[:]); n != 0 {
		return fmt.Errorf("%w: bytes after the payload", ErrCorrupt)
	}
	return nil
}

// streamPayload walks the raw payload: zero padding, then each tensor.
func streamPayload(raw *countingReader, entries []TensorEntry, rawLen uint64, fn func(TensorEntry, io.Reader) error) error {
	zeros := func(n uint64, where string) error {
		var buf [512]byte
		for n > 0 {
			k := min(n, uint64(len(buf)))
			if _, err := io.ReadFull(raw, buf[:k]); err != nil {
				return fmt.Errorf("%w: payload ends early %s", ErrCorrupt, where)
			}
			for _, z := range buf[:k] {
				if z != 0 {
					return fmt.Errorf("%w: non-zero padding %s", ErrCorrupt, where)
				}
			}
			n -= k
		}
		return nil
	}
	for _, e := range entries {
		if err := zeros(e.Offset-uint64(raw.n), fmt.Sprintf("before tensor %q", e.Name)); err != nil {
			return err
		}
		c := &crcReader{r: io.LimitReader(raw, int64(e.Length)), crc: crc32.New(castagnoli)}
		if err := fn(e, c); err != nil {
			if c.err != nil { // fn failed because the payload could not be read
				return fmt.Errorf("%w: tensor %q: %v", ErrCorrupt, e.Name, c.err)
			}
			return err
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			return fmt.Errorf("%w: tensor %q: %v", ErrCorrupt, e.Name, err)
		}
		if c.n != int64(e.Length) {
			return fmt.Errorf("%w: tensor %q: payload ends early", ErrCorrupt, e.Name)
		}
		if c.crc.Sum32() != e.CRC32C {
			return fmt.Errorf("%w: tensor %q: checksum mismatch", ErrCorrupt, e.Name)
		}
	}
	if uint64(raw.n) > rawLen {
		return fmt.Errorf("%w: raw payload longer than %d bytes", ErrCorrupt, rawLen)
	}
	if err := zeros(rawLen-uint64(raw.n), "after the last tensor"); err != nil {
		return err
	}
	var one [1]byte
	if n, _ := raw.Read(one[:]); n != 0 {
		return fmt.Errorf("%w: raw payload longer than %d bytes", ErrCorrupt, rawLen)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type crcReader struct {
	r   io.Reader
	crc hash.Hash32
	n   int64
	err error // the first read error other than EOF
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// Decode parses and checks a whole shard object held in memory (see
// Stream for the checks). Errors wrap ErrCorrupt and name the tensor.
func Decode(obj []byte) ([]Tensor, error) {
	var out []Tensor
	err := Stream(bytes.NewReader(obj), func(e TensorEntry, data io.Reader) error {
		b, err := io.ReadAll(data)
		if err != nil {
			return err
		}
		out = append(out, Tensor{TensorEntry: e, Data: b})
		return nil
	})
	if err != nil {
		return nil, err
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
