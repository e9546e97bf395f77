package tokenizer

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preTokenizer cuts normalized text into the words BPE merges within.
type preTokenizer interface {
	preTokenize(in []piece) []piece
}

type seqPreTokenizer []preTokenizer

func (q seqPreTokenizer) preTokenize(in []piece) []piece {
	for _, p := range q {
		in = p.preTokenize(in)
	}
	return in
}

// matcher finds non-overlapping matches, in order, as [start, end) pairs.
type matcher interface {
	findAll(s string) [][2]int
}

type regexMatcher struct{ re *regexp.Regexp }

func (m regexMatcher) findAll(s string) [][2]int {
	locs := m.re.FindAllStringIndex(s, -1)
	out := make([][2]int, 0, len(locs))
	for _, l := range locs {
		out = append(out, [2]int{l[0], l[1]})
	}
	return out
}

// runeMatcher matches every rune for which f is true, one rune a match.
type runeMatcher func(rune) bool

func (f runeMatcher) findAll(s string) [][2]int {
	var out [][2]int
	for i, r := range s {
		if f(r) {
			out = append(out, [2]int{i, i + utf8.RuneLen(r)})
		}
	}
	return out
}

// Split delimiter behaviours (SplitDelimiterBehavior in tokenizers).
const (
	behaviorRemoved = iota
	behaviorIsolated
	behaviorMergedWithPrevious
	behaviorMergedWithNext
	behaviorContiguous
)

// parseBehavior maps a SplitDelimiterBehavior name to its constant.
func parseBehavior(name string) (int, bool) {
	switch name {
	case "Removed":
		return behaviorRemoved, true
	case "Isolated":
		return behaviorIsolated, true
	case "MergedWithPrevious":
		return behaviorMergedWithPrevious, true
	case "MergedWithNext":
		return behaviorMergedWithNext, true
	case "Contiguous":
		return behaviorContiguous, true
	}
	return 0, false
}

type span struct {
	start, end int
	match      bool
}

// splitText applies a matcher with a delimiter behaviour to s and returns
// the non-empty pieces, like NormalizedString::split.
func splitText(s string, m matcher, behavior int, invert bool) []string {
	if s == "" {
		return nil
	}
	var spans []span
	prev := 0
	for _, loc := range m.findAll(s) {
		if loc[0] > prev {
			spans = append(spans, span{prev, loc[0], false})
		}
		spans = append(spans, span{loc[0], loc[1], true})
		prev = loc[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if invert {
		for i := range spans {
			spans[i].match = !spans[i].match
		}
	}
	var res []span
	switch behavior {
	case behaviorRemoved:
		for _, sp := range spans {
			if !sp.match {
				res = append(res, sp)
			}
		}
	case behaviorIsolated:
		res = spans
	case behaviorMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(res) > 0 {
				res[len(res)-1].end = sp.end
			} else {
				res = append(res, sp)
			}
			prevMatch = sp.match
		}
	case behaviorMergedWithNext:
		nextMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !nextMatch && len(res) > 0 {
				res[len(res)-1].start = sp.start
			} else {
				res = append(res, sp)
			}
			nextMatch = sp.match
		}
		for i, j := 0, len(res)-1; i < j; i, j = i+1, j-1 {
			res[i], res[j] = res[j], res[i]
		}
	case behaviorContiguous:
		prevMatch := false
		for _, sp := range spans {
			if sp.match == prevMatch && len(res) > 0 {
				res[len(res)-1].end = sp.end
			} else {
				res = append(res, sp)
			}
			prevMatch = sp.match
		}
	}
	out := make([]string, 0, len(res))
	for _, sp := range res {
		if sp.end > sp.start {
			out = append(out, s[sp.start:sp.end])
		}
	}
	return out
}

// splitPieces splits every piece; only the first part of a first piece
// stays first.
func splitPieces(in []piece, f func(string) []string) []piece {
	out := make([]piece, 0, len(in))
	for _, p := range in {
		for i, s := range f(p.text) {
			out = append(out, piece{text: s, first: p.first && i == 0})
		}
	}
	return out
}

// splitPreTokenizer is the Split pre-tokenizer.
type splitPreTokenizer struct {
	m        matcher
	behavior int
	invert   bool
}

func (p *splitPreTokenizer) preTokenize(in []piece) []piece {
	return splitPieces(in, func(s string) []string { return splitText(s, p.m, p.behavior, p.invert) })
}

// byteLevelPreTokenizer is the ByteLevel pre-tokenizer: optional prefix
// space, optional GPT-2 regex split, then every byte mapped to a rune.
type byteLevelPreTokenizer struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p *byteLevelPreTokenizer) preTokenize(in []piece) []piece {
	out := make([]piece, 0, len(in))
	for _, pc := range in {
		s := pc.text
		if p.addPrefixSpace && !strings.HasPrefix(s, " ") {
			s = " " + s
		}
		parts := []string{s}
		if p.useRegex {
			parts = splitText(s, gpt2Scanner{}, behaviorIsolated, false)
		}
		for i, part := range parts {
			out = append(out, piece{text: byteLevelEncode(part), first: pc.first && i == 0})
		}
	}
	return out
}

// byteLevelEncode maps each byte of s to its GPT-2 printable rune.
func byteLevelEncode(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune(s[i]))
	}
	return b.String()
}

// byteToRune is GPT-2's bytes_to_unicode: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order.
func byteToRune(b byte) rune {
	switch {
	case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE:
		return rune(b)
	case b <= ' ':
		return 0x100 + rune(b)
	case b <= 0xA0: // 0x7F..0xA0
		return 0x100 + 33 + rune(b-0x7F)
	default: // 0xAD
		return 0x100 + 67
	}
}

// runeToByte inverts byteToRune.
func runeToByte(r rune) (byte, bool) {
	switch {
	case r >= '!' && r <= '~', r >= 0xA1 && r <= 0xAC, r >= 0xAE && r <= 0xFF:
		return byte(r), true
	case r >= 0x100 && r <= 0x100+32:
		return byte(r - 0x100), true
	case r >= 0x100+33 && r <= 0x100+66:
		return byte(r - 0x100 - 33 + 0x7F), true
	case r == 0x100+67:
		return 0xAD, true
	}
	return 0, false
}

// metaspacePreTokenizer replaces spaces with the replacement rune, prepends
// it per the scheme and optionally splits before every replacement rune.
type metaspacePreTokenizer struct {
	replacement string
	scheme      int
	split       bool
}

// Metaspace prepend schemes.
const (
	prependAlways = iota
	prependFirst
	prependNever
)

func (p *metaspacePreTokenizer) preTokenize(in []piece) []piece {
	out := make([]piece, 0, len(in))
	for _, pc := range in {
		s := strings.ReplaceAll(pc.text, " ", p.replacement)
		if !strings.HasPrefix(s, p.replacement) &&
			(p.scheme == prependAlways || p.scheme == prependFirst && pc.first) {
			s = p.replacement + s
		}
		if !p.split {
			if s != "" {
				out = append(out, piece{text: s, first: pc.first})
			}
			continue
		}
		for i, part := range splitText(s, literalMatcher(p.replacement), behaviorMergedWithNext, false) {
			out = append(out, piece{text: part, first: pc.first && i == 0})
		}
	}
	return out
}

// literalMatcher matches every non-overlapping occurrence of a string.
type literalMatcher string

func (l literalMatcher) findAll(s string) [][2]int {
	if l == "" {
		return nil
	}
	var out [][2]int
	for i := 0; ; {
		j := strings.Index(s[i:], string(l))
		if j < 0 {
			return out
		}
		out = append(out, [2]int{i + j, i + j + len(l)})
		i += j + len(l)
	}
}

// whitespaceSplit splits on Unicode whitespace, dropping it.
type whitespaceSplit struct{}

func (whitespaceSplit) preTokenize(in []piece) []piece {
	return splitPieces(in, func(s string) []string { return strings.FieldsFunc(s, unicode.IsSpace) })
}
