package tokenizer

import (
	"regexp"
	"strings"
	"unicode"
)

// normalizer rewrites a text segment before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type seqNormalizer []normalizer

func (q seqNormalizer) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// prependNormalizer prepends its string to non-empty input.
type prependNormalizer string

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

// replacer replaces every match of a literal or regex pattern.
type replacer struct {
	literal string
	re      *regexp.Regexp
	content string
}

func (r *replacer) normalize(s string) string { return r.replace(s) }

func (r *replacer) replace(s string) string {
	if r.re != nil {
		return r.re.ReplaceAllLiteralString(s, r.content)
	}
	if r.literal == "" {
		return s
	}
	return strings.ReplaceAll(s, r.literal, r.content)
}

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string { return strings.ToLower(s) }

type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

// identityNormalizer stands in for NFC: the standard library has no Unicode
// composition tables, so text is assumed to be NFC already (see NOTES.md).
type identityNormalizer struct{}

func (identityNormalizer) normalize(s string) string { return s }
