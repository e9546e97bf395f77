package gguf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ohms-project/adaptq/tokenizer"
)

// Pre-tokenizer regular expressions of tokenizer.json files whose llama.cpp
// pre-tokenizer name package gguf recognises.
const (
	llama3Regex = tokenizer.Llama3Pattern
	qwen2Regex  = tokenizer.Qwen2Pattern
	// defaultRegexes are llama.cpp's regexes for a byte-level vocabulary
	// of pre type "default" (llm_tokenizer_bpe in llama-vocab.cpp), each
	// splitting the pieces of the one before. The second is GPT-2's, which
	// llama.cpp writes without the final |\s+ alternative; that only
	// matches whitespace the others leave unmatched, which both engines
	// keep as a piece of its own, so the two spellings split alike.
	defaultPunct = `[\p{P}\$\+<=>\^~\|]+`
)

var defaultRegexes = []string{defaultPunct, tokenizer.GPT2Pattern, `\p{N}+`, `[0-9][0-9][0-9]`}

// byteLevelPre is one GPT-2 byte-level pre-tokenizer: llama.cpp's name
// (tokenizer.ggml.pre) and the tokenizer.json pre_tokenizer that splits
// text the same way.
type byteLevelPre struct {
	name string
	// aliases are other llama.cpp names with the same behaviour (regexes
	// and flags); an import of one exports as name.
	aliases []string
	json    string
	// ignoreMerges and addBOS are what llama.cpp sets for the name:
	// a word that is a token is not merged further, a BOS is added by
	// default.
	ignoreMerges, addBOS bool
}

func splitJSON(regex string) string {
	q, _ := json.Marshal(regex)
	return `{"type":"Split","pattern":{"Regex":` + string(q) + `},"behavior":"Isolated","invert":false}`
}

func byteLevelJSON(useRegex bool) string {
	return fmt.Sprintf(`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":%t}`, useRegex)
}

func sequenceJSON(parts ...string) string {
	return `{"type":"Sequence","pretokenizers":[` + strings.Join(parts, ",") + `]}`
}

// byteLevelPres are the pre-tokenizers import and export map between
// tokenizer.json and tokenizer.ggml.pre, from llama.cpp's
// llm_tokenizer_bpe (llama-vocab.cpp) and the tokenizer.json files of the
// models that use them.
var byteLevelPres = []byteLevelPre{
	{name: "llama-bpe", aliases: []string{"llama3", "llama-v3"}, json: sequenceJSON(splitJSON(llama3Regex), byteLevelJSON(false)), ignoreMerges: true, addBOS: true},
	{name: "qwen2", json: sequenceJSON(splitJSON(qwen2Regex), byteLevelJSON(false))},
	// SmolLM: every digit a piece of its own, then GPT-2's regex.
	{name: "smollm", json: sequenceJSON(`{"type":"Digits","individual_digits":true}`, byteLevelJSON(true))},
	{name: "gpt-2", json: byteLevelJSON(true)},
	{name: "default", json: sequenceJSON(splitJSON(defaultRegexes[0]), splitJSON(defaultRegexes[1]), splitJSON(defaultRegexes[2]), splitJSON(defaultRegexes[3]), byteLevelJSON(false))},
}

// lookupPre returns the pre-tokenizer of a llama.cpp name or alias.
func lookupPre(name string) (*byteLevelPre, bool) {
	for i := range byteLevelPres {
		p := &byteLevelPres[i]
		if p.name == name {
			return p, true
		}
		for _, a := range p.aliases {
			if a == name {
				return p, true
			}
		}
	}
	return nil, false
}

// preName recognises llama.cpp's pre-tokenizer name from a GPT-2 byte-level
// pre_tokenizer: its Split regexes (Llama 3, Qwen2, llama.cpp's default
// list, none for plain GPT-2), or individual Digits before a ByteLevel with
// GPT-2's regex (SmolLM).
func preName(raw json.RawMessage) (string, error) {
	var patterns []string
	digits, byteRegex := false, true
	jsonNodes(raw, func(m map[string]any) {
		switch t, _ := m["type"].(string); t {
		case "Split":
			if p, ok := m["pattern"].(map[string]any); ok {
				if re, ok := p["Regex"].(string); ok {
					patterns = append(patterns, re)
				}
			}
		case "Digits":
			digits, _ = m["individual_digits"].(bool)
		case "ByteLevel":
			if u, ok := m["use_regex"].(bool); ok {
				byteRegex = u
			}
		}
	})
	// jsonNodes visits a Sequence's children in order, so patterns are in
	// the order they apply.
	switch {
	case len(patterns) == 0 && digits && byteRegex:
		return "smollm", nil
	case len(patterns) == 0 && !digits:
		return "gpt-2", nil
	case len(patterns) == 1 && patterns[0] == llama3Regex:
		return "llama-bpe", nil
	case len(patterns) == 1 && patterns[0] == qwen2Regex:
		return "qwen2", nil
	case slices.Equal(patterns, defaultRegexes):
		return "default", nil
	}
	var b bytes.Buffer
	for _, p := range patterns {
		if !utf8.ValidString(p) {
			p = strings.ToValidUTF8(p, "?")
		}
		fmt.Fprintf(&b, " %q", p)
	}
	if digits {
		b.WriteString(" (and Digits)")
	}
	return "", fmt.Errorf("tokenizer.json: pre-tokenizer regex%s is not one package gguf recognises; set TokenizerOptions.Pre to llama.cpp's name for it", b.String())
}
