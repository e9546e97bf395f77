package gguf

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// hfTokenizer is the part of a Hugging Face tokenizer.json that GGUF needs.
type hfTokenizer struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type         string            `json:"type"`
		Vocab        json.RawMessage   `json:"vocab"`
		Merges       []json.RawMessage `json:"merges"`
		ByteFallback bool              `json:"byte_fallback"`
		UnkToken     *string           `json:"unk_token"`
	} `json:"model"`
}

// jsonNodes calls fn on every JSON object in raw, depth first.
func jsonNodes(raw json.RawMessage, fn func(map[string]any)) {
	if len(raw) == 0 {
		return
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			fn(x)
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(v)
}

// hasType reports whether a component tree (normalizer, pre_tokenizer, ...)
// holds a component of the given "type".
func hasType(raw json.RawMessage, typ string) bool {
	found := false
	jsonNodes(raw, func(m map[string]any) {
		if t, _ := m["type"].(string); t == typ {
			found = true
		}
	})
	return found
}

// mergePair decodes a merge, "a b" or ["a", "b"].
func mergePair(raw json.RawMessage) (string, string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		a, b, ok := strings.Cut(s, " ")
		if !ok {
			return "", "", fmt.Errorf("merge %q has no space", s)
		}
		return a, b, nil
	}
	var p []string
	if err := json.Unmarshal(raw, &p); err != nil || len(p) != 2 {
		return "", "", fmt.Errorf("merge %s is neither \"a b\" nor [\"a\", \"b\"]", raw)
	}
	return p[0], p[1], nil
}

// isByteToken reports whether t is a byte token "<0xNN>".
func isByteToken(t string) bool {
	if len(t) != 6 || t[:3] != "<0x" || t[5] != '>' {
		return false
	}
	for _, c := range []byte(t[3:5]) {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// TokenizerOptions are the choices TokenizerMetadata cannot read from
// tokenizer.json.
type TokenizerOptions struct {
	// Config is tokenizer_config.json (optional): add_bos_token,
	// add_eos_token and the bos/eos token texts are read from it.
	Config []byte
	// Pre overrides the llama.cpp pre-tokenizer name of a GPT-2 byte-level
	// vocabulary ("llama-bpe", "qwen2", ...); by default it is recognised
	// from the pre_tokenizer's regular expression.
	Pre string
	// VocabSize is the model's vocabulary size (rows of the embedding);
	// the token list is padded to it with unused "[PAD<id>]" tokens. 0
	// means the tokenizer's size.
	VocabSize int
	// BOS and EOS are the model's begin/end of sequence token ids (from
	// config.json); negative means look the texts up in Config.
	BOS, EOS int
}

// TokenizerMetadata returns the tokenizer.ggml.* metadata of a Hugging
// Face tokenizer.json with a BPE model:
//
//   - SentencePiece-style vocabularies (byte_fallback, "▁" for spaces) get
//     model "llama": tokens, scores, token_type, bos/eos/unk ids,
//     add_bos_token, add_eos_token, add_space_prefix. llama.cpp's "llama"
//     tokenizer merges the adjacent pair whose concatenation has the
//     highest score, while Hugging Face's BPE applies the merge of lowest
//     rank. A token's score is therefore minus the rank of the first merge
//     that produces it (0, -1, -2, ...), so that llama.cpp merges in
//     Hugging Face's order; tokens no merge produces (single characters,
//     bytes, special tokens) get a score below every merge's, -(number of
//     merges) - 1. (llama.cpp's own converter gives every token -1000,
//     which makes its tokenizer merge left to right instead.)
//   - GPT-2 byte-level vocabularies get model "gpt2": tokens, merges,
//     token_type, pre, bos/eos ids, the unknown id (model.unk_token),
//     add_space_prefix (the ByteLevel pre-tokenizer's add_prefix_space),
//     add_bos_token, add_eos_token.
//
// Both also get padding_token_id (tokenizer_config.json's pad_token) and
// tokenizer.chat_template (its chat_template; a list of named templates
// gives tokenizer.chat_template.<name> for each but "default").
func TokenizerMetadata(tokenizerJSON []byte, opts TokenizerOptions) (Metadata, error) {
	var tj hfTokenizer
	if err := json.Unmarshal(tokenizerJSON, &tj); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model type %q is not supported (want BPE)", tj.Model.Type)
	}
	var vocab map[string]int
	if err := json.Unmarshal(tj.Model.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer.json: BPE vocab: %w", err)
	}
	var tc struct {
		AddBOS *bool           `json:"add_bos_token"`
		AddEOS *bool           `json:"add_eos_token"`
		BOS    json.RawMessage `json:"bos_token"`
		EOS    json.RawMessage `json:"eos_token"`
		Pad    json.RawMessage `json:"pad_token"`
		// ChatTemplate is a template string, or a list of named
		// templates ({"name": ..., "template": ...}).
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if len(opts.Config) > 0 {
		if err := json.Unmarshal(opts.Config, &tc); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}

	// Tokens by id: the model's vocabulary, then added tokens (whose
	// content wins over a vocabulary entry of the same id).
	n := 0
	for text, id := range vocab {
		if id < 0 || id >= 1<<24 {
			return nil, fmt.Errorf("tokenizer.json: token %q has id %d out of range", text, id)
		}
		n = max(n, id+1)
	}
	for _, at := range tj.AddedTokens {
		if at.ID < 0 || at.ID >= 1<<24 {
			return nil, fmt.Errorf("tokenizer.json: added token %q has id %d out of range", at.Content, at.ID)
		}
		n = max(n, at.ID+1)
	}
	if opts.VocabSize > 0 {
		if n > opts.VocabSize {
			return nil, fmt.Errorf("tokenizer.json: %d tokens, more than the model's vocab_size %d", n, opts.VocabSize)
		}
		n = opts.VocabSize
	}
	tokens := make([]string, n)
	types := make([]int32, n)
	set := make([]bool, n)
	for text, id := range vocab {
		if set[id] {
			return nil, fmt.Errorf("tokenizer.json: id %d is used by %q and %q", id, tokens[id], text)
		}
		tokens[id], types[id], set[id] = text, TokenNormal, true
	}
	ids := make(map[string]int, n)
	for _, at := range tj.AddedTokens {
		tokens[at.ID], set[at.ID] = at.Content, true
		types[at.ID] = TokenUserDefined
		if at.Special {
			types[at.ID] = TokenControl
		}
	}
	for id := range tokens {
		if !set[id] {
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), TokenUnused
		}
		if _, dup := ids[tokens[id]]; !dup {
			ids[tokens[id]] = id
		}
	}

	tokenID := func(raw json.RawMessage) int {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var obj struct {
				Content string `json:"content"`
			}
			if json.Unmarshal(raw, &obj) != nil {
				return -1
			}
			s = obj.Content
		}
		if id, ok := ids[s]; ok && s != "" {
			return id
		}
		return -1
	}
	bos, eos := opts.BOS, opts.EOS
	if bos < 0 {
		bos = tokenID(tc.BOS)
	}
	if eos < 0 {
		eos = tokenID(tc.EOS)
	}

	// add_bos / add_eos: tokenizer_config.json, else the post-processor's
	// template for a single sequence.
	tmplBOS, tmplEOS := false, false
	jsonNodes(tj.PostProcessor, func(m map[string]any) {
		if t, _ := m["type"].(string); t != "TemplateProcessing" {
			return
		}
		single, _ := m["single"].([]any)
		if len(single) == 0 {
			return
		}
		isSpecial := func(v any) bool {
			m, _ := v.(map[string]any)
			_, ok := m["SpecialToken"]
			return ok
		}
		tmplBOS = isSpecial(single[0])
		tmplEOS = len(single) > 1 && isSpecial(single[len(single)-1])
	})
	addBOS, addEOS := tmplBOS, tmplEOS
	if tc.AddBOS != nil {
		addBOS = *tc.AddBOS
	}
	if tc.AddEOS != nil {
		addEOS = *tc.AddEOS
	}

	spm := tj.Model.ByteFallback && !hasType(tj.PreTokenizer, "ByteLevel")
	md := Metadata{}
	if spm {
		scores, err := spmScores(&tj, tokens, ids)
		if err != nil {
			return nil, err
		}
		unk := -1
		if tj.Model.UnkToken != nil {
			if id, ok := ids[*tj.Model.UnkToken]; ok {
				unk = id
				types[id] = TokenUnknown
			}
		}
		for id, t := range tokens {
			if types[id] == TokenNormal && isByteToken(t) {
				types[id] = TokenByte
			}
		}
		spacePrefix := false
		jsonNodes(tj.Normalizer, func(m map[string]any) {
			if t, _ := m["type"].(string); t == "Prepend" && m["prepend"] == "▁" {
				spacePrefix = true
			}
		})
		jsonNodes(tj.PreTokenizer, func(m map[string]any) {
			if t, _ := m["type"].(string); t == "Metaspace" {
				scheme, _ := m["prepend_scheme"].(string)
				add, _ := m["add_prefix_space"].(bool)
				spacePrefix = spacePrefix || scheme == "always" || scheme == "first" || add
			}
		})
		md = append(md,
			KV{"tokenizer.ggml.model", "llama"},
			KV{"tokenizer.ggml.tokens", tokens},
			KV{"tokenizer.ggml.scores", scores},
			KV{"tokenizer.ggml.token_type", types},
		)
		if unk >= 0 {
			md = append(md, KV{"tokenizer.ggml.unknown_token_id", uint32(unk)})
		}
		md = append(md, KV{"tokenizer.ggml.add_space_prefix", spacePrefix})
	} else {
		if !hasType(tj.PreTokenizer, "ByteLevel") {
			return nil, fmt.Errorf("tokenizer.json: a BPE model that is neither SentencePiece-style (byte_fallback) nor GPT-2 byte-level (ByteLevel pre-tokenizer)")
		}
		pre := opts.Pre
		if pre == "" {
			var err error
			if pre, err = preName(tj.PreTokenizer); err != nil {
				return nil, err
			}
		}
		merges := make([]string, len(tj.Model.Merges))
		for i, raw := range tj.Model.Merges {
			a, b, err := mergePair(raw)
			if err != nil {
				return nil, fmt.Errorf("tokenizer.json: merge %d: %w", i, err)
			}
			merges[i] = a + " " + b
		}
		md = append(md,
			KV{"tokenizer.ggml.model", "gpt2"},
			KV{"tokenizer.ggml.pre", pre},
			KV{"tokenizer.ggml.tokens", tokens},
			KV{"tokenizer.ggml.token_type", types},
			KV{"tokenizer.ggml.merges", merges},
		)
		if tj.Model.UnkToken != nil {
			if id, ok := ids[*tj.Model.UnkToken]; ok {
				md = append(md, KV{"tokenizer.ggml.unknown_token_id", uint32(id)})
			}
		}
		// The ByteLevel pre-tokenizer's add_prefix_space (true by default
		// in tokenizers): llama.cpp's BPE tokenizer does not prepend the
		// space, but drops a leading one when detokenizing.
		prefix := false
		jsonNodes(tj.PreTokenizer, func(m map[string]any) {
			if t, _ := m["type"].(string); t == "ByteLevel" {
				add, ok := m["add_prefix_space"].(bool)
				prefix = prefix || add || !ok
			}
		})
		md = append(md, KV{"tokenizer.ggml.add_space_prefix", prefix})
	}
	if bos >= 0 {
		if bos >= n {
			return nil, fmt.Errorf("tokenizer: bos token id %d is outside the vocabulary (%d tokens)", bos, n)
		}
		md = append(md, KV{"tokenizer.ggml.bos_token_id", uint32(bos)})
	}
	if eos >= 0 {
		if eos >= n {
			return nil, fmt.Errorf("tokenizer: eos token id %d is outside the vocabulary (%d tokens)", eos, n)
		}
		md = append(md, KV{"tokenizer.ggml.eos_token_id", uint32(eos)})
	}
	if pad := tokenID(tc.Pad); pad >= 0 {
		md = append(md, KV{"tokenizer.ggml.padding_token_id", uint32(pad)})
	}
	md = append(md, KV{"tokenizer.ggml.add_bos_token", addBOS}, KV{"tokenizer.ggml.add_eos_token", addEOS})
	tmpl, err := chatTemplates(tc.ChatTemplate)
	if err != nil {
		return nil, err
	}
	return append(md, tmpl...), nil
}

// spmScores gives each token minus the rank of the first merge producing
// it, and every other token -(len(merges)+1).
func spmScores(tj *hfTokenizer, tokens []string, ids map[string]int) ([]float32, error) {
	if len(tj.Model.Merges) >= 1<<24 {
		return nil, fmt.Errorf("tokenizer.json: %d merges, too many for exact float32 scores", len(tj.Model.Merges))
	}
	floor := -float32(len(tj.Model.Merges) + 1)
	scores := make([]float32, len(tokens))
	for i := range scores {
		scores[i] = floor
	}
	for rank, raw := range tj.Model.Merges {
		a, b, err := mergePair(raw)
		if err != nil {
			return nil, fmt.Errorf("tokenizer.json: merge %d: %w", rank, err)
		}
		id, ok := ids[a+b]
		if !ok {
			return nil, fmt.Errorf("tokenizer.json: merge %d (%q %q) produces %q, which is not in the vocabulary", rank, a, b, a+b)
		}
		if scores[id] == floor {
			scores[id] = -float32(rank)
		}
	}
	return scores, nil
}

// chatTemplates returns tokenizer.chat_template (and, for a list of named
// templates, tokenizer.chat_template.<name> for each but "default") from
// tokenizer_config.json's chat_template.
func chatTemplates(raw json.RawMessage) (Metadata, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return Metadata{{"tokenizer.chat_template", one}}, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: chat_template is neither a string nor a list of {name, template}")
	}
	var md Metadata
	for _, t := range named {
		key := "tokenizer.chat_template"
		if t.Name != "default" {
			key += "." + t.Name
		}
		if _, dup := md.Get(key); dup || t.Name == "" {
			return nil, fmt.Errorf("tokenizer_config.json: chat_template name %q is empty or repeated", t.Name)
		}
		md = append(md, KV{key, t.Template})
	}
	return md, nil
}
