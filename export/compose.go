package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// composer is a store that can build an object server-side from ranges of
// others (store.S3).
type composer interface {
	store.Store
	Compose(ctx context.Context, dst string, parts []store.Part) (store.ObjectInfo, error)
}

// errNoCompose says the layout does not allow a server-side compose; the
// caller streams the file instead.
var errNoCompose = errors.New("compose not possible")

// shardPart is a shard object's header and key.
type shardPart struct {
	hdr *shards.Header
	key string
}

// composeGGUF builds the GGUF file server-side when the store can: the
// data section of the file is exactly the concatenation of the shards'
// uncompressed payloads (both pad every tensor to 32 bytes), so the file is
// [header + rope_freqs + first payload] (uploaded) followed by byte ranges
// of the other shard objects (copied by the server). S3 needs every part
// but the last to be at least 5 MiB; when a part is smaller, a payload is
// compressed or the offsets do not line up, it returns errNoCompose. The
// result is read back once to check every tensor's CRC-32C and to compute
// its SHA-256; a mismatch deletes it.
func composeGGUF(ctx context.Context, out composer, plan *gguf.Plan, freqs []float32, recs []ShardRecord) (store.ObjectInfo, string, error) {
	header, tensors, size, err := plan.Layout()
	if err != nil {
		return store.ObjectInfo{}, "", err
	}
	prefix := uint64(0) // data bytes before the first shard's payload
	ti := 0
	if freqs != nil {
		if len(tensors) < 2 {
			return store.ObjectInfo{}, "", errNoCompose
		}
		prefix, ti = tensors[1].Offset, 1
	}
	parts := make([]shardPart, len(recs))
	base := prefix
	for k, rec := range recs {
		rc, err := out.GetRange(ctx, rec.Key, 0, min(rec.Size, 1<<20))
		if err != nil {
			return store.ObjectInfo{}, "", err
		}
		hdr, err := shards.ReadHeader(rc)
		rc.Close()
		if err != nil {
			return store.ObjectInfo{}, "", fmt.Errorf("shard %s: %w", rec.Shard, err)
		}
		if hdr.Compressed {
			return store.ObjectInfo{}, "", errNoCompose
		}
		for _, e := range hdr.Entries {
			if ti >= len(tensors) || tensors[ti].Name != e.Name || tensors[ti].Offset != base+e.Offset || tensors[ti].Size != e.Length {
				return store.ObjectInfo{}, "", errNoCompose
			}
			ti++
		}
		parts[k] = shardPart{hdr, rec.Key}
		base += hdr.RawLen
	}
	if ti != len(tensors) || uint64(len(header))+base != size || len(parts) == 0 {
		return store.ObjectInfo{}, "", errNoCompose
	}
	first := int64(len(header)) + int64(prefix) + int64(parts[0].hdr.RawLen)
	if first < store.MinComposePart {
		return store.ObjectInfo{}, "", errNoCompose
	}
	for _, p := range parts[1 : len(parts)-1] {
		if int64(p.hdr.RawLen) < store.MinComposePart {
			return store.ObjectInfo{}, "", errNoCompose
		}
	}

	// Part 0: header, rope_freqs and the first payload, streamed.
	head := bytes.NewBuffer(append([]byte(nil), header...))
	if freqs != nil {
		head.Write(gguf.EncodeFloat(nil, freqs, gguf.TypeF32))
		head.Write(make([]byte, int(prefix)-4*len(freqs)))
	}
	body, err := out.GetRange(ctx, parts[0].key, parts[0].hdr.Size, int64(parts[0].hdr.RawLen))
	if err != nil {
		return store.ObjectInfo{}, "", err
	}
	part0 := GGUFKey + ".part0"
	_, err = out.Put(ctx, part0, io.MultiReader(head, body), first)
	body.Close()
	if err != nil {
		return store.ObjectInfo{}, "", err
	}
	defer out.Delete(context.WithoutCancel(ctx), part0)
	ranges := []store.Part{{Key: part0, Offset: 0, Length: first}}
	for _, p := range parts[1:] {
		ranges = append(ranges, store.Part{Key: p.key, Offset: p.hdr.Size, Length: int64(p.hdr.RawLen)})
	}
	info, err := out.Compose(ctx, GGUFKey, ranges)
	if err != nil {
		return store.ObjectInfo{}, "", err
	}
	sum, err := verifyGGUF(ctx, out, uint64(len(header)), parts, prefix)
	if err != nil {
		out.Delete(context.WithoutCancel(ctx), GGUFKey)
		return store.ObjectInfo{}, "", err
	}
	return info, sum, nil
}

// verifyGGUF reads the composed file once: SHA-256 of all of it and the
// CRC-32C of every shard tensor at its offset.
func verifyGGUF(ctx context.Context, out store.Store, dataStart uint64, parts []shardPart, prefix uint64) (string, error) {
	rc, err := out.Get(ctx, GGUFKey)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	pos := uint64(0)
	skip := func(to uint64) error {
		if to < pos {
			return fmt.Errorf("compose check: offset %d behind %d", to, pos)
		}
		n, err := io.CopyN(io.Discard, r, int64(to-pos))
		pos += uint64(n)
		return err
	}
	base := prefix
	for _, p := range parts {
		for _, e := range p.hdr.Entries {
			if err := skip(dataStart + base + e.Offset); err != nil {
				return "", err
			}
			c := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			n, err := io.CopyN(c, r, int64(e.Length))
			pos += uint64(n)
			if err != nil {
				return "", fmt.Errorf("compose check: tensor %s: %w", e.Name, err)
			}
			if c.Sum32() != e.CRC32C {
				return "", fmt.Errorf("compose check: tensor %s: checksum mismatch in the composed file", e.Name)
			}
		}
		base += p.hdr.RawLen
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
