package gguf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// TokenizerFiles rebuilds a Hugging Face tokenizer.json and
// tokenizer_config.json from a GGUF file's tokenizer metadata: the inverse
// of TokenizerMetadata, so that exporting the result writes the same
// tokens, token types, merges and pre-tokenizer name again. ctxLen, when
// positive, becomes model_max_length.
//
// tokenizer.ggml.model "gpt2" (byte-level BPE) gives a BPE model with the
// file's merges and the pre-tokenizer of tokenizer.ggml.pre (llama-bpe and
// its aliases llama3/llama-v3, qwen2, smollm, gpt-2, default; absent means
// default, as in llama.cpp); "llama" (SentencePiece-style) gives a BPE
// model with byte fallback whose merges are derived from the scores the
// way transformers converts a SentencePiece model: for every token, each
// split into two tokens, ordered by the token's score, highest first (ties
// by the ids of the parts), and the "▁" normalizer of
// tokenizer.ggml.add_space_prefix.
//
// Every token but the unused padding llama.cpp's converter adds (type 5,
// written back as "[PAD<id>]" by the export) is in the model's vocabulary;
// control (type 3) and unknown (type 2) tokens are also added tokens
// flagged special, user-defined tokens (type 4) added tokens not flagged
// special. BOS and EOS come from tokenizer.ggml.bos_token_id/eos_token_id,
// add_bos_token/add_eos_token (llama.cpp's defaults when absent: BOS for
// "llama" and llama-bpe) become a TemplateProcessing post-processor and
// tokenizer_config.json's flags, tokenizer.chat_template its chat_template,
// padding_token_id its pad_token. No Unicode normalizer is written for
// byte-level models: llama.cpp applies none (Qwen2's own tokenizer.json
// has NFC, which changes only text not already in NFC).
//
// Errors name the key: a missing or mistyped tokens, token_type, scores or
// merges array, lengths that disagree, an id outside the vocabulary, a
// repeated token, a merge whose parts are not tokens, an unknown model or
// pre-tokenizer.
func TokenizerFiles(md Metadata, ctxLen int) (tokenizerJSON, tokenizerConfigJSON []byte, err error) {
	model, err := md.GetString("tokenizer.ggml.model")
	if err != nil {
		return nil, nil, fmt.Errorf("gguf: %w", err)
	}
	if model != "gpt2" && model != "llama" {
		return nil, nil, fmt.Errorf("gguf: metadata key %q is %q; adaptq imports gpt2 (byte-level BPE) and llama (SentencePiece) tokenizers", "tokenizer.ggml.model", model)
	}
	tv, ok := md.Get("tokenizer.ggml.tokens")
	if !ok {
		return nil, nil, fmt.Errorf("gguf: metadata key %q is missing", "tokenizer.ggml.tokens")
	}
	tokens, ok := tv.([]string)
	if !ok || len(tokens) == 0 {
		return nil, nil, fmt.Errorf("gguf: metadata key %q is %T, want a non-empty string array", "tokenizer.ggml.tokens", tv)
	}
	n := len(tokens)
	types := make([]int32, n)
	for i := range types {
		types[i] = TokenNormal
	}
	if v, ok := md.Get("tokenizer.ggml.token_type"); ok {
		tt, isInt := v.([]int32)
		if !isInt || len(tt) != n {
			return nil, nil, fmt.Errorf("gguf: metadata key %q is %T of length %d, want int32 array of %d (one per token)", "tokenizer.ggml.token_type", v, arrayLen(v), n)
		}
		for i, t := range tt {
			if t < TokenNormal || t > TokenByte {
				return nil, nil, fmt.Errorf("gguf: metadata key %q: token %d has type %d (want 1 to 6)", "tokenizer.ggml.token_type", i, t)
			}
		}
		types = tt
	}
	special := func(key string) (int, error) {
		if _, ok := md.Get(key); !ok {
			return -1, nil
		}
		id, err := md.GetUint(key)
		if err != nil {
			return 0, fmt.Errorf("gguf: %w", err)
		}
		if id >= uint64(n) {
			return 0, fmt.Errorf("gguf: metadata key %q is %d, outside the %d tokens", key, id, n)
		}
		return int(id), nil
	}
	var bos, eos, unk, pad int
	for _, s := range []struct {
		key string
		dst *int
	}{{"tokenizer.ggml.bos_token_id", &bos}, {"tokenizer.ggml.eos_token_id", &eos}, {"tokenizer.ggml.unknown_token_id", &unk}, {"tokenizer.ggml.padding_token_id", &pad}} {
		if *s.dst, err = special(s.key); err != nil {
			return nil, nil, err
		}
	}
	flag := func(key string, def bool) (bool, error) {
		v, ok := md.Get(key)
		if !ok {
			return def, nil
		}
		b, isBool := v.(bool)
		if !isBool {
			return false, fmt.Errorf("gguf: metadata key %q is %T, want bool", key, v)
		}
		return b, nil
	}

	// The vocabulary: every token but the padding, each text once.
	kept := make([]bool, n)
	ids := make(map[string]int, n)
	for i, t := range tokens {
		if types[i] == TokenUnused {
			continue
		}
		if !utf8.ValidString(t) {
			return nil, nil, fmt.Errorf("gguf: metadata key %q: token %d (%q) is not valid UTF-8, which tokenizer.json cannot hold", "tokenizer.ggml.tokens", i, t)
		}
		if prev, dup := ids[t]; dup {
			return nil, nil, fmt.Errorf("gguf: metadata key %q: token %q appears at ids %d and %d", "tokenizer.ggml.tokens", t, prev, i)
		}
		ids[t], kept[i] = i, true
	}
	for _, s := range []struct {
		key string
		id  int
	}{{"tokenizer.ggml.bos_token_id", bos}, {"tokenizer.ggml.eos_token_id", eos}, {"tokenizer.ggml.unknown_token_id", unk}, {"tokenizer.ggml.padding_token_id", pad}} {
		if s.id >= 0 && !kept[s.id] {
			return nil, nil, fmt.Errorf("gguf: metadata key %q is %d, an unused (padding) token", s.key, s.id)
		}
	}

	var mdl hfModelJSON
	mdl.Type = "BPE"
	var normalizer, preTok, decoder string
	addBOSDefault := false
	if model == "gpt2" {
		pre := "default"
		if v, ok := md.Get("tokenizer.ggml.pre"); ok {
			s, isStr := v.(string)
			if !isStr {
				return nil, nil, fmt.Errorf("gguf: metadata key %q is %T, want string", "tokenizer.ggml.pre", v)
			}
			pre = s
		}
		p, ok := lookupPre(pre)
		if !ok {
			return nil, nil, fmt.Errorf("gguf: metadata key %q is %q, which adaptq does not import (it knows %s)", "tokenizer.ggml.pre", pre, knownPres())
		}
		if mdl.Merges, err = gpt2Merges(md, ids); err != nil {
			return nil, nil, err
		}
		mdl.IgnoreMerges = p.ignoreMerges
		addBOSDefault = p.addBOS
		normalizer, preTok = "null", p.json
		decoder = `{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`
	} else {
		scores, err := spmScoresOf(md, n)
		if err != nil {
			return nil, nil, err
		}
		mdl.Merges = spmMerges(tokens, kept, scores, ids)
		mdl.ByteFallback, mdl.FuseUnk = true, true
		addBOSDefault = true
		space, err := flag("tokenizer.ggml.add_space_prefix", true)
		if err != nil {
			return nil, nil, err
		}
		normalizer = `{"type":"Replace","pattern":{"String":" "},"content":"▁"}`
		decoder = `{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"}]}`
		if space {
			normalizer = `{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},` + normalizer + `]}`
			decoder = strings.TrimSuffix(decoder, "]}") + `,{"type":"Strip","content":" ","start":1,"stop":0}]}`
		}
		preTok = "null"
	}
	if unk >= 0 {
		u := tokens[unk]
		mdl.UnkToken = &u
	}
	addBOS, err := flag("tokenizer.ggml.add_bos_token", addBOSDefault)
	if err != nil {
		return nil, nil, err
	}
	addEOS, err := flag("tokenizer.ggml.add_eos_token", false)
	if err != nil {
		return nil, nil, err
	}
	if addBOS && bos < 0 || addEOS && eos < 0 {
		return nil, nil, fmt.Errorf("gguf: metadata key %q or %q is true but the token id is missing", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token")
	}

	// Added tokens: control, user-defined and the unknown token.
	var added []hfAddedJSON
	for i, t := range tokens {
		typ := types[i]
		if typ == TokenControl || typ == TokenUserDefined || typ == TokenUnknown {
			added = append(added, hfAddedJSON{ID: i, Content: t, Special: typ != TokenUserDefined})
		}
	}
	post := "null"
	if addBOS || addEOS {
		post = templateJSON(tokens, bos, eos, addBOS, addEOS)
	}

	var b bytes.Buffer
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ")
	writeJSON(&b, added)
	b.WriteString(",\n  \"normalizer\": " + normalizer)
	b.WriteString(",\n  \"pre_tokenizer\": " + preTok)
	b.WriteString(",\n  \"post_processor\": " + post)
	b.WriteString(",\n  \"decoder\": " + decoder)
	b.WriteString(",\n  \"model\": ")
	mdl.write(&b, tokens, kept)
	b.WriteString("\n}\n")

	cfg := map[string]any{
		"add_bos_token":                addBOS,
		"add_eos_token":                addEOS,
		"clean_up_tokenization_spaces": false,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	}
	if ctxLen > 0 {
		cfg["model_max_length"] = ctxLen
	}
	for _, s := range []struct {
		field string
		id    int
	}{{"bos_token", bos}, {"eos_token", eos}, {"unk_token", unk}, {"pad_token", pad}} {
		if s.id >= 0 {
			cfg[s.field] = tokens[s.id]
		}
	}
	if tmpl, err := chatTemplateOf(md); err != nil {
		return nil, nil, err
	} else if tmpl != nil {
		cfg["chat_template"] = tmpl
	}
	var cb bytes.Buffer
	enc := json.NewEncoder(&cb)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return nil, nil, fmt.Errorf("gguf: tokenizer_config.json: %w", err)
	}
	return b.Bytes(), cb.Bytes(), nil
}

func arrayLen(v any) int {
	_, _, n, err := valueType(v)
	if err != nil {
		return -1
	}
	return n
}

func knownPres() string {
	var names []string
	for _, p := range byteLevelPres {
		names = append(names, p.name)
		names = append(names, p.aliases...)
	}
	return strings.Join(names, ", ")
}

// gpt2Merges reads tokenizer.ggml.merges: "a b", split at the first space
// after the first byte as llama.cpp splits it; a, b and ab must be tokens.
func gpt2Merges(md Metadata, ids map[string]int) ([][2]string, error) {
	const key = "tokenizer.ggml.merges"
	v, ok := md.Get(key)
	if !ok {
		return nil, fmt.Errorf("gguf: metadata key %q is missing (a gpt2 tokenizer needs its merges)", key)
	}
	list, ok := v.([]string)
	if !ok {
		return nil, fmt.Errorf("gguf: metadata key %q is %T, want a string array", key, v)
	}
	out := make([][2]string, len(list))
	for i, m := range list {
		j := -1
		if len(m) > 1 {
			j = strings.IndexByte(m[1:], ' ')
		}
		if j < 0 {
			return nil, fmt.Errorf("gguf: metadata key %q: merge %d (%q) is not two tokens separated by a space", key, i, m)
		}
		a, b := m[:j+1], m[j+2:]
		for _, t := range []string{a, b, a + b} {
			if _, ok := ids[t]; !ok {
				return nil, fmt.Errorf("gguf: metadata key %q: merge %d (%q): %q is not a token", key, i, m, t)
			}
		}
		out[i] = [2]string{a, b}
	}
	return out, nil
}

// spmScoresOf reads tokenizer.ggml.scores (all 0 when absent, as llama.cpp
// reads them).
func spmScoresOf(md Metadata, n int) ([]float32, error) {
	const key = "tokenizer.ggml.scores"
	v, ok := md.Get(key)
	if !ok {
		return make([]float32, n), nil
	}
	s, ok := v.([]float32)
	if !ok || len(s) != n {
		return nil, fmt.Errorf("gguf: metadata key %q is %T of length %d, want float32 array of %d (one per token)", key, v, arrayLen(v), n)
	}
	for i, x := range s {
		if x != x {
			return nil, fmt.Errorf("gguf: metadata key %q: token %d has score NaN", key, i)
		}
	}
	return s, nil
}

// spmMerges derives BPE merges from SentencePiece scores as transformers'
// SentencePieceExtractor does: for every kept token, each split into two
// kept tokens, ordered by the ids of (left, right); then all of them,
// stably, by the token's score, highest first.
func spmMerges(tokens []string, kept []bool, scores []float32, ids map[string]int) [][2]string {
	type merge struct {
		l, r  int
		score float32
	}
	var ms []merge
	var local []merge
	for id, t := range tokens {
		if !kept[id] {
			continue
		}
		local = local[:0]
		for k := 1; k < len(t); k++ {
			l, okL := ids[t[:k]]
			r, okR := ids[t[k:]]
			if okL && okR {
				local = append(local, merge{l, r, scores[id]})
			}
		}
		sort.Slice(local, func(a, b int) bool {
			if local[a].l != local[b].l {
				return local[a].l < local[b].l
			}
			return local[a].r < local[b].r
		})
		ms = append(ms, local...)
	}
	sort.SliceStable(ms, func(a, b int) bool { return ms[a].score > ms[b].score })
	out := make([][2]string, len(ms))
	for i, m := range ms {
		out[i] = [2]string{tokens[m.l], tokens[m.r]}
	}
	return out
}

// templateJSON is a TemplateProcessing post-processor adding BOS before
// and/or EOS after the sequence.
func templateJSON(tokens []string, bos, eos int, addBOS, addEOS bool) string {
	type piece = map[string]any
	var single, pair []piece
	specials := map[string]any{}
	sp := func(id, typeID int) piece {
		specials[tokens[id]] = map[string]any{"id": tokens[id], "ids": []int{id}, "tokens": []string{tokens[id]}}
		return piece{"SpecialToken": map[string]any{"id": tokens[id], "type_id": typeID}}
	}
	seq := func(name string, typeID int) piece {
		return piece{"Sequence": map[string]any{"id": name, "type_id": typeID}}
	}
	for k, name := range []string{"A", "B"} {
		var p []piece
		if addBOS {
			p = append(p, sp(bos, k))
		}
		p = append(p, seq(name, k))
		if addEOS {
			p = append(p, sp(eos, k))
		}
		if k == 0 {
			single = p
		}
		pair = append(pair, p...)
	}
	b, _ := json.Marshal(map[string]any{"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
	return string(b)
}

// chatTemplateOf reads tokenizer.chat_template and the named
// tokenizer.chat_template.<name> templates: a string, or, when there are
// named ones, a list of {name, template} with the unnamed one as "default".
func chatTemplateOf(md Metadata) (any, error) {
	const key = "tokenizer.chat_template"
	type named struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	var def *string
	var others []named
	for _, kv := range md {
		if kv.Key != key && !strings.HasPrefix(kv.Key, key+".") {
			continue
		}
		s, ok := kv.Value.(string)
		if !ok || !utf8.ValidString(s) {
			return nil, fmt.Errorf("gguf: metadata key %q is %T (or not valid UTF-8), want a UTF-8 string", kv.Key, kv.Value)
		}
		if kv.Key == key {
			def = &s
		} else {
			others = append(others, named{strings.TrimPrefix(kv.Key, key+"."), s})
		}
	}
	switch {
	case len(others) == 0 && def == nil:
		return nil, nil
	case len(others) == 0:
		return *def, nil
	}
	var list []named
	if def != nil {
		list = append(list, named{"default", *def})
	}
	return append(list, others...), nil
}

// hfAddedJSON is one entry of tokenizer.json's added_tokens. llama.cpp
// matches control and user-defined tokens on the raw text, so none is
// normalized, stripped or single-word.
type hfAddedJSON struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// hfModelJSON is the BPE model of a tokenizer.json.
type hfModelJSON struct {
	Type         string
	UnkToken     *string
	FuseUnk      bool
	ByteFallback bool
	IgnoreMerges bool
	Merges       [][2]string
}

// write writes the model with its vocabulary in id order (a JSON object
// marshalled from a map would be in key order).
func (m *hfModelJSON) write(b *bytes.Buffer, tokens []string, kept []bool) {
	b.WriteString(`{"type": "BPE", "dropout": null, "unk_token": `)
	writeJSON(b, m.UnkToken)
	fmt.Fprintf(b, `, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": %t, "byte_fallback": %t, "ignore_merges": %t,`, m.FuseUnk, m.ByteFallback, m.IgnoreMerges)
	b.WriteString("\n    \"vocab\": {")
	first := true
	for id, t := range tokens {
		if !kept[id] {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString("\n      ")
		writeJSON(b, t)
		fmt.Fprintf(b, ": %d", id)
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for i, mg := range m.Merges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n      [")
		writeJSON(b, mg[0])
		b.WriteString(", ")
		writeJSON(b, mg[1])
		b.WriteByte(']')
	}
	b.WriteString("\n    ]\n  }")
}

// writeJSON appends v marshalled without HTML escaping (tokens such as
// "<|im_end|>" stay readable).
func writeJSON(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // only strings, ints and plain structs: cannot fail
	b.Truncate(b.Len() - 1)
}
