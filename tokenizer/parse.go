package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode/utf8"
)

type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         json.RawMessage  `json:"model"`
}

type addedTokenJSON struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ByteFallback            bool            `json:"byte_fallback"`
	FuseUnk                 bool            `json:"fuse_unk"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	Dropout                 *float64        `json:"dropout"`
}

// componentJSON holds the fields of every normalizer, pre-tokenizer,
// decoder and post-processor type this package reads.
type componentJSON struct {
	Type             string                      `json:"type"`
	Normalizers      []json.RawMessage           `json:"normalizers"`
	PreTokenizers    []json.RawMessage           `json:"pretokenizers"`
	Decoders         []json.RawMessage           `json:"decoders"`
	Processors       []json.RawMessage           `json:"processors"`
	Prepend          string                      `json:"prepend"`
	Pattern          *patternJSON                `json:"pattern"`
	Content          *string                     `json:"content"`
	Behavior         string                      `json:"behavior"`
	Invert           bool                        `json:"invert"`
	AddPrefixSpace   *bool                       `json:"add_prefix_space"`
	UseRegex         *bool                       `json:"use_regex"`
	Replacement      *string                     `json:"replacement"`
	PrependScheme    string                      `json:"prepend_scheme"`
	Split            *bool                       `json:"split"`
	Start            int                         `json:"start"`
	Stop             int                         `json:"stop"`
	StripLeft        bool                        `json:"strip_left"`
	StripRight       bool                        `json:"strip_right"`
	IndividualDigits bool                        `json:"individual_digits"`
	Single           []json.RawMessage           `json:"single"`
	SpecialTokens    map[string]specialTokenJSON `json:"special_tokens"`
	Cls              []json.RawMessage           `json:"cls"`
	Sep              []json.RawMessage           `json:"sep"`
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type specialTokenJSON struct {
	ID  string `json:"id"`
	IDs []int  `json:"ids"`
}

func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || bytes.Equal(m, []byte("null"))
}

func parseFile(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if isNull(f.Model) {
		return nil, errors.New("model: missing")
	}
	model, err := parseModel(f.Model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	t := &Tokenizer{model: model}

	if !isNull(f.Normalizer) {
		if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
			return nil, fmt.Errorf("normalizer: %w", err)
		}
	}
	if !isNull(f.PreTokenizer) {
		if t.pretok, err = parsePreTokenizer(f.PreTokenizer); err != nil {
			return nil, fmt.Errorf("pre_tokenizer: %w", err)
		}
	}
	if !isNull(f.Decoder) {
		if t.decoder, err = parseDecoder(f.Decoder); err != nil {
			return nil, fmt.Errorf("decoder: %w", err)
		}
	}

	maxID := -1
	for _, id := range model.vocab {
		maxID = max(maxID, id)
	}
	var added []*addedToken
	for i, a := range f.AddedTokens {
		if a.ID == nil {
			return nil, fmt.Errorf("added_tokens[%d]: missing id", i)
		}
		if err := checkID(*a.ID); err != nil {
			return nil, fmt.Errorf("added_tokens[%d].id: %w", i, err)
		}
		normalized := !a.Special
		if a.Normalized != nil {
			normalized = *a.Normalized
		}
		added = append(added, &addedToken{
			id: *a.ID, content: a.Content, special: a.Special, lstrip: a.LStrip,
			rstrip: a.RStrip, singleWord: a.SingleWord, normalized: normalized,
		})
		maxID = max(maxID, *a.ID)
	}
	t.added = newAddedVocab(added, t.normalizer)
	t.vocabSize = maxID + 1

	if !isNull(f.PostProcessor) {
		if t.post, err = parsePostProcessor(f.PostProcessor); err != nil {
			return nil, fmt.Errorf("post_processor: %w", err)
		}
	}
	t.bos, t.eos = boundary(t.post)
	if t.bos < 0 {
		t.bos = t.specialNamed("<s>", "<|begin_of_text|>", "<bos>")
	}
	if t.eos < 0 {
		t.eos = t.specialNamed("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>")
	}
	return t, nil
}

func (t *Tokenizer) specialNamed(names ...string) int {
	for _, n := range names {
		if id, ok := t.added.byContent[n]; ok && t.added.byID[id].special {
			return id
		}
	}
	return -1
}

func checkID(id int) error {
	if id < 0 || id > math.MaxInt32 {
		return fmt.Errorf("id %d out of range", id)
	}
	return nil
}

func parseModel(raw json.RawMessage) (*bpe, error) {
	var mj modelJSON
	if err := json.Unmarshal(raw, &mj); err != nil {
		return nil, err
	}
	if mj.Type != "BPE" && !(mj.Type == "" && mj.Merges != nil) {
		return nil, fmt.Errorf("type: unsupported model type %q (only BPE)", mj.Type)
	}
	if mj.Dropout != nil && *mj.Dropout != 0 {
		return nil, fmt.Errorf("dropout: %v not supported (deterministic BPE only)", *mj.Dropout)
	}
	m := &bpe{
		vocab:        mj.Vocab,
		idToTok:      make(map[int]string, len(mj.Vocab)),
		merges:       map[uint64]merge{},
		unk:          -1,
		byteFallback: mj.ByteFallback,
		fuseUnk:      mj.FuseUnk,
		ignoreMerges: mj.IgnoreMerges,
		cache:        map[string][]int{},
	}
	if m.vocab == nil {
		m.vocab = map[string]int{}
	}
	if mj.ContinuingSubwordPrefix != nil {
		m.prefix = *mj.ContinuingSubwordPrefix
	}
	if mj.EndOfWordSuffix != nil {
		m.suffix = *mj.EndOfWordSuffix
	}
	for tok, id := range m.vocab {
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("vocab[%q]: %w", tok, err)
		}
		// Several strings may share an id; keep the smallest for determinism.
		if old, ok := m.idToTok[id]; !ok || tok < old {
			m.idToTok[id] = tok
		}
	}
	for b := range 256 {
		m.byteIDs[b] = -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	if mj.UnkToken != nil {
		id, ok := m.vocab[*mj.UnkToken]
		if !ok {
			return nil, fmt.Errorf("unk_token: %q is not in the vocab", *mj.UnkToken)
		}
		m.unk = id
	}
	pairs, err := parseMerges(mj.Merges)
	if err != nil {
		return nil, err
	}
	rights := map[string]bool{}
	for i, p := range pairs {
		rights[p[1]] = true
		a, ok := m.vocab[p[0]]
		if !ok {
			return nil, fmt.Errorf("merges[%d]: %q is not in the vocab", i, p[0])
		}
		b, ok := m.vocab[p[1]]
		if !ok {
			return nil, fmt.Errorf("merges[%d]: %q is not in the vocab", i, p[1])
		}
		right := p[1]
		if m.prefix != "" {
			if !strings.HasPrefix(right, m.prefix) {
				return nil, fmt.Errorf("merges[%d]: %q lacks continuing_subword_prefix %q", i, right, m.prefix)
			}
			right = right[len(m.prefix):]
		}
		id, ok := m.vocab[p[0]+right]
		if !ok {
			return nil, fmt.Errorf("merges[%d]: merged token %q is not in the vocab", i, p[0]+right)
		}
		if i > math.MaxInt32 {
			return nil, errors.New("merges: too many")
		}
		m.merges[pairKey(int32(a), int32(b))] = merge{rank: int32(i), id: int32(id)}
	}
	m.setBoundary("▁", rights)
	return m, nil
}

// parseMerges accepts both ["a b", ...] and [["a", "b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("merges: %w", err)
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			l, r, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("merges[%d]: %q is not \"left right\"", i, s)
			}
			out[i] = [2]string{l, r}
			continue
		}
		var pair []string
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("merges[%d]: want \"a b\" or [\"a\", \"b\"], got %.40s", i, it)
		}
		out[i] = [2]string{pair[0], pair[1]}
	}
	return out, nil
}

func parseComponent(raw json.RawMessage) (*componentJSON, error) {
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	c, err := parseComponent(raw)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var q seqNormalizer
		for i, sub := range c.Normalizers {
			n, err := parseNormalizer(sub)
			if err != nil {
				return nil, fmt.Errorf("normalizers[%d]: %w", i, err)
			}
			if n != nil {
				q = append(q, n)
			}
		}
		return q, nil
	case "Prepend":
		return prependNormalizer(c.Prepend), nil
	case "Replace":
		r, err := parseReplace(c)
		if err != nil {
			return nil, err
		}
		return r, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "Strip":
		return stripNormalizer{left: c.StripLeft, right: c.StripRight}, nil
	case "NFC":
		return identityNormalizer{}, nil
	}
	return nil, fmt.Errorf("unsupported normalizer type %q", c.Type)
}

func parseReplace(c *componentJSON) (*replacer, error) {
	if c.Pattern == nil || c.Content == nil {
		return nil, errors.New("Replace: needs pattern and content")
	}
	r := &replacer{content: *c.Content}
	switch {
	case c.Pattern.String != nil:
		r.literal = *c.Pattern.String
	case c.Pattern.Regex != nil:
		re, err := regexp.Compile(*c.Pattern.Regex)
		if err != nil {
			return nil, fmt.Errorf("pattern.Regex %q: not supported by Go's regexp: %w", *c.Pattern.Regex, err)
		}
		r.re = re
	default:
		return nil, errors.New("pattern: needs String or Regex")
	}
	return r, nil
}

func parsePreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	c, err := parseComponent(raw)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var q seqPreTokenizer
		for i, sub := range c.PreTokenizers {
			p, err := parsePreTokenizer(sub)
			if err != nil {
				return nil, fmt.Errorf("pretokenizers[%d]: %w", i, err)
			}
			q = append(q, p)
		}
		return q, nil
	case "Split":
		if c.Pattern == nil {
			return nil, errors.New("Split: missing pattern")
		}
		behavior, ok := parseBehavior(c.Behavior)
		if !ok {
			return nil, fmt.Errorf("Split: unknown behavior %q", c.Behavior)
		}
		var m matcher
		switch {
		case c.Pattern.String != nil:
			m = regexMatcher{regexp.MustCompile(regexp.QuoteMeta(*c.Pattern.String))}
		case c.Pattern.Regex != nil:
			m, err = compileSplitRegex(*c.Pattern.Regex)
			if err != nil {
				return nil, fmt.Errorf("Split: pattern.Regex: %w", err)
			}
		default:
			return nil, errors.New("Split: pattern needs String or Regex")
		}
		return &splitPreTokenizer{m: m, behavior: behavior, invert: c.Invert}, nil
	case "ByteLevel":
		p := &byteLevelPreTokenizer{addPrefixSpace: true, useRegex: true}
		if c.AddPrefixSpace != nil {
			p.addPrefixSpace = *c.AddPrefixSpace
		}
		if c.UseRegex != nil {
			p.useRegex = *c.UseRegex
		}
		return p, nil
	case "Metaspace":
		rep, scheme, err := metaspaceConfig(c)
		if err != nil {
			return nil, err
		}
		p := &metaspacePreTokenizer{replacement: string(rep), scheme: scheme, split: true}
		if c.Split != nil {
			p.split = *c.Split
		}
		return p, nil
	case "WhitespaceSplit":
		return whitespaceSplit{}, nil
	case "Whitespace":
		return &splitPreTokenizer{m: regexMatcher{whitespaceRE()}, behavior: behaviorRemoved, invert: true}, nil
	case "Digits":
		b := behaviorContiguous
		if c.IndividualDigits {
			b = behaviorIsolated
		}
		return &splitPreTokenizer{m: runeMatcher(isN), behavior: b}, nil
	}
	return nil, fmt.Errorf("unsupported pre-tokenizer type %q", c.Type)
}

// whitespaceRE is \w+|[^\w\s]+ with Oniguruma's Unicode \w and \s.
func whitespaceRE() *regexp.Regexp {
	const w = `\p{L}\p{M}\p{Nd}\p{Pc}`
	const s = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`
	return regexp.MustCompile(`[` + w + `]+|[^` + w + s + `]+`)
}

// compileSplitRegex returns the scanner for a known lookahead pattern, else
// Go's regexp (whose \s, \w, \d are ASCII-only, unlike Oniguruma's).
func compileSplitRegex(pattern string) (matcher, error) {
	if m, ok := knownScanner(pattern); ok {
		return m, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%q is not one of the known Llama 3/Qwen2/GPT-2 patterns and Go's regexp cannot compile it: %w", pattern, err)
	}
	return regexMatcher{re}, nil
}

func metaspaceConfig(c *componentJSON) (rune, int, error) {
	rep := '▁'
	if c.Replacement != nil {
		r, n := utf8.DecodeRuneInString(*c.Replacement)
		if n == 0 || n != len(*c.Replacement) || r == utf8.RuneError {
			return 0, 0, fmt.Errorf("Metaspace: replacement %q must be one character", *c.Replacement)
		}
		rep = r
	}
	scheme := prependAlways
	switch c.PrependScheme {
	case "":
		if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			scheme = prependNever
		}
	case "always":
		scheme = prependAlways
	case "first":
		scheme = prependFirst
	case "never":
		scheme = prependNever
	default:
		return 0, 0, fmt.Errorf("Metaspace: unknown prepend_scheme %q", c.PrependScheme)
	}
	return rep, scheme, nil
}

func parseDecoder(raw json.RawMessage) (decoder, error) {
	c, err := parseComponent(raw)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var q seqDecoder
		for i, sub := range c.Decoders {
			d, err := parseDecoder(sub)
			if err != nil {
				return nil, fmt.Errorf("decoders[%d]: %w", i, err)
			}
			q = append(q, d)
		}
		return q, nil
	case "Replace":
		r, err := parseReplace(c)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{r}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		if c.Content == nil {
			return nil, errors.New("Strip: missing content")
		}
		r, n := utf8.DecodeRuneInString(*c.Content)
		if n == 0 || n != len(*c.Content) {
			return nil, fmt.Errorf("Strip: content %q must be one character", *c.Content)
		}
		if c.Start < 0 || c.Stop < 0 {
			return nil, fmt.Errorf("Strip: negative start/stop %d/%d", c.Start, c.Stop)
		}
		return stripDecoder{content: r, start: c.Start, stop: c.Stop}, nil
	case "Metaspace":
		rep, scheme, err := metaspaceConfig(c)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{replacement: rep, scheme: scheme}, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	}
	return nil, fmt.Errorf("unsupported decoder type %q", c.Type)
}

func parsePostProcessor(raw json.RawMessage) (postProcessor, error) {
	c, err := parseComponent(raw)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var q seqProcessor
		for i, sub := range c.Processors {
			p, err := parsePostProcessor(sub)
			if err != nil {
				return nil, fmt.Errorf("processors[%d]: %w", i, err)
			}
			q = append(q, p)
		}
		return q, nil
	case "ByteLevel":
		return noopProcessor{}, nil
	case "TemplateProcessing":
		return parseTemplate(c)
	case "BertProcessing", "RobertaProcessing":
		cls, err := tokenIDPair(c.Cls)
		if err != nil {
			return nil, fmt.Errorf("cls: %w", err)
		}
		sep, err := tokenIDPair(c.Sep)
		if err != nil {
			return nil, fmt.Errorf("sep: %w", err)
		}
		return &templateProcessor{before: []int{cls}, after: []int{sep}}, nil
	}
	return nil, fmt.Errorf("unsupported post-processor type %q", c.Type)
}

// tokenIDPair parses ["<token>", id].
func tokenIDPair(raw []json.RawMessage) (int, error) {
	var id int
	if len(raw) != 2 || json.Unmarshal(raw[1], &id) != nil {
		return 0, errors.New(`want ["token", id]`)
	}
	return id, checkID(id)
}

type templatePieceJSON struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// parseTemplate flattens the single template into ids before and after $A.
// Pieces may also be the string forms "$A", "$0", "$A:0" or "<s>", "<s>:0".
func parseTemplate(c *componentJSON) (postProcessor, error) {
	p := &templateProcessor{}
	seen := false
	for i, raw := range c.Single {
		var special string
		var pj templatePieceJSON
		var str string
		switch {
		case json.Unmarshal(raw, &str) == nil:
			name, _, _ := strings.Cut(str, ":")
			if strings.HasPrefix(name, "$") {
				if seen {
					return nil, fmt.Errorf("single[%d]: second sequence %q", i, str)
				}
				seen = true
				continue
			}
			special = name
		case json.Unmarshal(raw, &pj) == nil && pj.Sequence != nil:
			if pj.Sequence.ID != "A" {
				return nil, fmt.Errorf("single[%d]: sequence %q in single template", i, pj.Sequence.ID)
			}
			if seen {
				return nil, fmt.Errorf("single[%d]: second sequence", i)
			}
			seen = true
			continue
		case pj.SpecialToken != nil:
			special = pj.SpecialToken.ID
		default:
			return nil, fmt.Errorf("single[%d]: unrecognised piece %.60s", i, raw)
		}
		st, ok := c.SpecialTokens[special]
		if !ok {
			return nil, fmt.Errorf("single[%d]: special token %q missing from special_tokens", i, special)
		}
		for _, id := range st.IDs {
			if err := checkID(id); err != nil {
				return nil, fmt.Errorf("special_tokens[%q]: %w", special, err)
			}
		}
		if seen {
			p.after = append(p.after, st.IDs...)
		} else {
			p.before = append(p.before, st.IDs...)
		}
	}
	if !seen {
		return nil, errors.New("single: template has no $A sequence")
	}
	return p, nil
}
