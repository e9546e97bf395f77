package store

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// ReaderAt reads an object through range reads, for formats that seek
// (GGUF, Parquet). Reads of up to readAhead bytes are served from one
// cached window, so parsing a header of many small fields costs few requests.
type ReaderAt struct {
	ctx       context.Context
	s         Store
	key       string
	size      int64
	readAhead int64
	mu        sync.Mutex
	winOff    int64
	win       []byte
}

// NewReaderAt returns a ReaderAt over an object of the given size; a
// readAhead of 0 means 1 MiB.
func NewReaderAt(ctx context.Context, s Store, key string, size, readAhead int64) *ReaderAt {
	if readAhead <= 0 {
		readAhead = 1 << 20
	}
	return &ReaderAt{ctx: ctx, s: s, key: key, size: size, readAhead: readAhead}
}

// Size is the object's size.
func (r *ReaderAt) Size() int64 { return r.size }

// ReadAt implements io.ReaderAt.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", Describe(r.s, r.key), off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	if want > r.readAhead {
		b, err := ReadRange(r.ctx, r.s, r.key, off, want)
		if err != nil {
			return 0, err
		}
		n := copy(p, b)
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if off < r.winOff || off+want > r.winOff+int64(len(r.win)) {
		n := min(r.readAhead, r.size-off)
		b, err := ReadRange(r.ctx, r.s, r.key, off, n)
		if err != nil {
			return 0, err
		}
		r.winOff, r.win = off, b
	}
	n := copy(p, r.win[off-r.winOff:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
