package infer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Saved log-probabilities ("AQLP" files) let a model be compared with a
// reference evaluated earlier, without keeping the reference's weights or
// full distributions. All values are little-endian:
//
//	header, 16 bytes:
//	  magic   [4]byte  "AQLP"
//	  version uint32   1
//	  k       uint32   entries kept per position (min(requested k, vocab), ≥ 1)
//	  vocab   uint32   vocabulary size of the model that wrote the file
//	then one record per window until end of file:
//	  index   uint32   Window.Index
//	  first   uint32   Window.First
//	  end     uint32   Window.End
//	  hash    uint64   Window.Hash() (index, range and input tokens)
//	  (end − first) positions, each 8 + 8k bytes:
//	    target  float32  log p(actual next token)
//	    rest    float32  log(1 − Σ top-k probabilities), −Inf if none left
//	    ids     k × int32   top-k token ids, descending probability, ties by id
//	    logp    k × float32 their log-probabilities
//
// The argmax of a position is ids[0]. A window's record is written after it
// is evaluated, so a distributed evaluation writes one file per worker;
// the reader accepts several files (ReadLogProbs, then Add).
const (
	logProbMagic   = "AQLP"
	logProbVersion = 1
)

// LogProbWriter writes an AQLP file (see the format above).
type LogProbWriter struct {
	w     *bufio.Writer
	k     int
	vocab int
	err   error
}

// NewLogProbWriter writes the header of an AQLP file keeping the top k
// log-probabilities per position of a model with the given vocabulary.
// Call Flush when done.
func NewLogProbWriter(w io.Writer, k, vocab int) (*LogProbWriter, error) {
	if k < 1 || vocab < 1 {
		return nil, fmt.Errorf("infer: log-prob file needs k ≥ 1 and vocab ≥ 1, got k=%d vocab=%d", k, vocab)
	}
	k = min(k, vocab)
	lw := &LogProbWriter{w: bufio.NewWriter(w), k: k, vocab: vocab}
	var h [16]byte
	copy(h[:4], logProbMagic)
	binary.LittleEndian.PutUint32(h[4:], logProbVersion)
	binary.LittleEndian.PutUint32(h[8:], uint32(k))
	binary.LittleEndian.PutUint32(h[12:], uint32(vocab))
	if _, err := lw.w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("infer: write log-prob header: %w", err)
	}
	return lw, nil
}

// K is the number of entries kept per position.
func (lw *LogProbWriter) K() int { return lw.k }

// WriteWindow writes the record of one window; toks are its scored
// positions in the top-k form with exactly K() entries each.
func (lw *LogProbWriter) WriteWindow(win Window, toks []RefToken) error {
	if lw.err != nil {
		return lw.err
	}
	if len(toks) != win.Scored() {
		return fmt.Errorf("infer: log-prob record of window %d: %d positions, window scores %d", win.Index, len(toks), win.Scored())
	}
	buf := make([]byte, 20, 20+len(toks)*(8+8*lw.k))
	binary.LittleEndian.PutUint32(buf[0:], uint32(win.Index))
	binary.LittleEndian.PutUint32(buf[4:], uint32(win.First))
	binary.LittleEndian.PutUint32(buf[8:], uint32(win.End))
	binary.LittleEndian.PutUint64(buf[12:], win.Hash())
	for i := range toks {
		t := &toks[i]
		if len(t.TopIDs) != lw.k || len(t.TopLogProbs) != lw.k {
			return fmt.Errorf("infer: log-prob record of window %d position %d: %d entries, want %d", win.Index, win.First+i, len(t.TopIDs), lw.k)
		}
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(t.TargetLogProb))
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(t.RestLogProb))
		for _, id := range t.TopIDs {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
		}
		for _, lp := range t.TopLogProbs {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(lp))
		}
	}
	if _, err := lw.w.Write(buf); err != nil {
		lw.err = fmt.Errorf("infer: write log-prob record of window %d: %w", win.Index, err)
		return lw.err
	}
	return nil
}

// Flush writes buffered data to the underlying writer.
func (lw *LogProbWriter) Flush() error {
	if lw.err != nil {
		return lw.err
	}
	if err := lw.w.Flush(); err != nil {
		return fmt.Errorf("infer: flush log-prob file: %w", err)
	}
	return nil
}

// SavedLogProbs is the content of one or more AQLP files, indexed by
// window. It is a Reference (top-k approximation of KL, see KLTopK).
type SavedLogProbs struct {
	// K and Vocab are from the files' headers.
	K, Vocab int
	windows  map[int]savedWindow
}

type savedWindow struct {
	first, end int
	hash       uint64
	toks       []RefToken
}

// ReadLogProbs reads an AQLP file.
func ReadLogProbs(r io.Reader) (*SavedLogProbs, error) {
	br := bufio.NewReader(r)
	var h [16]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("infer: read log-prob header: %w", err)
	}
	if string(h[:4]) != logProbMagic {
		return nil, fmt.Errorf("infer: not a log-prob file (magic %q)", h[:4])
	}
	if v := binary.LittleEndian.Uint32(h[4:]); v != logProbVersion {
		return nil, fmt.Errorf("infer: log-prob file version %d, this reader knows %d", v, logProbVersion)
	}
	s := &SavedLogProbs{
		K:       int(binary.LittleEndian.Uint32(h[8:])),
		Vocab:   int(binary.LittleEndian.Uint32(h[12:])),
		windows: map[int]savedWindow{},
	}
	if s.K < 1 || s.K > s.Vocab || s.K > 1<<16 {
		return nil, fmt.Errorf("infer: log-prob file has k=%d for vocab %d", s.K, s.Vocab)
	}
	for {
		var rh [20]byte
		if _, err := io.ReadFull(br, rh[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return s, nil
			}
			return nil, fmt.Errorf("infer: log-prob record %d: %w", len(s.windows), err)
		}
		idx := int(binary.LittleEndian.Uint32(rh[0:]))
		sw := savedWindow{
			first: int(binary.LittleEndian.Uint32(rh[4:])),
			end:   int(binary.LittleEndian.Uint32(rh[8:])),
			hash:  binary.LittleEndian.Uint64(rh[12:]),
		}
		if sw.end <= sw.first || sw.end-sw.first > 1<<24 {
			return nil, fmt.Errorf("infer: log-prob record of window %d: bad range [%d, %d)", idx, sw.first, sw.end)
		}
		if _, dup := s.windows[idx]; dup {
			return nil, fmt.Errorf("infer: log-prob file holds window %d twice", idx)
		}
		body := make([]byte, (sw.end-sw.first)*(8+8*s.K))
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, fmt.Errorf("infer: log-prob record of window %d: %w", idx, err)
		}
		sw.toks = make([]RefToken, sw.end-sw.first)
		// One backing array per record for ids and log-probs.
		ids := make([]int32, len(sw.toks)*s.K)
		lps := make([]float32, len(sw.toks)*s.K)
		off := 0
		u32 := func() uint32 { v := binary.LittleEndian.Uint32(body[off:]); off += 4; return v }
		for i := range sw.toks {
			t := &sw.toks[i]
			t.TargetLogProb = math.Float32frombits(u32())
			t.RestLogProb = math.Float32frombits(u32())
			t.TopIDs = ids[i*s.K : (i+1)*s.K : (i+1)*s.K]
			t.TopLogProbs = lps[i*s.K : (i+1)*s.K : (i+1)*s.K]
			for j := range t.TopIDs {
				id := int32(u32())
				if id < 0 || int(id) >= s.Vocab {
					return nil, fmt.Errorf("infer: log-prob record of window %d: token id %d outside vocab %d", idx, id, s.Vocab)
				}
				t.TopIDs[j] = id
			}
			for j := range t.TopLogProbs {
				t.TopLogProbs[j] = math.Float32frombits(u32())
			}
			t.Argmax = t.TopIDs[0]
		}
		s.windows[idx] = sw
	}
}

// Add merges the windows of another file into s.
func (s *SavedLogProbs) Add(o *SavedLogProbs) error {
	if o.K != s.K || o.Vocab != s.Vocab {
		return fmt.Errorf("infer: merge log-prob files: k/vocab %d/%d vs %d/%d", o.K, o.Vocab, s.K, s.Vocab)
	}
	for idx, w := range o.windows {
		if _, dup := s.windows[idx]; dup {
			return fmt.Errorf("infer: merge log-prob files: window %d in both", idx)
		}
		s.windows[idx] = w
	}
	return nil
}

// Len is the number of windows held.
func (s *SavedLogProbs) Len() int { return len(s.windows) }

// Window returns the saved top-k distributions of w's scored positions. It
// fails when the window was not saved or was saved for different tokens.
func (s *SavedLogProbs) Window(_ context.Context, w Window) ([]RefToken, error) {
	sw, ok := s.windows[w.Index]
	if !ok {
		return nil, fmt.Errorf("saved log-probs: window %d was not saved", w.Index)
	}
	if sw.hash != w.Hash() || sw.first != w.First || sw.end != w.End {
		return nil, fmt.Errorf("saved log-probs: window %d was saved for other tokens or another scored range", w.Index)
	}
	return sw.toks, nil
}
