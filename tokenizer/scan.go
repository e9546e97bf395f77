package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Split regexes with a negative lookahead, which Go's regexp lacks. Files
// carrying exactly one of these strings get a hand-written scanner that
// gives the same matches as Oniguruma (tokenizers' engine).
const (
	// Llama3Pattern is the Split regex of Meta's Llama 3 tokenizer.json.
	Llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// Qwen2Pattern is the Split regex of Qwen2's tokenizer.json.
	Qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// GPT2Pattern is the regex of the ByteLevel pre-tokenizer (use_regex).
	GPT2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// knownScanner returns the scanner for one of the known patterns.
func knownScanner(pattern string) (matcher, bool) {
	switch pattern {
	case Llama3Pattern:
		return llamaScanner{maxDigits: 3}, true
	case Qwen2Pattern:
		return llamaScanner{maxDigits: 1}, true
	case GPT2Pattern:
		return gpt2Scanner{}, true
	}
	return nil, false
}

// Character classes as Oniguruma sees them with Unicode: \s is White_Space
// (unicode.IsSpace is exactly that set), \p{L} and \p{N} the categories.
// Invalid UTF-8 decodes as U+FFFD, a symbol, like in Go's regexp.
func isL(r rune) bool     { return unicode.IsLetter(r) }
func isN(r rune) bool     { return unicode.IsNumber(r) }
func isSpace(r rune) bool { return unicode.IsSpace(r) }
func isOther(r rune) bool { return !isSpace(r) && !isL(r) && !isN(r) }

func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func spanWhile(s string, i int, f func(rune) bool) int {
	for i < len(s) {
		r, n := runeAt(s, i)
		if !f(r) {
			break
		}
		i += n
	}
	return i
}

// contraction matches 's 't 're 've 'm 'll 'd after the apostrophe at i-1
// and returns the end, or -1. With fold the letters match case-insensitively
// under Unicode simple folding (so ſ, U+017F, matches s).
func contraction(s string, i int, fold bool) int {
	eq := func(r rune, c rune) bool {
		if r == c {
			return true
		}
		if !fold {
			return false
		}
		return r == unicode.ToUpper(c) || c == 's' && r == 'ſ'
	}
	r, n := runeAt(s, i)
	switch {
	case eq(r, 's'), eq(r, 't'), eq(r, 'm'), eq(r, 'd'):
		return i + n
	case eq(r, 'r'), eq(r, 'v'):
		if r2, n2 := runeAt(s, i+n); eq(r2, 'e') {
			return i + n + n2
		}
	case eq(r, 'l'):
		if r2, n2 := runeAt(s, i+n); eq(r2, 'l') {
			return i + n + n2
		}
	}
	return -1
}

// whitespaceTail handles the shared tail \s+(?!\S)|\s+ for a whitespace run
// starting at i: the whole run if it ends the text, else the run minus its
// last rune, else (a single rune before non-space) that rune.
func whitespaceTail(s string, i int) int {
	end := spanWhile(s, i, isSpace)
	if end == len(s) {
		return end
	}
	_, n := utf8.DecodeLastRuneInString(s[i:end])
	if end-n > i {
		return end - n
	}
	return end
}

// llamaScanner is the Llama 3 (maxDigits 3) / Qwen2 (maxDigits 1) regex.
// Every rune starts a match, so matches tile the input.
type llamaScanner struct{ maxDigits int }

func (sc llamaScanner) findAll(s string) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		e := sc.matchAt(s, i)
		out = append(out, [2]int{i, e})
		i = e
	}
	return out
}

func (sc llamaScanner) matchAt(s string, i int) int {
	r, n := runeAt(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if e := contraction(s, i+n, true); e > 0 {
			return e
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isL(r) {
		return spanWhile(s, i, isL)
	}
	if r != '\r' && r != '\n' && !isN(r) {
		if r2, _ := runeAt(s, i+n); r2 >= 0 && isL(r2) {
			return spanWhile(s, i+n, isL)
		}
	}
	// \p{N}{1,maxDigits}
	if isN(r) {
		j := i
		for k := 0; k < sc.maxDigits; k++ {
			r2, n2 := runeAt(s, j)
			if r2 < 0 || !isN(r2) {
				break
			}
			j += n2
		}
		return j
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	j := i
	if r == ' ' {
		j = i + 1
	}
	if r2, _ := runeAt(s, j); r2 >= 0 && isOther(r2) {
		j = spanWhile(s, j, isOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// r is whitespace from here on.
	// \s*[\r\n]+ : up to and including the last \r or \n of the run.
	end := spanWhile(s, i, isSpace)
	for k := end - 1; k >= i; k-- {
		if s[k] == '\r' || s[k] == '\n' {
			return k + 1
		}
	}
	// \s+(?!\S)|\s+
	return whitespaceTail(s, i)
}

// gpt2Scanner is the GPT-2 ByteLevel regex. Every rune starts a match.
type gpt2Scanner struct{}

func (gpt2Scanner) findAll(s string) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		e := gpt2MatchAt(s, i)
		out = append(out, [2]int{i, e})
		i = e
	}
	return out
}

func gpt2MatchAt(s string, i int) int {
	r, n := runeAt(s, i)
	if r == '\'' {
		if e := contraction(s, i+n, false); e > 0 {
			return e
		}
	}
	// ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
	j := i
	if r == ' ' {
		j = i + 1
	}
	if r2, _ := runeAt(s, j); r2 >= 0 {
		switch {
		case isL(r2):
			return spanWhile(s, j, isL)
		case isN(r2):
			return spanWhile(s, j, isN)
		case isOther(r2):
			return spanWhile(s, j, isOther)
		}
	}
	// \s+(?!\S)|\s+
	return whitespaceTail(s, i)
}
