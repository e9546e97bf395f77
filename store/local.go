package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Local is a Store over a directory of the local file system. Writes go to a
// temporary file in the target's directory and are renamed (Put) or linked
// (PutIfAbsent) into place, so readers never see partial objects.
type Local struct {
	root string
}

// NewLocal returns a store rooted at dir. The directory need not exist yet;
// it is created by the first write.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %q: %w", dir, err)
	}
	return &Local{root: abs}, nil
}

// Root is the store's directory.
func (l *Local) Root() string { return l.root }

// Location implements Store.
func (l *Local) Location() string { return "file://" + filepath.ToSlash(l.root) }

func (l *Local) path(key string) (string, error) {
	c, err := CleanKey(key)
	if err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(c)), nil
}

func (l *Local) notFound(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", Describe(l, key), ErrNotFound)
	}
	return fmt.Errorf("%s: %w", Describe(l, key), err)
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, l.notFound(key, err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is a directory: %w", Describe(l, key), ErrNotFound)
	}
	return f, nil
}

type sectionCloser struct {
	*io.SectionReader
	io.Closer
}

// GetRange implements Store.
func (l *Local) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("%s: invalid range offset %d length %d", Describe(l, key), offset, length)
	}
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, l.notFound(key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, l.notFound(key, err)
	}
	if offset+length > st.Size() {
		f.Close()
		return nil, fmt.Errorf("%s: range [%d, %d) beyond the object's %d bytes: %w", Describe(l, key), offset, offset+length, st.Size(), ErrRange)
	}
	return sectionCloser{io.NewSectionReader(f, offset, length), f}, nil
}

// writeTemp streams r into a new temporary file beside the target and
// returns its path; the caller moves it into place or removes it.
func (l *Local) writeTemp(ctx context.Context, key string, r io.Reader, size int64) (target, tmp string, err error) {
	target, err = l.path(key)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", "", fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	f, err := os.CreateTemp(filepath.Dir(target), ".adaptq-tmp-*")
	if err != nil {
		return "", "", fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	tmp = f.Name()
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", "", fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	fail := func(err error) (string, string, error) {
		f.Close()
		os.Remove(tmp)
		return "", "", fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return fail(err)
	}
	if size >= 0 && n != size {
		return fail(fmt.Errorf("wrote %d bytes, expected %d", n, size))
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", "", fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	return target, tmp, nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	target, tmp, err := l.writeTemp(ctx, key, r, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return ObjectInfo{}, fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	return l.Stat(ctx, key)
}

// PutIfAbsent implements Store. The hard link that publishes the object fails
// if the target exists, which makes create-once writes atomic.
func (l *Local) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	if p, err := l.path(key); err == nil {
		if _, err := os.Lstat(p); err == nil {
			return ObjectInfo{}, fmt.Errorf("%s: %w", Describe(l, key), ErrExists)
		}
	}
	target, tmp, err := l.writeTemp(ctx, key, r, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, target); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ObjectInfo{}, fmt.Errorf("%s: %w", Describe(l, key), ErrExists)
		}
		return ObjectInfo{}, fmt.Errorf("put %s: %w", Describe(l, key), err)
	}
	return l.Stat(ctx, key)
}

// Stat implements Store. The ETag is derived from size and modification
// time; the local store keeps no checksum (see Checksum).
func (l *Local) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, l.notFound(key, err)
	}
	if st.IsDir() {
		return ObjectInfo{}, fmt.Errorf("%s is a directory: %w", Describe(l, key), ErrNotFound)
	}
	c, _ := CleanKey(key)
	return localInfo(c, st), nil
}

func localInfo(key string, st fs.FileInfo) ObjectInfo {
	return ObjectInfo{
		Key:     key,
		Size:    st.Size(),
		ETag:    strconv.FormatInt(st.Size(), 16) + "-" + strconv.FormatInt(st.ModTime().UnixNano(), 16),
		ModTime: st.ModTime(),
	}
}

// List implements Store. Temporary files of unfinished writes are not listed.
func (l *Local) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == l.root {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(l.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p != l.root && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".adaptq-tmp-") || !strings.HasPrefix(key, prefix) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return nil // removed while listing
		}
		out = append(out, localInfo(key, st))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Describe(l, prefix), err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", Describe(l, key), err)
	}
	return nil
}

// ctxReader stops a copy when its context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
