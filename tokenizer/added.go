package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of added_tokens.
type addedToken struct {
	id         int
	content    string
	special    bool
	lstrip     bool
	rstrip     bool
	singleWord bool
	normalized bool
}

// addedVocab matches added tokens before the model sees the text. Tokens with
// normalized=false are matched on the raw input, the others on normalized
// text (their pattern being their normalized content), as in tokenizers.
type addedVocab struct {
	byID      map[int]*addedToken
	byContent map[string]int
	raw       matcherSet
	norm      matcherSet
}

// matcherSet finds added tokens leftmost-longest. Patterns are grouped by
// first byte, longest first.
type matcherSet struct {
	byFirst [256][]addedPattern
	empty   bool
}

type addedPattern struct {
	text string
	tok  *addedToken
}

func newAddedVocab(tokens []*addedToken, norm normalizer) *addedVocab {
	v := &addedVocab{
		byID:      map[int]*addedToken{},
		byContent: map[string]int{},
		raw:       matcherSet{empty: true},
		norm:      matcherSet{empty: true},
	}
	for _, t := range tokens {
		v.byID[t.id] = t
		v.byContent[t.content] = t.id
	}
	for _, t := range tokens {
		if v.byContent[t.content] != t.id {
			continue // a later entry with the same content wins
		}
		set, pat := &v.raw, t.content
		if t.normalized {
			set = &v.norm
			if norm != nil {
				pat = norm.normalize(pat)
			}
		}
		if pat == "" {
			continue
		}
		set.byFirst[pat[0]] = append(set.byFirst[pat[0]], addedPattern{text: pat, tok: t})
		set.empty = false
	}
	for _, set := range []*matcherSet{&v.raw, &v.norm} {
		for _, ps := range set.byFirst {
			sort.SliceStable(ps, func(i, j int) bool { return len(ps[i].text) > len(ps[j].text) })
		}
	}
	return v
}

// segment is a stretch of input: an added token (id >= 0) or text (id < 0).
type segment struct {
	text  string
	id    int
	first bool
}

func (v *addedVocab) splitRaw(s string) []segment        { return v.raw.split(s) }
func (v *addedVocab) splitNormalized(s string) []segment { return v.norm.split(s) }

// split cuts s around added-token matches. Matches are leftmost-longest and
// non-overlapping; a match refused by single_word still consumes its text.
// lstrip/rstrip extend a match over the neighbouring whitespace. Empty text
// segments are dropped.
func (ms *matcherSet) split(s string) []segment {
	if ms.empty || s == "" {
		if s == "" {
			return nil
		}
		return []segment{{text: s, id: -1, first: true}}
	}
	var out []segment
	emit := func(from, to int) {
		if to > from {
			out = append(out, segment{text: s[from:to], id: -1, first: from == 0})
		}
	}
	startOff := 0
	for i := 0; i < len(s); {
		ps := ms.byFirst[s[i]]
		if len(ps) == 0 {
			i++
			continue
		}
		var hit *addedPattern
		for k := range ps {
			if strings.HasPrefix(s[i:], ps[k].text) {
				hit = &ps[k]
				break
			}
		}
		if hit == nil {
			i++
			continue
		}
		start, stop := i, i+len(hit.text)
		tok := hit.tok
		if tok.singleWord {
			startOK := start == 0 || !endsWithWordChar(s[:start])
			stopOK := stop == len(s) || !startsWithWordChar(s[stop:])
			if !startOK || !stopOK {
				i = stop
				continue
			}
		}
		if tok.lstrip {
			start = max(leadingSpaceStart(s[:start]), startOff)
		}
		if tok.rstrip {
			stop += trailingSpaceLen(s[stop:])
		}
		emit(startOff, start)
		out = append(out, segment{text: s[start:stop], id: tok.id, first: start == 0})
		startOff = stop
		i = stop
	}
	emit(startOff, len(s))
	return out
}

func isWordChar(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordChar(r)
}

// leadingSpaceStart returns where the whitespace run ending s begins.
func leadingSpaceStart(s string) int {
	i := len(s)
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if !unicode.IsSpace(r) {
			break
		}
		i -= n
	}
	return i
}

// trailingSpaceLen returns the length of the whitespace run starting s.
func trailingSpaceLen(s string) int {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += n
	}
	return i
}
