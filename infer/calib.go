package infer

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
	"sort"

	"github.com/ohms-project/adaptq/gguf"
)

// Calibration is a forward pass with taps: at every place where the model
// feeds a linear layer, the input activations are summed per column (Σx²
// and Σx) and the tokens counted. These are the statistics of llama.cpp's
// importance matrix (its in_sum2 and counts, plus Σx).
//
// The sums merge exactly. Within one window the sums are float64, added in
// token order; windows are then added in 128-bit fixed point (Fixed), whose
// addition is associative, so the sums of any partition of a text's
// windows, merged in any order, are bit-for-bit the sums of one pass over
// all of them — the same guarantee the evaluation sums give.

// SiteKind says which linear layers an activation site feeds.
type SiteKind int

// The activation sites of a Llama-family layer, and the head.
const (
	SiteAttn SiteKind = iota // the attention input: q, k and v
	SiteO                    // the attention output projection's input
	SiteMLP                  // the MLP input: gate and up
	SiteDown                 // the down projection's input
	SiteHead                 // the final norm's output: lm_head
)

// Site is one place where activations enter linear layers.
type Site struct {
	Layer int      `json:"layer"` // -1 for SiteHead
	Kind  SiteKind `json:"kind"`
}

// Weights returns the GGUF names of the weights the site feeds.
func (s Site) Weights() []string {
	if s.Kind == SiteHead {
		return []string{"output.weight"}
	}
	var bases []string
	switch s.Kind {
	case SiteAttn:
		bases = []string{"attn_q", "attn_k", "attn_v"}
	case SiteO:
		bases = []string{"attn_output"}
	case SiteMLP:
		bases = []string{"ffn_gate", "ffn_up"}
	case SiteDown:
		bases = []string{"ffn_down"}
	}
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = fmt.Sprintf("blk.%d.%s.weight", s.Layer, b)
	}
	return out
}

// Fixed is a signed 128-bit fixed-point number with 64 fractional bits
// (two's complement: the value is (Hi·2^64 + Lo)·2^-64). It holds sums of
// activation statistics exactly: addition is associative.
type Fixed struct {
	Hi int64  `json:"h"`
	Lo uint64 `json:"l"`
}

// FixedOf converts v to Fixed, truncating toward zero below 2^-64. It fails
// for NaN, ±Inf and |v| ≥ 2^62.
func FixedOf(v float64) (Fixed, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) >= 1<<62 {
		return Fixed{}, fmt.Errorf("infer: %v is out of the calibration sums' range", v)
	}
	if v == 0 {
		return Fixed{}, nil
	}
	neg := v < 0
	frac, exp := math.Frexp(math.Abs(v)) // |v| = frac·2^exp, frac in [0.5, 1)
	mant := uint64(frac * (1 << 53))     // exact: 53 significant bits
	shift := exp - 53 + 64               // |v|·2^64 = mant·2^shift
	var hi, lo uint64
	switch {
	case shift >= 64:
		hi = mant << (shift - 64)
	case shift > 0:
		hi, lo = mant>>(64-shift), mant<<shift
	case shift > -64:
		lo = mant >> -shift
	}
	f := Fixed{Hi: int64(hi), Lo: lo}
	if neg {
		f = f.neg()
	}
	return f, nil
}

func (f Fixed) neg() Fixed {
	lo, borrow := bits.Sub64(0, f.Lo, 0)
	hi, _ := bits.Sub64(0, uint64(f.Hi), borrow)
	return Fixed{Hi: int64(hi), Lo: lo}
}

// Add returns f + g (wrapping on overflow, which the range of FixedOf and
// any realistic token count keep far away: 2^62 per value, 2^63 in all).
func (f Fixed) Add(g Fixed) Fixed {
	lo, carry := bits.Add64(f.Lo, g.Lo, 0)
	hi, _ := bits.Add64(uint64(f.Hi), uint64(g.Hi), carry)
	return Fixed{Hi: int64(hi), Lo: lo}
}

// Float64 returns f as a float64 (rounded when it has more than 53
// significant bits).
func (f Fixed) Float64() float64 {
	if f.Hi < 0 {
		return -f.neg().Float64()
	}
	return (float64(uint64(f.Hi))*(1<<64) + float64(f.Lo)) / (1 << 64)
}

// SiteSums are one site's sums.
type SiteSums struct {
	Site   Site    `json:"site"`
	Tokens int64   `json:"tokens"`
	Sum2   []Fixed `json:"sum2"` // Σx² per column
	Sum    []Fixed `json:"sum"`  // Σx per column
}

// CalibSums are mergeable calibration sums over a set of windows.
type CalibSums struct {
	// Windows are the indices of the windows summed, ascending.
	Windows []int `json:"windows"`
	// Sites in the model's order (layer by layer: attention, o, MLP, down;
	// then the head when it was collected).
	Sites []SiteSums `json:"sites"`
}

// Columns returns the total number of columns over all sites.
func (c *CalibSums) Columns() int {
	n := 0
	for i := range c.Sites {
		n += len(c.Sites[i].Sum2)
	}
	return n
}

// MergeCalib adds the sums of disjoint sets of windows. The result is
// identical for any partition and any order of the parts. It fails when a
// window appears twice or the parts' sites differ.
func MergeCalib(parts ...*CalibSums) (*CalibSums, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("infer: merge of no calibration sums")
	}
	out := &CalibSums{}
	for pi, p := range parts {
		if p == nil {
			return nil, fmt.Errorf("infer: calibration merge: part %d is nil", pi)
		}
		if pi == 0 {
			out.Sites = make([]SiteSums, len(p.Sites))
			for i, s := range p.Sites {
				out.Sites[i] = SiteSums{Site: s.Site, Sum2: make([]Fixed, len(s.Sum2)), Sum: make([]Fixed, len(s.Sum))}
			}
		}
		if len(p.Sites) != len(out.Sites) {
			return nil, fmt.Errorf("infer: calibration merge: part %d has %d sites, part 0 has %d", pi, len(p.Sites), len(out.Sites))
		}
		for i := range p.Sites {
			s, o := &p.Sites[i], &out.Sites[i]
			if s.Site != o.Site || len(s.Sum2) != len(o.Sum2) || len(s.Sum) != len(o.Sum) {
				return nil, fmt.Errorf("infer: calibration merge: part %d site %d (%+v, %d columns) differs from part 0's (%+v, %d columns)", pi, i, s.Site, len(s.Sum2), o.Site, len(o.Sum2))
			}
			o.Tokens += s.Tokens
			for j := range s.Sum2 {
				o.Sum2[j] = o.Sum2[j].Add(s.Sum2[j])
			}
			for j := range s.Sum {
				o.Sum[j] = o.Sum[j].Add(s.Sum[j])
			}
		}
		out.Windows = append(out.Windows, p.Windows...)
	}
	sort.Ints(out.Windows)
	for i := 1; i < len(out.Windows); i++ {
		if out.Windows[i] == out.Windows[i-1] {
			return nil, fmt.Errorf("infer: calibration merge: window %d appears twice", out.Windows[i])
		}
	}
	return out, nil
}

// CalibOptions configures a calibration pass.
type CalibOptions struct {
	// Head also collects the input of lm_head (llama-imatrix's
	// --process-output).
	Head bool
	// Progress, when set, is called after each window with the number done.
	Progress func(done int)
}

// calibTap accumulates one window's sums in float64 and folds them into
// the fixed-point totals at the end of the window.
type calibTap struct {
	sums   *CalibSums
	index  map[Site]int
	sq, sm [][]float64 // per site, this window's float64 sums
	head   bool
}

func newCalibTap(m *Model, head bool) *calibTap {
	cfg := m.cfg
	t := &calibTap{sums: &CalibSums{}, index: map[Site]int{}, head: head}
	add := func(s Site, cols int) {
		t.index[s] = len(t.sums.Sites)
		t.sums.Sites = append(t.sums.Sites, SiteSums{Site: s, Sum2: make([]Fixed, cols), Sum: make([]Fixed, cols)})
		t.sq = append(t.sq, make([]float64, cols))
		t.sm = append(t.sm, make([]float64, cols))
	}
	for l := range m.w.Layers {
		add(Site{l, SiteAttn}, cfg.HiddenSize)
		add(Site{l, SiteO}, cfg.QDim())
		add(Site{l, SiteMLP}, cfg.HiddenSize)
		add(Site{l, SiteDown}, cfg.IntermediateSize)
	}
	if head {
		add(Site{-1, SiteHead}, cfg.HiddenSize)
	}
	return t
}

// observe adds T rows of C activations at a site, in token order.
func (t *calibTap) observe(s Site, x []float32, T, C int) {
	if t == nil || (s.Kind == SiteHead && !t.head) {
		return
	}
	i := t.index[s]
	sq, sm := t.sq[i], t.sm[i]
	for r := range T {
		row := x[r*C : (r+1)*C]
		for c, v := range row {
			f := float64(v)
			sq[c] += f * f
			sm[c] += f
		}
	}
	t.sums.Sites[i].Tokens += int64(T)
}

// endWindow folds the window's float64 sums into the totals.
func (t *calibTap) endWindow(index int) error {
	for i := range t.sums.Sites {
		s := &t.sums.Sites[i]
		for c := range t.sq[i] {
			a, err := FixedOf(t.sq[i][c])
			if err != nil {
				return fmt.Errorf("infer: calibration of window %d, layer %d site %d column %d: Σx²: %w", index, s.Site.Layer, s.Site.Kind, c, err)
			}
			b, err := FixedOf(t.sm[i][c])
			if err != nil {
				return fmt.Errorf("infer: calibration of window %d, layer %d site %d column %d: Σx: %w", index, s.Site.Layer, s.Site.Kind, c, err)
			}
			s.Sum2[c], s.Sum[c] = s.Sum2[c].Add(a), s.Sum[c].Add(b)
		}
		clear(t.sq[i])
		clear(t.sm[i])
	}
	t.sums.Windows = append(t.sums.Windows, index)
	return nil
}

// Calibrate runs the model over each window and returns the activation
// sums of every linear layer's input over all of each window's positions
// (llama-imatrix counts every token of a chunk). The sums are the same for
// any number of workers and, merged, for any split of the windows. On a
// rotated model they are the rotated activations, which is what the
// rotated weights see.
func (m *Model) Calibrate(ctx context.Context, windows []Window, opts CalibOptions) (*CalibSums, error) {
	tap := newCalibTap(m, opts.Head)
	for i, w := range windows {
		if _, err := m.run(ctx, w.Input, nil, false, tap); err != nil {
			return nil, fmt.Errorf("infer: calibration window %d: %w", w.Index, err)
		}
		if err := tap.endWindow(w.Index); err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(i + 1)
		}
	}
	out := tap.sums
	slices.Sort(out.Windows)
	for i := 1; i < len(out.Windows); i++ {
		if out.Windows[i] == out.Windows[i-1] {
			return nil, fmt.Errorf("infer: calibration: window %d given twice", out.Windows[i])
		}
	}
	return out, nil
}

// IMatrix converts the sums into an importance matrix with one entry per
// weight a site feeds (q, k and v share the attention input's sums, gate
// and up the MLP input's), each holding Σx², Σx and the token count.
// datasets names the calibration text(s); chunkSize is the window length.
func (c *CalibSums) IMatrix(datasets []string, chunkSize int) (*gguf.IMatrix, error) {
	im := &gguf.IMatrix{Datasets: datasets, ChunkCount: len(c.Windows), ChunkSize: chunkSize, Entries: map[string]*gguf.IMatrixEntry{}}
	for i := range c.Sites {
		s := &c.Sites[i]
		if s.Tokens <= 0 {
			return nil, fmt.Errorf("infer: calibration site %+v saw no tokens", s.Site)
		}
		sum2 := make([]float32, len(s.Sum2))
		sum := make([]float32, len(s.Sum))
		for j := range s.Sum2 {
			sum2[j] = float32(s.Sum2[j].Float64())
			sum[j] = float32(s.Sum[j].Float64())
		}
		for _, name := range s.Site.Weights() {
			im.Entries[name] = &gguf.IMatrixEntry{Cols: len(sum2), Mats: 1, Sum2: sum2, Sum: sum, Counts: []float32{float32(s.Tokens)}}
		}
	}
	return im, nil
}

// The binary form of CalibSums (MarshalBinary): the magic "ADQC", a uint32
// version (1), a uint32 window count and the windows (uint32 each), a
// uint32 site count, then per site an int32 layer, a uint32 kind, a uint64
// token count, a uint32 column count and per column Σx² then Σx, each as
// int64 Hi and uint64 Lo; a CRC-32C (Castagnoli) of everything before it
// ends the object. All little-endian.
const (
	calibMagic   = "ADQC"
	calibVersion = 1
	// maxCalibColumns bounds the columns of one site when reading (a
	// 405B model's largest intermediate size is 53,248).
	maxCalibColumns = 1 << 20
)

// MarshalBinary encodes the sums (see the format above).
func (c *CalibSums) MarshalBinary() ([]byte, error) {
	n := 16 + 4*len(c.Windows) + 4
	for i := range c.Sites {
		if len(c.Sites[i].Sum) != len(c.Sites[i].Sum2) {
			return nil, fmt.Errorf("infer: calibration site %d has %d Σx² and %d Σx columns", i, len(c.Sites[i].Sum2), len(c.Sites[i].Sum))
		}
		n += 20 + 32*len(c.Sites[i].Sum2)
	}
	b := make([]byte, 0, n+4)
	b = append(b, calibMagic...)
	b = binary.LittleEndian.AppendUint32(b, calibVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Windows)))
	for _, w := range c.Windows {
		b = binary.LittleEndian.AppendUint32(b, uint32(w))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Sites)))
	for i := range c.Sites {
		s := &c.Sites[i]
		b = binary.LittleEndian.AppendUint32(b, uint32(int32(s.Site.Layer)))
		b = binary.LittleEndian.AppendUint32(b, uint32(s.Site.Kind))
		b = binary.LittleEndian.AppendUint64(b, uint64(s.Tokens))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Sum2)))
		for j := range s.Sum2 {
			for _, f := range [2]Fixed{s.Sum2[j], s.Sum[j]} {
				b = binary.LittleEndian.AppendUint64(b, uint64(f.Hi))
				b = binary.LittleEndian.AppendUint64(b, f.Lo)
			}
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// UnmarshalCalib decodes sums written by MarshalBinary, checking the
// checksum and every count against the bytes present.
func UnmarshalCalib(b []byte) (*CalibSums, error) {
	if len(b) < 20 || string(b[:4]) != calibMagic {
		return nil, fmt.Errorf("infer: not calibration sums (%d bytes, magic %q)", len(b), b[:min(4, len(b))])
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("infer: calibration sums: CRC-32C %08x, the object says %08x", got, sum)
	}
	p := body[4:]
	u32 := func() (uint32, error) {
		if len(p) < 4 {
			return 0, fmt.Errorf("infer: calibration sums: truncated")
		}
		v := binary.LittleEndian.Uint32(p)
		p = p[4:]
		return v, nil
	}
	if v, err := u32(); err != nil || v != calibVersion {
		return nil, fmt.Errorf("infer: calibration sums: version %d, want %d (%v)", v, calibVersion, err)
	}
	nw, err := u32()
	if err != nil || int64(nw)*4 > int64(len(p)) {
		return nil, fmt.Errorf("infer: calibration sums: %d windows do not fit in %d bytes", nw, len(p))
	}
	c := &CalibSums{Windows: make([]int, nw)}
	for i := range c.Windows {
		v, _ := u32()
		c.Windows[i] = int(v)
	}
	ns, err := u32()
	if err != nil || int64(ns)*20 > int64(len(p)) {
		return nil, fmt.Errorf("infer: calibration sums: %d sites do not fit in %d bytes", ns, len(p))
	}
	c.Sites = make([]SiteSums, ns)
	for i := range c.Sites {
		if len(p) < 20 {
			return nil, fmt.Errorf("infer: calibration sums: site %d truncated", i)
		}
		s := &c.Sites[i]
		s.Site = Site{Layer: int(int32(binary.LittleEndian.Uint32(p))), Kind: SiteKind(binary.LittleEndian.Uint32(p[4:]))}
		s.Tokens = int64(binary.LittleEndian.Uint64(p[8:]))
		cols := binary.LittleEndian.Uint32(p[16:])
		p = p[20:]
		if s.Site.Kind < SiteAttn || s.Site.Kind > SiteHead || s.Tokens < 0 {
			return nil, fmt.Errorf("infer: calibration sums: site %d: kind %d, %d tokens", i, s.Site.Kind, s.Tokens)
		}
		if cols > maxCalibColumns || int64(cols)*32 > int64(len(p)) {
			return nil, fmt.Errorf("infer: calibration sums: site %d: %d columns do not fit in %d bytes", i, cols, len(p))
		}
		s.Sum2, s.Sum = make([]Fixed, cols), make([]Fixed, cols)
		for j := range s.Sum2 {
			s.Sum2[j] = Fixed{Hi: int64(binary.LittleEndian.Uint64(p)), Lo: binary.LittleEndian.Uint64(p[8:])}
			s.Sum[j] = Fixed{Hi: int64(binary.LittleEndian.Uint64(p[16:])), Lo: binary.LittleEndian.Uint64(p[24:])}
			p = p[32:]
		}
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("infer: calibration sums: %d bytes after the last site", len(p))
	}
	return c, nil
}
