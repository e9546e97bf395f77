package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf8"
)

// Hand-built byte-level files: byte b has id b (token byteToRune(b)), then a
// few merges, then two special tokens.
var byteLevelMerges = [][2]string{
	{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"Ġ", "c"}, {"a", "t"},
	{"Ġc", "at"}, {"Ġ", "Ġ"}, {"Ċ", "Ċ"}, {"t", "he"}, {"1", "2"}, {"12", "3"},
}

const (
	idThe    = 256 + 8  // "the"
	idSpThe  = 256 + 2  // "Ġthe"
	idSpCat  = 256 + 5  // "Ġcat"
	idSpSp   = 256 + 6  // "ĠĠ"
	id123    = 256 + 10 // "123"
	idBegin  = 300
	idEnd    = 301
	idSpecNo = 302 // a non-special added token, normalized
)

// byteLevelJSON returns a tokenizer.json. style is "llama3", "qwen2" or
// "gpt2" (ByteLevel with add_prefix_space and its own regex, "a b" merges).
func byteLevelJSON(t testing.TB, style string) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := range 256 {
		vocab[string(byteToRune(byte(b)))] = b
	}
	var merges []any
	for i, m := range byteLevelMerges {
		vocab[m[0]+m[1]] = 256 + i
		if style == "gpt2" {
			merges = append(merges, m[0]+" "+m[1])
		} else {
			merges = append(merges, []string{m[0], m[1]})
		}
	}
	pattern := Llama3Pattern
	if style == "qwen2" {
		pattern = Qwen2Pattern
	}
	pre := any(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}})
	var normalizer any
	if style == "qwen2" {
		normalizer = map[string]any{"type": "NFC"}
	}
	if style == "gpt2" {
		pre = map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true}
	}
	doc := map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": idBegin, "content": "<|begin_of_text|>", "special": true, "normalized": false},
			map[string]any{"id": idEnd, "content": "<|end_of_text|>", "special": true, "normalized": false},
			map[string]any{"id": idSpecNo, "content": "<tool>", "special": false, "normalized": true},
		},
		"normalizer":    normalizer,
		"pre_tokenizer": pre,
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "trim_offsets": false},
			map[string]any{"type": "TemplateProcessing",
				"single": []any{
					map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
					map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				},
				"special_tokens": map[string]any{"<|begin_of_text|>": map[string]any{"id": "<|begin_of_text|>", "ids": []int{idBegin}, "tokens": []string{"<|begin_of_text|>"}}},
			},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": style == "llama3",
			"byte_fallback": false, "fuse_unk": false, "unk_token": nil},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func byteLevelTokenizer(t testing.TB, style string) *Tokenizer {
	t.Helper()
	tk, err := Parse(byteLevelJSON(t, style))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// bytesOf is the expected encoding of s when no merge applies.
func bytesOf(s string) []int {
	var ids []int
	for i := 0; i < len(s); i++ {
		ids = append(ids, int(s[i]))
	}
	return ids
}

func cat(parts ...[]int) []int { return slices.Concat(parts...) }

func TestByteLevelEncode(t *testing.T) {
	tests := []struct {
		style      string
		in         string
		addSpecial bool
		want       []int
	}{
		{"llama3", "the cat", false, []int{idThe, idSpCat}},
		{"llama3", "the cat", true, []int{idBegin, idThe, idSpCat}},
		{"llama3", "Hello   world", false, cat(bytesOf("Hello"), []int{idSpSp}, bytesOf(" world"))},
		{"llama3", "<|begin_of_text|>the<|end_of_text|>", false, []int{idBegin, idThe, idEnd}},
		{"llama3", "12345", false, cat([]int{id123}, bytesOf("45"))},
		{"llama3", "é", false, []int{0xC3, 0xA9}},
		{"llama3", "", true, []int{idBegin}},
		{"qwen2", "12345", false, bytesOf("12345")},
		{"qwen2", "the cat", true, []int{idBegin, idThe, idSpCat}},
		{"gpt2", "the cat", false, []int{idSpThe, idSpCat}},
		{"gpt2", " the", false, []int{idSpThe}},
		{"gpt2", "12345", false, cat(bytesOf(" "), []int{id123}, bytesOf("45"))},
		// A normalized added token is matched after normalization.
		{"gpt2", "<tool>the", false, []int{idSpecNo, idSpThe}},
	}
	for _, tt := range tests {
		tk := byteLevelTokenizer(t, tt.style)
		if got := tk.Encode(tt.in, tt.addSpecial); !slices.Equal(got, tt.want) {
			t.Errorf("%s Encode(%q, %v) = %v, want %v", tt.style, tt.in, tt.addSpecial, got, tt.want)
		}
	}
}

func TestByteLevelDecode(t *testing.T) {
	tk := byteLevelTokenizer(t, "llama3")
	tests := []struct {
		ids  []int
		want string
	}{
		{[]int{idBegin, idThe, idSpCat}, "<|begin_of_text|>the cat"},
		{[]int{0xF0, 0x9F, 0x98}, "\uFFFD"}, // truncated 4-byte sequence: one U+FFFD
		{[]int{0xFF, 0xFE}, "\uFFFD\uFFFD"},
		{[]int{'a', 0xE0, 0x80, 'b'}, "a\uFFFD\uFFFDb"},
		{[]int{0xED, 0xA0, 0x80}, "\uFFFD\uFFFD\uFFFD"}, // encoded surrogate
		{[]int{99999, 'x'}, "x"},                        // unknown ids are skipped
	}
	for _, tt := range tests {
		if got := tk.Decode(tt.ids); got != tt.want {
			t.Errorf("Decode(%v) = %q, want %q", tt.ids, got, tt.want)
		}
	}
	if got := tk.DecodeSkipSpecial([]int{idBegin, idThe, idEnd}); got != "the" {
		t.Errorf("DecodeSkipSpecial = %q, want %q", got, "the")
	}
	if id, ok := tk.BOS(); !ok || id != idBegin {
		t.Errorf("BOS = %d, %v", id, ok)
	}
	if id, ok := tk.EOS(); !ok || id != idEnd {
		t.Errorf("EOS = %d, %v", id, ok)
	}
	if n := tk.VocabSize(); n != idSpecNo+1 {
		t.Errorf("VocabSize = %d, want %d", n, idSpecNo+1)
	}
}

// TestByteLevelRoundTrip: byte-level models encode every byte, so decoding
// gives back valid UTF-8 exactly; invalid UTF-8 comes back with each
// maximal invalid subsequence replaced by U+FFFD (Rust's from_utf8_lossy).
// The ByteLevel decoder does not strip the prefix space that gpt2-style
// add_prefix_space inserts, so there the invariant is " "+s unless s already
// starts with a space.
func TestByteLevelRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	inputs := []string{"", "Hello   world\n\n  ", "日本語 naïve 😀\r\n\t", "a\xffb\xe2\x82", "don't I'M 12345"}
	for range 500 {
		var b []byte
		for range rng.IntN(20) {
			switch rng.IntN(3) {
			case 0:
				b = append(b, byte(rng.IntN(256)))
			case 1:
				b = utf8.AppendRune(b, rune(rng.IntN(0x2000)))
			default:
				b = append(b, scanAlphabet[rng.IntN(len(scanAlphabet))]...)
			}
		}
		inputs = append(inputs, string(b))
	}
	for _, style := range []string{"llama3", "qwen2", "gpt2"} {
		tk := byteLevelTokenizer(t, style)
		for _, s := range inputs {
			want := lossyUTF8([]byte(s))
			if style == "gpt2" && (len(s) == 0 || s[0] != ' ') {
				want = " " + want
				if s == "" {
					want = ""
				}
			}
			if got := tk.Decode(tk.Encode(s, false)); got != want {
				t.Fatalf("%s: Decode(Encode(%q)) = %q, want %q", style, s, got, want)
			}
		}
	}
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ok é", "ok é"},
		{"\xF0\x9F\x98", "\uFFFD"},
		{"\xF0\x9F\x98x", "\uFFFDx"},
		{"\xC0\xAF", "\uFFFD\uFFFD"},
		{"\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xE1\x80", "\uFFFD"},
		{"\x80", "\uFFFD"},
	}
	for _, tt := range tests {
		if got := lossyUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestByteMapping(t *testing.T) {
	seen := map[rune]bool{}
	for b := range 256 {
		r := byteToRune(byte(b))
		if seen[r] {
			t.Fatalf("rune %U used twice", r)
		}
		seen[r] = true
		if back, ok := runeToByte(r); !ok || back != byte(b) {
			t.Fatalf("runeToByte(byteToRune(%#x)) = %#x, %v", b, back, ok)
		}
	}
	// Spot checks against GPT-2's table.
	for b, r := range map[byte]rune{' ': 'Ġ', '\n': 'Ċ', 0: 'Ā', 0x7F: 'ġ', 0xAD: 'Ń', 'a': 'a', 0xA1: '¡'} {
		if got := byteToRune(b); got != r {
			t.Errorf("byteToRune(%#x) = %q, want %q", b, got, r)
		}
	}
}
