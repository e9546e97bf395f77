// Package store puts object storage behind one interface with two
// implementations: a local directory and S3-compatible storage (MinIO, AWS S3)
// through minio-go. Keys are slash-separated paths relative to the store's
// root (a directory, or a bucket and prefix).
package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrRange is returned (wrapped) for a range read beyond the object's end.
var ErrRange = errors.New("range beyond the object")

// ErrExists is returned (wrapped) by PutIfAbsent when the object exists.
var ErrExists = errors.New("object already exists")

// ErrDenied is matched (errors.Is) by errors of a request the store refused
// for who sent it (S3: missing, wrong or expired credentials, no
// permission); a retry does not cure it. The error's text is the store's.
var ErrDenied = errors.New("access denied")

// ErrNoCredentials is returned (wrapped) by S3.CheckCredentials when the
// environment and the IAM role provide no credentials.
var ErrNoCredentials = errors.New("no S3 credentials")

// deniedError marks a store's refusal as ErrDenied and keeps its text.
type deniedError struct{ err error }

func (e deniedError) Error() string        { return e.err.Error() }
func (e deniedError) Unwrap() error        { return e.err }
func (e deniedError) Is(target error) bool { return target == ErrDenied }

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Key is the object's key relative to the store's root.
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// ETag changes whenever the content changes. S3 gives the server's
	// ETag; the local store derives one from size and modification time.
	ETag string `json:"etag"`
	// Checksum is "crc32c:" and the base64 of the big-endian CRC-32C of the
	// whole object, when the store has it without reading the object (S3
	// objects written by adaptq; local objects report none: use Checksum).
	Checksum string    `json:"checksum,omitempty"`
	ModTime  time.Time `json:"mod_time"`
}

// Store is an object store. Every method is safe for concurrent use.
type Store interface {
	// Get opens the whole object for reading.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens length bytes from offset for reading, in one request.
	// A range that reaches beyond the object is an error.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Put writes an object from r, replacing any existing one. size may be
	// -1 when unknown; large objects are streamed (multipart on S3) and
	// never held in memory whole. A failed Put leaves no partial object.
	Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error)
	// PutIfAbsent writes an object only if none exists under key
	// (If-None-Match: *), atomically; otherwise it returns ErrExists.
	PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error)
	// Stat returns the object's size, ETag and, when available, checksum.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// Location is the store's location (no credentials), e.g.
	// "file:///data/models/x" or "s3://bucket/prefix".
	Location() string
}

// CleanKey checks a key and returns it in canonical form. Keys are relative,
// slash-separated and may not leave the store's root ("..", absolute paths).
func CleanKey(key string) (string, error) {
	if key == "" {
		return "", errors.New("empty object key")
	}
	if strings.ContainsRune(key, 0) || strings.Contains(key, "\\") {
		return "", fmt.Errorf("object key %q has a forbidden character", key)
	}
	if strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("object key %q is absolute", key)
	}
	c := path.Clean(key)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("object key %q leaves the store's root", key)
	}
	return c, nil
}

// Join joins key elements with slashes and cleans the result.
func Join(elem ...string) string { return path.Join(elem...) }

// ReadAll reads a whole object into memory. Use it for small objects only.
func ReadAll(ctx context.Context, s Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Describe(s, key), err)
	}
	return b, nil
}

// ReadRange reads length bytes at offset of an object into memory.
func ReadRange(ctx context.Context, s Store, key string, offset, length int64) ([]byte, error) {
	rc, err := s.GetRange(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, length)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("read %d bytes at %d of %s: %w", length, offset, Describe(s, key), err)
	}
	return b, nil
}

// Describe names an object for error messages: its store location and key.
func Describe(s Store, key string) string {
	return strings.TrimSuffix(s.Location(), "/") + "/" + key
}

// CRC32C is the Castagnoli CRC table used for object checksums.
func crcTable() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// FormatCRC32C renders a CRC-32C the way ObjectInfo.Checksum does.
func FormatCRC32C(sum uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], sum)
	return "crc32c:" + base64.StdEncoding.EncodeToString(b[:])
}

// Checksum returns the object's checksum: the one Stat reports when the
// store has it, otherwise the CRC-32C computed by reading the object.
func Checksum(ctx context.Context, s Store, key string) (string, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return "", err
	}
	if info.Checksum != "" {
		return info.Checksum, nil
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := crc32.New(crcTable())
	if _, err := io.Copy(h, rc); err != nil {
		return "", fmt.Errorf("checksum %s: %w", Describe(s, key), err)
	}
	return FormatCRC32C(h.Sum32()), nil
}
