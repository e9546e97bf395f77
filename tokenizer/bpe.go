package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Words of at least this many bytes are not cached (as in tokenizers).
const maxCachedWordLen = 256

// cacheCapacity bounds the per-Tokenizer word cache; it is emptied when full.
const cacheCapacity = 10000

// bpe is the BPE model: vocabulary, merges by rank, unknown/byte fallback.
type bpe struct {
	vocab        map[string]int
	idToTok      map[int]string
	merges       map[uint64]merge // key: left id << 32 | right id
	unk          int              // -1 when there is no unk_token
	byteFallback bool
	fuseUnk      bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	byteIDs      [256]int
	// boundary, when set, is a string no merge can join across when it
	// starts a symbol (see setBoundary), so words are cut before it.
	boundary string

	mu    sync.RWMutex
	cache map[string][]int
}

type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// symbol is one node of the doubly linked list a word is merged in.
type symbol struct {
	id         int32
	prev, next int32
	size       int32 // bytes of the word covered; 0 once merged away
}

// tokenize appends the ids of one pre-tokenized word to out.
func (m *bpe) tokenize(w string, out []int) []int {
	if w == "" {
		return out
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[w]; ok {
			return append(out, id)
		}
	}
	if b := m.boundary; b != "" {
		for len(w) > 1 {
			i := strings.Index(w[1:], b)
			if i < 0 {
				break
			}
			out = m.tokenizeWord(w[:1+i], out)
			w = w[1+i:]
		}
	}
	return m.tokenizeWord(w, out)
}

// setBoundary enables cutting words before sep when that cannot change the
// result: sep is a vocabulary token (so it is never unk or byte fallback and
// starts its own symbol), no merge has a right operand starting with sep (so
// no symbol ever spans the cut), and there is no prefix, suffix or
// ignore_merges (which depend on the whole word). Merges within each part
// then happen exactly as they would in the whole word, where parts do not
// interact; the parts become short enough for the cache. For SentencePiece
// files without a pre-tokenizer this turns one huge word into words.
func (m *bpe) setBoundary(sep string, rights map[string]bool) {
	if _, ok := m.vocab[sep]; !ok || m.prefix != "" || m.suffix != "" || m.ignoreMerges {
		return
	}
	for r := range rights {
		if strings.HasPrefix(r, sep) {
			return
		}
	}
	m.boundary = sep
}

// tokenizeWord is tokenize for one word, through the cache.
func (m *bpe) tokenizeWord(w string, out []int) []int {
	cacheable := len(w) < maxCachedWordLen
	if cacheable {
		m.mu.RLock()
		ids, ok := m.cache[w]
		m.mu.RUnlock()
		if ok {
			return append(out, ids...)
		}
	}
	start := len(out)
	out = m.mergeWord(w, out)
	if cacheable {
		ids := append([]int(nil), out[start:]...)
		m.mu.Lock()
		if len(m.cache) >= cacheCapacity {
			clear(m.cache)
		}
		m.cache[w] = ids
		m.mu.Unlock()
	}
	return out
}

// mergeWord splits w into characters (with byte fallback or unk for those
// outside the vocabulary), applies merges lowest rank first (leftmost on
// ties) and appends the resulting ids to out.
func (m *bpe) mergeWord(w string, out []int) []int {
	syms := make([]symbol, 0, len(w))
	add := func(id int, size int) {
		n := int32(len(syms))
		if n > 0 {
			syms[n-1].next = n
		}
		syms = append(syms, symbol{id: int32(id), prev: n - 1, next: -1, size: int32(size)})
	}
	unkID, unkLen := -1, 0
	var buf []byte
	for i := 0; i < len(w); {
		_, n := utf8.DecodeRuneInString(w[i:])
		ch := w[i : i+n]
		s := ch
		if m.prefix != "" && i > 0 || m.suffix != "" && i+n == len(w) {
			buf = buf[:0]
			if i > 0 {
				buf = append(buf, m.prefix...)
			}
			buf = append(buf, ch...)
			if i+n == len(w) {
				buf = append(buf, m.suffix...)
			}
			s = string(buf)
		}
		i += n
		if id, ok := m.vocab[s]; ok {
			if unkID >= 0 {
				add(unkID, unkLen)
				unkID = -1
			}
			add(id, n)
			continue
		}
		if m.byteFallback && m.hasBytes(s) {
			// As in tokenizers, a pending unk is not flushed here.
			for j := 0; j < len(s); j++ {
				add(m.byteIDs[s[j]], 1)
			}
			continue
		}
		if m.unk >= 0 {
			switch {
			case unkID >= 0 && m.fuseUnk:
				unkLen += n
			case unkID >= 0:
				add(unkID, unkLen)
				unkID, unkLen = m.unk, n
			default:
				unkID, unkLen = m.unk, n
			}
		}
	}
	if unkID >= 0 {
		add(unkID, unkLen)
	}
	if len(m.merges) > 0 && len(syms) > 1 {
		m.mergeAll(syms)
	}
	for _, s := range syms {
		if s.size != 0 {
			out = append(out, int(s.id))
		}
	}
	return out
}

func (m *bpe) hasBytes(s string) bool {
	for j := 0; j < len(s); j++ {
		if m.byteIDs[s[j]] < 0 {
			return false
		}
	}
	return true
}

// mergeAll applies merges with a min-heap keyed by (rank, position); stale
// heap entries are recognised by re-checking the pair, as tokenizers does.
func (m *bpe) mergeAll(syms []symbol) {
	h := mergeHeap(make([]heapItem, 0, len(syms)))
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h.push(heapItem{key: uint64(uint32(mg.rank))<<32 | uint64(uint32(i)), id: mg.id})
		}
	}
	for len(h) > 0 {
		top := h.pop()
		pos := int32(uint32(top.key))
		target := &syms[pos]
		if target.size == 0 || target.next < 0 {
			continue
		}
		rightPos := target.next
		right := &syms[rightPos]
		if mg, ok := m.merges[pairKey(target.id, right.id)]; !ok || mg.id != top.id {
			continue
		}
		target.id = top.id
		target.size += right.size
		target.next = right.next
		right.size = 0
		if target.next >= 0 {
			syms[target.next].prev = pos
		}
		if target.prev >= 0 {
			if mg, ok := m.merges[pairKey(syms[target.prev].id, target.id)]; ok {
				h.push(heapItem{key: uint64(uint32(mg.rank))<<32 | uint64(uint32(target.prev)), id: mg.id})
			}
		}
		if target.next >= 0 {
			if mg, ok := m.merges[pairKey(target.id, syms[target.next].id)]; ok {
				h.push(heapItem{key: uint64(uint32(mg.rank))<<32 | uint64(uint32(pos)), id: mg.id})
			}
		}
	}
}

type heapItem struct {
	key uint64 // rank << 32 | position: lowest rank first, then leftmost
	id  int32
}

type mergeHeap []heapItem

func (h *mergeHeap) push(x heapItem) {
	s := append(*h, x)
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].key <= s[i].key {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
	*h = s
}

func (h *mergeHeap) pop() heapItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && s[r].key < s[l].key {
			c = r
		}
		if s[i].key <= s[c].key {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}
