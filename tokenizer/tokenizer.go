// Package tokenizer loads a Hugging Face tokenizer.json holding a BPE model and
// encodes and decodes text the way the Rust `tokenizers` library does.
//
// Two families are covered: SentencePiece-style files (Llama 1/2: a "▁"
// normalizer or Metaspace pre-tokenizer, <0xNN> byte fallback) and GPT-2
// byte-level files (Llama 3, Qwen2: a Split regex plus ByteLevel). The
// pipeline mirrors the library's: added tokens are matched first and never
// split, the remaining text is normalized, pre-tokenized into words, each
// word is merged by BPE rank, and the post-processor may add a BOS token.
//
// A Tokenizer is immutable after loading apart from its word cache, which is
// guarded by a lock, so it is safe for concurrent use.
package tokenizer

import (
	"fmt"
	"os"
	"sort"
)

// Tokenizer encodes text to token ids and decodes ids to text.
type Tokenizer struct {
	model      *bpe
	added      *addedVocab
	normalizer normalizer   // nil when the file has none
	pretok     preTokenizer // nil when the file has none
	decoder    decoder      // nil: tokens are joined with " "
	post       postProcessor
	bos, eos   int
	vocabSize  int
}

// Load reads and parses the tokenizer.json at path.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}

// Parse builds a Tokenizer from the contents of a tokenizer.json file. Errors
// name the JSON field at fault. Components of a type this package does not
// implement are reported as errors rather than silently ignored.
func Parse(data []byte) (*Tokenizer, error) {
	return parseFile(data)
}

// Encode tokenizes text. With addSpecial the post-processor's special tokens
// (for Llama, the BOS token) are added, like add_special_tokens=True in
// Hugging Face. Invalid UTF-8 bytes in text are treated like U+FFFD when
// splitting, but byte-level and byte-fallback models encode the raw bytes.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	var ids []int
	for _, seg := range t.added.splitRaw(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		norm := seg.text
		if t.normalizer != nil {
			norm = t.normalizer.normalize(norm)
		}
		for i, sub := range t.added.splitNormalized(norm) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
				continue
			}
			words := []piece{{text: sub.text, first: seg.first && i == 0}}
			if t.pretok != nil {
				words = t.pretok.preTokenize(words)
			}
			for _, w := range words {
				ids = t.model.tokenize(w.text, ids)
			}
		}
	}
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids
}

// Decode turns ids back into text through the file's decoder, keeping
// special tokens (like skip_special_tokens=False). Unknown ids are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	return t.decode(ids, false)
}

// DecodeSkipSpecial is Decode with added tokens flagged special dropped
// (like skip_special_tokens=True).
func (t *Tokenizer) DecodeSkipSpecial(ids []int) string {
	return t.decode(ids, true)
}

func (t *Tokenizer) decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if a, ok := t.added.byID[id]; ok {
			if skipSpecial && a.special {
				continue
			}
			toks = append(toks, a.content)
			continue
		}
		if s, ok := t.model.idToTok[id]; ok {
			toks = append(toks, s)
		}
	}
	if t.decoder == nil {
		return joinTokens(toks, " ")
	}
	return joinTokens(t.decoder.decodeChain(toks), "")
}

// TokenToID returns the id of a token string (added tokens first, then the
// model vocabulary).
func (t *Tokenizer) TokenToID(token string) (int, bool) {
	if id, ok := t.added.byContent[token]; ok {
		return id, true
	}
	id, ok := t.model.vocab[token]
	return id, ok
}

// IDToToken returns the token string of an id (added tokens first, then the
// model vocabulary).
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if a, ok := t.added.byID[id]; ok {
		return a.content, true
	}
	s, ok := t.model.idToTok[id]
	return s, ok
}

// IsSpecial reports whether id is an added token flagged special.
func (t *Tokenizer) IsSpecial(id int) bool {
	a, ok := t.added.byID[id]
	return ok && a.special
}

// BOS returns the beginning-of-sequence id: the special token the
// post-processor puts before the text, else an added special token named
// <s>, <|begin_of_text|> or <bos>.
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS returns the end-of-sequence id: the special token the post-processor
// puts after the text, else an added special token named </s>,
// <|end_of_text|>, <|endoftext|> or <eos>. Chat models may stop on other
// tokens too (see generation_config.json).
func (t *Tokenizer) EOS() (int, bool) { return t.eos, t.eos >= 0 }

// VocabSize is one more than the highest id of the model vocabulary and the
// added tokens, i.e. the number of rows an embedding table needs.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// SpecialTokens returns the added tokens flagged special, sorted by id.
func (t *Tokenizer) SpecialTokens() []string {
	var ids []int
	for id, a := range t.added.byID {
		if a.special {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = t.added.byID[id].content
	}
	return out
}

func joinTokens(toks []string, sep string) string {
	n := 0
	for _, s := range toks {
		n += len(s) + len(sep)
	}
	b := make([]byte, 0, n)
	for i, s := range toks {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, s...)
	}
	return string(b)
}

// piece is a stretch of text on its way to the model. first records whether
// it starts at offset 0 of the input (Metaspace prepend_scheme "first").
type piece struct {
	text  string
	first bool
}
