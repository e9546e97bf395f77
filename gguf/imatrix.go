package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// Importance matrices (imatrix files), as llama.cpp's llama-imatrix writes
// and llama-quantize --imatrix reads them.
//
// The GGUF form has general.type = "imatrix", imatrix.datasets (array of
// strings), imatrix.chunk_count and imatrix.chunk_size (uint32) and, per
// weight, two F32 tensors: "<weight>.in_sum2" of dims [cols, mats] holding
// Σx² of each input column over every token that passed through the weight
// (one row per matrix: 1 for a dense weight, the expert count for a stacked
// MoE weight), and "<weight>.counts" of dims [1, mats] holding those token
// counts; like ggml's writer, a dense weight's tensors drop the trailing
// dimension of 1 ([cols] and [1]). adaptq also writes "<weight>.in_sum" (Σx, same dims as in_sum2),
// which llama.cpp's loader ignores.
//
// The legacy .dat form is: int32 entry count; per entry an int32 name
// length, the name, int32 ncall, int32 nval and nval float32 values, which
// are (Σx²/tokens)·ncall; then optionally an int32 chunk count, an int32
// dataset-name length and the dataset name.

// IMatrix metadata keys and tensor name suffixes.
const (
	KeyIMatrixDatasets   = "imatrix.datasets"
	KeyIMatrixChunkCount = "imatrix.chunk_count"
	KeyIMatrixChunkSize  = "imatrix.chunk_size"
	IMatrixType          = "imatrix" // value of general.type
	SuffixInSum2         = ".in_sum2"
	SuffixInSum          = ".in_sum"
	SuffixCounts         = ".counts"
)

// maxIMatrixEntries bounds the entry count of a legacy file before any
// entry is read (a 405B dense model has under 1,000 linear weights; a large
// MoE with per-expert entries still far fewer than this).
const maxIMatrixEntries = 1 << 20

// IMatrix is an importance matrix: per weight, activation statistics of
// its input columns over a calibration text.
type IMatrix struct {
	// Datasets names the calibration texts.
	Datasets []string
	// ChunkCount is the number of chunks (windows) collected; ChunkSize
	// their length in tokens (0 when unknown, as in legacy files).
	ChunkCount int
	ChunkSize  int
	// Entries maps a GGUF weight name ("blk.0.attn_q.weight") to its
	// statistics.
	Entries map[string]*IMatrixEntry
	// Legacy is true when the matrix was read from the legacy .dat form.
	Legacy bool
	// Extra holds further metadata (adaptq writes adaptq.* keys saying how
	// the matrix was collected); the GGUF form keeps it, the legacy form
	// has no room for it.
	Extra Metadata
}

// IMatrixEntry holds one weight's statistics for Mats matrices (1 for a
// dense weight) of Cols input columns each.
type IMatrixEntry struct {
	Cols, Mats int
	// Sum2 holds Σx² per column, matrix-major (Mats×Cols values). In a
	// legacy file it holds (Σx²/tokens)·ncall, as the file does.
	Sum2 []float32
	// Sum holds Σx per column like Sum2, or is nil when the file has none.
	Sum []float32
	// Counts holds the tokens per matrix (ncall for a legacy file).
	Counts []float32
}

// Importance returns what llama-quantize passes to ggml for the weight:
// per matrix and column, Sum2 / count, or 1 for a matrix whose count is 0.
func (e *IMatrixEntry) Importance() []float32 {
	out := make([]float32, len(e.Sum2))
	for m := 0; m < e.Mats; m++ {
		c := e.Counts[m]
		row := out[m*e.Cols : (m+1)*e.Cols]
		if c > 0 {
			for i := range row {
				row[i] = e.Sum2[m*e.Cols+i] / c
			}
		} else {
			for i := range row {
				row[i] = 1
			}
		}
	}
	return out
}

// Names returns the entry names in sorted order.
func (m *IMatrix) Names() []string {
	names := make([]string, 0, len(m.Entries))
	for n := range m.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Check validates the matrix against a model: cols maps every weight the
// matrix may describe to its input column count (a name absent from cols
// is an error, naming it); required lists weights that must have an
// entry. Sums must be finite and Σx² non-negative, and every count
// positive.
func (m *IMatrix) Check(cols map[string]int, required []string) error {
	for _, name := range m.Names() {
		e := m.Entries[name]
		want, ok := cols[name]
		if !ok {
			return fmt.Errorf("imatrix entry %q: the model has no such weight", name)
		}
		if e.Cols != want {
			return fmt.Errorf("imatrix entry %q: %d columns, the model's weight has %d", name, e.Cols, want)
		}
		if err := e.check(); err != nil {
			return fmt.Errorf("imatrix entry %q: %w", name, err)
		}
	}
	for _, name := range required {
		if _, ok := m.Entries[name]; !ok {
			return fmt.Errorf("imatrix has no entry for weight %q", name)
		}
	}
	return nil
}

func (e *IMatrixEntry) check() error {
	if e.Cols <= 0 || e.Mats <= 0 || len(e.Sum2) != e.Cols*e.Mats || len(e.Counts) != e.Mats {
		return fmt.Errorf("inconsistent sizes: %d columns × %d matrices, %d sums, %d counts", e.Cols, e.Mats, len(e.Sum2), len(e.Counts))
	}
	if e.Sum != nil && len(e.Sum) != len(e.Sum2) {
		return fmt.Errorf("%d Σx values for %d Σx² values", len(e.Sum), len(e.Sum2))
	}
	for i, v := range e.Sum2 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v < 0 {
			return fmt.Errorf("Σx² of column %d is %v (want finite and ≥ 0)", i%e.Cols, v)
		}
	}
	for i, v := range e.Sum {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("Σx of column %d is %v (want finite)", i%e.Cols, v)
		}
	}
	for i, c := range e.Counts {
		if !(c > 0) || math.IsInf(float64(c), 0) {
			return fmt.Errorf("token count of matrix %d is %v (want > 0)", i, c)
		}
	}
	return nil
}

// WriteIMatrix writes m in llama.cpp's GGUF imatrix form, entries in sorted
// name order.
func WriteIMatrix(w io.Writer, m *IMatrix) error {
	var md Metadata
	md.Set("general.type", IMatrixType)
	ds := m.Datasets
	if ds == nil {
		ds = []string{}
	}
	md.Set(KeyIMatrixDatasets, ds)
	md.Set(KeyIMatrixChunkCount, uint32(m.ChunkCount))
	md.Set(KeyIMatrixChunkSize, uint32(m.ChunkSize))
	for _, kv := range m.Extra {
		if _, dup := md.Get(kv.Key); dup || kv.Key == KeyAlignment {
			return fmt.Errorf("gguf: imatrix: extra metadata key %q is reserved", kv.Key)
		}
		md.Set(kv.Key, kv.Value)
	}
	p := &Plan{Metadata: md}
	type part struct {
		name string
		vals []float32
	}
	var parts []part
	for _, name := range m.Names() {
		e := m.Entries[name]
		if err := e.check(); err != nil {
			return fmt.Errorf("gguf: imatrix entry %q: %w", name, err)
		}
		add := func(suffix string, vals []float32, dims ...uint64) error {
			ti, err := NewTensorInfo(name+suffix, TypeF32, dims...)
			if err != nil {
				return fmt.Errorf("gguf: imatrix: %w", err)
			}
			p.Tensors = append(p.Tensors, ti)
			parts = append(parts, part{ti.Name, vals})
			return nil
		}
		// As ggml writes them: trailing dimensions of 1 dropped.
		dims, cdims := []uint64{uint64(e.Cols), uint64(e.Mats)}, []uint64{1, uint64(e.Mats)}
		if e.Mats == 1 {
			dims, cdims = dims[:1], cdims[:1]
		}
		if err := add(SuffixInSum2, e.Sum2, dims...); err != nil {
			return err
		}
		if e.Sum != nil {
			if err := add(SuffixInSum, e.Sum, dims...); err != nil {
				return err
			}
		}
		if err := add(SuffixCounts, e.Counts, cdims...); err != nil {
			return err
		}
	}
	gw, err := NewWriter(w, p)
	if err != nil {
		return err
	}
	var buf []byte
	for _, pt := range parts {
		buf = buf[:0]
		for _, v := range pt.vals {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		if err := gw.WriteTensor(pt.name, buf); err != nil {
			return err
		}
	}
	return gw.Close()
}

// ReadIMatrix reads an importance matrix in either form: GGUF when the
// file starts with the GGUF magic, else the legacy .dat form. Every size is
// checked against the file before it is used; errors name the entry or key.
func ReadIMatrix(r io.ReaderAt, size int64) (*IMatrix, error) {
	var magic [4]byte
	if size >= 4 {
		if _, err := r.ReadAt(magic[:], 0); err != nil {
			return nil, fmt.Errorf("imatrix: read magic: %w", err)
		}
	}
	if string(magic[:]) == Magic {
		return readIMatrixGGUF(r, size)
	}
	return readIMatrixLegacy(r, size)
}

func readIMatrixGGUF(r io.ReaderAt, size int64) (*IMatrix, error) {
	f, err := Read(r, size)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	if t, err := f.Metadata.GetString("general.type"); err == nil && t != IMatrixType {
		return nil, fmt.Errorf("imatrix: general.type is %q, want %q", t, IMatrixType)
	}
	m := &IMatrix{Entries: map[string]*IMatrixEntry{}}
	if v, ok := f.Metadata.Get(KeyIMatrixDatasets); ok {
		ds, isStrings := v.([]string)
		if !isStrings {
			return nil, fmt.Errorf("imatrix: metadata key %q is %T, want an array of strings", KeyIMatrixDatasets, v)
		}
		m.Datasets = ds
	}
	for key, dst := range map[string]*int{KeyIMatrixChunkCount: &m.ChunkCount, KeyIMatrixChunkSize: &m.ChunkSize} {
		if _, ok := f.Metadata.Get(key); !ok {
			continue
		}
		n, err := f.Metadata.GetUint(key)
		if err != nil || n > math.MaxInt32 {
			return nil, fmt.Errorf("imatrix: metadata key %q: want a uint32 (%v)", key, err)
		}
		*dst = int(n)
	}
	for _, kv := range f.Metadata {
		switch kv.Key {
		case "general.type", KeyIMatrixDatasets, KeyIMatrixChunkCount, KeyIMatrixChunkSize, KeyAlignment:
		default:
			m.Extra = append(m.Extra, kv)
		}
	}
	// Group the tensors by weight name.
	type trio struct{ sum2, sum, counts *TensorInfo }
	byWeight := map[string]*trio{}
	get := func(name string) *trio {
		if byWeight[name] == nil {
			byWeight[name] = &trio{}
		}
		return byWeight[name]
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		switch {
		case strings.HasSuffix(t.Name, SuffixInSum2):
			get(strings.TrimSuffix(t.Name, SuffixInSum2)).sum2 = t
		case strings.HasSuffix(t.Name, SuffixInSum):
			get(strings.TrimSuffix(t.Name, SuffixInSum)).sum = t
		case strings.HasSuffix(t.Name, SuffixCounts):
			get(strings.TrimSuffix(t.Name, SuffixCounts)).counts = t
		}
	}
	if len(byWeight) == 0 {
		return nil, fmt.Errorf("imatrix: no %s/%s tensors in the file", SuffixInSum2, SuffixCounts)
	}
	readF32 := func(t *TensorInfo) ([]float32, error) {
		if t.Type != TypeF32 {
			return nil, fmt.Errorf("tensor %q is %s, want F32", t.Name, TypeName(t.Type))
		}
		b, err := f.ReadTensor(r, t.Name)
		if err != nil {
			return nil, err
		}
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	}
	for name, tr := range byWeight {
		if tr.sum2 == nil || tr.counts == nil {
			return nil, fmt.Errorf("imatrix entry %q: needs both %s and %s tensors", name, SuffixInSum2, SuffixCounts)
		}
		// llama-imatrix writes [cols, mats] and [1, mats]; ggml's GGUF
		// writer drops trailing dimensions of 1, so a dense weight's
		// tensors are [cols] and [1].
		cols, mats, ok := matDims(tr.sum2.Dims)
		ccols, cmats, cok := matDims(tr.counts.Dims)
		if !ok || !cok || ccols != 1 || cmats != mats {
			return nil, fmt.Errorf("imatrix entry %q: %s dims %v and %s dims %v do not match ([cols, mats] and [1, mats])", name, SuffixInSum2, tr.sum2.Dims, SuffixCounts, tr.counts.Dims)
		}
		e := &IMatrixEntry{Cols: cols, Mats: mats}
		var err error
		if e.Sum2, err = readF32(tr.sum2); err != nil {
			return nil, fmt.Errorf("imatrix entry %q: %w", name, err)
		}
		if e.Counts, err = readF32(tr.counts); err != nil {
			return nil, fmt.Errorf("imatrix entry %q: %w", name, err)
		}
		if tr.sum != nil {
			if c, m, ok := matDims(tr.sum.Dims); !ok || c != cols || m != mats {
				return nil, fmt.Errorf("imatrix entry %q: %s dims %v differ from %s dims %v", name, SuffixInSum, tr.sum.Dims, SuffixInSum2, tr.sum2.Dims)
			}
			if e.Sum, err = readF32(tr.sum); err != nil {
				return nil, fmt.Errorf("imatrix entry %q: %w", name, err)
			}
		}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("imatrix entry %q: %w", name, err)
		}
		m.Entries[name] = e
	}
	return m, nil
}

// matDims reads [cols] or [cols, mats] (at most 2^31 of either).
func matDims(d []uint64) (cols, mats int, ok bool) {
	switch {
	case len(d) == 1 && d[0] > 0 && d[0] < 1<<31:
		return int(d[0]), 1, true
	case len(d) == 2 && d[0] > 0 && d[0] < 1<<31 && d[1] > 0 && d[1] < 1<<31:
		return int(d[0]), int(d[1]), true
	}
	return 0, 0, false
}

// legacyReader reads little-endian values of a legacy file, bounding every
// length by the bytes left.
type legacyReader struct {
	r    io.ReaderAt
	pos  int64
	size int64
}

func (l *legacyReader) bytes(n int64) ([]byte, error) {
	if n < 0 || n > l.size-l.pos {
		return nil, fmt.Errorf("%d bytes at offset %d reach beyond the end of the file (%d bytes)", n, l.pos, l.size)
	}
	b := make([]byte, n)
	if _, err := l.r.ReadAt(b, l.pos); err != nil && !(err == io.EOF && int64(len(b)) == n) {
		return nil, fmt.Errorf("read %d bytes at offset %d: %w", n, l.pos, err)
	}
	l.pos += n
	return b, nil
}

func (l *legacyReader) i32() (int32, error) {
	b, err := l.bytes(4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

func readIMatrixLegacy(r io.ReaderAt, size int64) (*IMatrix, error) {
	l := &legacyReader{r: r, size: size}
	n, err := l.i32()
	if err != nil {
		return nil, fmt.Errorf("imatrix (legacy): entry count: %w", err)
	}
	// An entry takes at least 16 bytes (three int32 and one value).
	if n < 1 || n > maxIMatrixEntries || int64(n)*16 > size-4 {
		return nil, fmt.Errorf("imatrix (legacy): entry count %d is out of range for a file of %d bytes", n, size)
	}
	m := &IMatrix{Entries: map[string]*IMatrixEntry{}, Legacy: true}
	for i := 0; i < int(n); i++ {
		nameLen, err := l.i32()
		if err != nil {
			return nil, fmt.Errorf("imatrix (legacy): entry %d: name length: %w", i, err)
		}
		if nameLen < 1 || nameLen > 4096 {
			return nil, fmt.Errorf("imatrix (legacy): entry %d: name length %d (want 1 to 4096)", i, nameLen)
		}
		nb, err := l.bytes(int64(nameLen))
		if err != nil {
			return nil, fmt.Errorf("imatrix (legacy): entry %d: name: %w", i, err)
		}
		name := string(bytes.TrimRight(nb, "\x00"))
		if _, dup := m.Entries[name]; dup {
			return nil, fmt.Errorf("imatrix (legacy): entry %q appears twice", name)
		}
		ncall, err := l.i32()
		if err != nil {
			return nil, fmt.Errorf("imatrix (legacy): entry %q: ncall: %w", name, err)
		}
		nval, err := l.i32()
		if err != nil {
			return nil, fmt.Errorf("imatrix (legacy): entry %q: value count: %w", name, err)
		}
		if nval < 1 {
			return nil, fmt.Errorf("imatrix (legacy): entry %q: value count %d (want ≥ 1)", name, nval)
		}
		vb, err := l.bytes(int64(nval) * 4)
		if err != nil {
			return nil, fmt.Errorf("imatrix (legacy): entry %q: %d values: %w", name, nval, err)
		}
		e := &IMatrixEntry{Cols: int(nval), Mats: 1, Sum2: make([]float32, nval), Counts: []float32{float32(ncall)}}
		for j := range e.Sum2 {
			e.Sum2[j] = math.Float32frombits(binary.LittleEndian.Uint32(vb[4*j:]))
		}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("imatrix (legacy): entry %q: %w", name, err)
		}
		m.Entries[name] = e
	}
	if l.pos == size {
		return m, nil
	}
	chunks, err := l.i32()
	if err != nil {
		return nil, fmt.Errorf("imatrix (legacy): chunk count: %w", err)
	}
	if chunks < 0 {
		return nil, fmt.Errorf("imatrix (legacy): chunk count %d is negative", chunks)
	}
	m.ChunkCount = int(chunks)
	if l.pos == size {
		return m, nil
	}
	dl, err := l.i32()
	if err != nil {
		return nil, fmt.Errorf("imatrix (legacy): dataset name length: %w", err)
	}
	if dl < 0 || int64(dl) != size-l.pos {
		return nil, fmt.Errorf("imatrix (legacy): dataset name length %d, %d bytes left in the file", dl, size-l.pos)
	}
	if dl > 0 {
		db, err := l.bytes(int64(dl))
		if err != nil {
			return nil, fmt.Errorf("imatrix (legacy): dataset name: %w", err)
		}
		m.Datasets = []string{string(db)}
	}
	return m, nil
}

// WriteIMatrixLegacy writes m in the legacy .dat form, which keeps one
// matrix per entry, no Σx and, instead of Σx² and counts, (Σx²/tokens)·ncall
// with ncall = ⌈tokens/ChunkSize⌉ (1 when ChunkSize is 0).
func WriteIMatrixLegacy(w io.Writer, m *IMatrix) error {
	var b []byte
	i32 := func(v int) { b = binary.LittleEndian.AppendUint32(b, uint32(int32(v))) }
	names := m.Names()
	i32(len(names))
	for _, name := range names {
		e := m.Entries[name]
		if err := e.check(); err != nil {
			return fmt.Errorf("gguf: imatrix entry %q: %w", name, err)
		}
		if e.Mats != 1 {
			return fmt.Errorf("gguf: imatrix entry %q: the legacy form holds one matrix per entry, this has %d", name, e.Mats)
		}
		ncall := 1
		if m.ChunkSize > 0 {
			ncall = int(math.Ceil(float64(e.Counts[0]) / float64(m.ChunkSize)))
		}
		if m.Legacy {
			ncall = int(e.Counts[0])
		}
		i32(len(name))
		b = append(b, name...)
		i32(ncall)
		i32(e.Cols)
		for _, v := range e.Sum2 {
			if !m.Legacy {
				v = v / e.Counts[0] * float32(ncall)
			}
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	i32(m.ChunkCount)
	ds := ""
	if len(m.Datasets) > 0 {
		ds = m.Datasets[len(m.Datasets)-1]
	}
	i32(len(ds))
	b = append(b, ds...)
	_, err := w.Write(b)
	return err
}
