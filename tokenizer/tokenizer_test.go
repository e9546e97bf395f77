package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// tweakFixture returns the fixture tokenizer.json with top-level fields
// replaced (nil deletes).
func tweakFixture(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	data, err := os.ReadFile(fixtureTokenizer)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		doc[k] = v
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustParse(t testing.TB, data []byte) *Tokenizer {
	t.Helper()
	tk, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func toks(t testing.TB, tk *Tokenizer, ids []int) []string {
	t.Helper()
	out := make([]string, len(ids))
	for i, id := range ids {
		s, ok := tk.IDToToken(id)
		if !ok {
			t.Fatalf("id %d has no token", id)
		}
		out[i] = s
	}
	return out
}

func TestFixtureBasics(t *testing.T) {
	tk := loadFixture(t)
	tests := []struct {
		in         string
		addSpecial bool
		want       []string
	}{
		{"Once upon a time", false, []string{"▁Once", "▁upon", "▁a", "▁time"}},
		{"Once upon a time", true, []string{"<s>", "▁Once", "▁upon", "▁a", "▁time"}},
		{" Once", false, []string{"▁", "▁Once"}},
		{"", false, []string{}},
		{"", true, []string{"<s>"}},
		{"é", false, []string{"▁", "é"}},
		{"日", false, []string{"▁", "<0xE6>", "<0x97>", "<0xA5>"}},
		// Special tokens are matched first; each text segment is normalized
		// on its own, so the legacy Prepend normalizer adds "▁" after <s>.
		{"<s>Once</s>", false, []string{"<s>", "▁Once", "</s>"}},
		{"a\nb", false, []string{"▁a", "<0x0A>", "b"}},
	}
	for _, tt := range tests {
		got := toks(t, tk, tk.Encode(tt.in, tt.addSpecial))
		if !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q, %v) = %q, want %q", tt.in, tt.addSpecial, got, tt.want)
		}
	}
	if n := tk.VocabSize(); n != 512 {
		t.Errorf("VocabSize = %d, want 512", n)
	}
	if id, ok := tk.BOS(); !ok || id != 1 {
		t.Errorf("BOS = %d, %v; want 1", id, ok)
	}
	if id, ok := tk.EOS(); !ok || id != 2 {
		t.Errorf("EOS = %d, %v; want 2", id, ok)
	}
	// The model vocab maps id 1 to "\n<s>\n"; the added token wins.
	if s, _ := tk.IDToToken(1); s != "<s>" {
		t.Errorf("IDToToken(1) = %q", s)
	}
	if id, ok := tk.TokenToID("▁Once"); !ok || id != tk.Encode("Once", false)[0] {
		t.Errorf("TokenToID(▁Once) = %d, %v", id, ok)
	}
	if !tk.IsSpecial(2) || tk.IsSpecial(300) {
		t.Error("IsSpecial wrong")
	}
	if got := tk.SpecialTokens(); !slices.Equal(got, []string{"<unk>", "<s>", "</s>"}) {
		t.Errorf("SpecialTokens = %q", got)
	}
	tests2 := []struct {
		ids  []int
		want string
	}{
		{tk.Encode("Once upon", true), "<s> Once upon"},
		{[]int{1}, "<s>"},
		{[]int{231, 231}, "\uFFFD\uFFFD"}, // <0xE4><0xE4>: invalid bytes, one U+FFFD each
	}
	for _, tt := range tests2 {
		if got := tk.Decode(tt.ids); got != tt.want {
			t.Errorf("Decode(%v) = %q, want %q", tt.ids, got, tt.want)
		}
	}
	if got := tk.DecodeSkipSpecial(tk.Encode("Once upon", true)); got != "Once upon" {
		t.Errorf("DecodeSkipSpecial = %q", got)
	}
}

// TestMetaspaceForms: the newer Llama layout (no normalizer, Metaspace
// pre-tokenizer with prepend_scheme "first", Metaspace decoder) encodes the
// fixture text identically, but does not prepend "▁" after a special token.
func TestMetaspaceForms(t *testing.T) {
	text, want := readFixture(t)
	tests := []struct {
		name      string
		pre       map[string]any
		dec       map[string]any
		afterBOS  []string // Encode("<s>Once upon", false)
		decodeOut string   // Decode(Encode(" Once  upon", false))
	}{
		{"first", map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
			map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
			[]string{"<s>", "O", "n", "ce", "▁upon"}, "Once  upon"},
		{"always", map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
			map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
			[]string{"<s>", "▁Once", "▁upon"}, "Once  upon"},
		{"old add_prefix_space", map[string]any{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true, "str_rep": "▁"},
			map[string]any{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true},
			[]string{"<s>", "▁Once", "▁upon"}, "Once  upon"},
		{"never", map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false},
			map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"},
			[]string{"<s>", "O", "n", "ce", "▁upon"}, " Once  upon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := mustParse(t, tweakFixture(t, map[string]any{"normalizer": nil, "pre_tokenizer": tt.pre, "decoder": tt.dec}))
			if tt.name != "never" {
				if got := tk.Encode(text, false); !slices.Equal(got, want) {
					t.Errorf("fixture text encodes differently (%d vs %d ids)", len(got), len(want))
				}
			}
			if got := toks(t, tk, tk.Encode("<s>Once upon", false)); !slices.Equal(got, tt.afterBOS) {
				t.Errorf("Encode(<s>Once upon) = %q, want %q", got, tt.afterBOS)
			}
			if got := tk.Decode(tk.Encode(" Once  upon", false)); got != tt.decodeOut {
				t.Errorf("round trip = %q, want %q", got, tt.decodeOut)
			}
		})
	}
}

func TestMetaspaceSplit(t *testing.T) {
	p := &metaspacePreTokenizer{replacement: "▁", scheme: prependAlways, split: true}
	var got []string
	for _, pc := range p.preTokenize([]piece{{text: "Hey   friend!", first: true}}) {
		got = append(got, pc.text)
	}
	if want := []string{"▁Hey", "▁", "▁", "▁friend!"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// tinyBPE builds a small BPE file over single characters.
func tinyBPE(t testing.TB, model map[string]any, added []any, extra map[string]any) *Tokenizer {
	t.Helper()
	model["type"] = "BPE"
	doc := map[string]any{"model": model, "added_tokens": added}
	for k, v := range extra {
		doc[k] = v
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, data)
}

func TestBPEModelOptions(t *testing.T) {
	vocab := map[string]int{"<unk>": 0, "a": 1, "b": 2, "ab": 3, "c": 4, "abc": 5, "bc": 6}
	tests := []struct {
		name  string
		model map[string]any
		in    string
		want  []int
	}{
		{"merge", map[string]any{"vocab": vocab, "merges": []string{"a b"}, "unk_token": "<unk>"}, "abab", []int{3, 3}},
		{"rank order", map[string]any{"vocab": vocab, "merges": []string{"b c", "a b"}, "unk_token": "<unk>"}, "abc", []int{1, 6}},
		{"pair merges", map[string]any{"vocab": vocab, "merges": [][]string{{"a", "b"}, {"ab", "c"}}}, "abc", []int{5}},
		{"fuse unk", map[string]any{"vocab": vocab, "merges": []string{}, "unk_token": "<unk>", "fuse_unk": true}, "axyb", []int{1, 0, 2}},
		{"no fuse unk", map[string]any{"vocab": vocab, "merges": []string{}, "unk_token": "<unk>"}, "axyb", []int{1, 0, 0, 2}},
		{"no unk drops", map[string]any{"vocab": vocab, "merges": []string{}}, "axb", []int{1, 2}},
		{"ignore merges", map[string]any{"vocab": vocab, "merges": []string{}, "ignore_merges": true}, "abc", []int{5}},
		{"merges without ignore", map[string]any{"vocab": vocab, "merges": []string{}}, "abc", []int{1, 2, 4}},
		{"prefix and suffix", map[string]any{
			"vocab":                     map[string]int{"a": 0, "##b": 1, "##b</w>": 2, "ab</w>": 3, "a</w>": 4},
			"merges":                    []string{"a ##b</w>"},
			"continuing_subword_prefix": "##", "end_of_word_suffix": "</w>",
		}, "ab", []int{3}},
	}
	for _, tt := range tests {
		tk := tinyBPE(t, tt.model, nil, nil)
		if got := tk.Encode(tt.in, false); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Encode(%q) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestAddedTokenOptions(t *testing.T) {
	vocab := map[string]int{}
	for i, r := range "abcdxyz <>_MASKHELO" {
		vocab[string(r)] = i
	}
	added := []any{
		map[string]any{"id": 100, "content": "<L>", "lstrip": true, "special": true, "normalized": false},
		map[string]any{"id": 101, "content": "<R>", "rstrip": true, "special": true, "normalized": false},
		map[string]any{"id": 102, "content": "ab", "single_word": true, "special": false, "normalized": false},
		map[string]any{"id": 103, "content": "hello", "special": false, "normalized": true},
		map[string]any{"id": 104, "content": "<", "special": false, "normalized": false},
		map[string]any{"id": 105, "content": "<<", "special": false, "normalized": false},
	}
	tk := tinyBPE(t, map[string]any{"vocab": vocab, "merges": []string{}}, added,
		map[string]any{"normalizer": map[string]any{"type": "Lowercase"}})
	sp := vocab[" "]
	tests := []struct {
		in   string
		want []int
	}{
		{"x  <L>y", []int{vocab["x"], 100, vocab["y"]}},
		{"x<R>  y", []int{vocab["x"], 101, vocab["y"]}},
		{"ab cd", []int{102, sp, vocab["c"], vocab["d"]}},
		{"xab", []int{vocab["x"], vocab["a"], vocab["b"]}},
		{"abc", []int{vocab["a"], vocab["b"], vocab["c"]}},
		{"HELLO", []int{103}},
		{"<<<", []int{105, 104}}, // leftmost-longest
	}
	for _, tt := range tests {
		if got := tk.Encode(tt.in, false); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	okModel := map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0, "b": 1, "ab": 2}, "merges": []string{"a b"}}
	tests := []struct {
		name string
		doc  any
		want string
	}{
		{"not json", "{", "invalid JSON"},
		{"no model", map[string]any{}, "model: missing"},
		{"wordpiece", map[string]any{"model": map[string]any{"type": "WordPiece", "vocab": map[string]int{}}}, `model: type: unsupported model type "WordPiece"`},
		{"merge not in vocab", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0}, "merges": []string{"a c"}}}, `model: merges[0]: "c" is not in the vocab`},
		{"merged not in vocab", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0}, "merges": []string{"a a"}}}, `merged token "aa"`},
		{"bad merge string", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0}, "merges": []string{"aa"}}}, `model: merges[0]: "aa" is not "left right"`},
		{"bad merge pair", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0}, "merges": []any{[]string{"a"}}}}, `model: merges[0]: want`},
		{"unk missing", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0}, "unk_token": "<unk>"}}, `model: unk_token: "<unk>" is not in the vocab`},
		{"negative id", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": -1}}}, `model: vocab["a"]: id -1 out of range`},
		{"nfkc", map[string]any{"model": okModel, "normalizer": map[string]any{"type": "NFKC"}}, `normalizer: unsupported normalizer type "NFKC"`},
		{"nested normalizer", map[string]any{"model": okModel, "normalizer": map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "Prepend", "prepend": "x"}, map[string]any{"type": "Bogus"}}}}, `normalizer: normalizers[1]: unsupported normalizer type "Bogus"`},
		{"unknown regex lookahead", map[string]any{"model": okModel, "pre_tokenizer": map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `a(?=b)`}, "behavior": "Isolated"}}, `pre_tokenizer: Split: pattern.Regex: "a(?=b)" is not one of the known`},
		{"bad behavior", map[string]any{"model": okModel, "pre_tokenizer": map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Sideways"}}, `unknown behavior "Sideways"`},
		{"bad decoder", map[string]any{"model": okModel, "decoder": map[string]any{"type": "CTC"}}, `decoder: unsupported decoder type "CTC"`},
		{"template without token", map[string]any{"model": okModel, "post_processor": map[string]any{"type": "TemplateProcessing", "single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}}, "special_tokens": map[string]any{}}}, `post_processor: single[0]: special token "<s>" missing`},
		{"added token without id", map[string]any{"model": okModel, "added_tokens": []any{map[string]any{"content": "x"}}}, "added_tokens[0]: missing id"},
		{"dropout", map[string]any{"model": map[string]any{"type": "BPE", "vocab": map[string]int{}, "dropout": 0.1}}, "model: dropout"},
	}
	for _, tt := range tests {
		var data []byte
		if s, ok := tt.doc.(string); ok {
			data = []byte(s)
		} else {
			var err error
			if data, err = json.Marshal(tt.doc); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Parse(data)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, []byte(`{"model": {"type": "Unigram"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "model: type") {
		t.Errorf("Load error %v should name %s and the field", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file error %v", err)
	}
}

func TestConcurrentEncode(t *testing.T) {
	tk := byteLevelTokenizer(t, "llama3")
	text, _ := readFixture(t)
	want := tk.Encode(text, true)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := tk.Encode(text, true); !slices.Equal(got, want) {
				t.Error("concurrent Encode differs")
			}
		})
	}
	wg.Wait()
}

// roundTripInvariant: for the fixture (Prepend "▁" + Replace " "→"▁";
// decoder Replace "▁"→" ", ByteFallback, Fuse, Strip one leading " "),
// Decode(Encode(s)) == s for every valid UTF-8 s that contains neither
// U+2581 "▁" (decoded as a space) nor the text of an added token (<unk>,
// <s>, </s>: matched as tokens, and the text after one gets its own "▁",
// which decodes to an extra space). The prefix "▁" the normalizer adds is
// exactly the space Strip removes, so leading spaces survive. Invalid UTF-8
// bytes go through byte fallback and decode as U+FFFD, one per byte.
func roundTripApplies(s string) bool {
	return utf8.ValidString(s) && !strings.Contains(s, "▁") &&
		!strings.Contains(s, "<s>") && !strings.Contains(s, "</s>") && !strings.Contains(s, "<unk>")
}

func TestFixtureRoundTrip(t *testing.T) {
	tk := loadFixture(t)
	for _, s := range []string{"", " ", "  lead", "trail  ", "a\r\n\tb", "日本語 😀", "x\u00a0y", "<0x41>", "<s"} {
		if got := tk.Decode(tk.Encode(s, false)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
	if got := tk.Decode(tk.Encode("a▁b", false)); got != "a b" {
		t.Errorf("▁ decodes to %q, want a space", got)
	}
	if got := tk.Decode(tk.Encode("a<s>b", false)); got != "a<s> b" {
		t.Errorf("text after <s> = %q, want %q", got, "a<s> b")
	}
	if got := tk.Decode(tk.Encode("a\xffb", false)); got != "a\uFFFDb" {
		t.Errorf("invalid byte = %q", got)
	}
}

func FuzzRoundTrip(f *testing.F) {
	tk := loadFixture(f)
	text, _ := readFixture(f)
	for _, s := range []string{"", " ", "Once upon a time", "日本語", text[:200], "a\r\n b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tk.Encode(s, false)
		dec := tk.Decode(ids)
		if roundTripApplies(s) && dec != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, dec)
		}
		if withBOS := tk.Encode(s, true); len(withBOS) != len(ids)+1 || withBOS[0] != 1 {
			t.Fatalf("Encode(%q, true) does not start with BOS", s)
		}
	})
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(fixtureTokenizer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	for _, style := range []string{"llama3", "qwen2", "gpt2"} {
		f.Add(byteLevelJSON(f, style))
	}
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"decoder":{"type":"Strip","content":" ","start":99,"stop":99}}`))
	f.Add([]byte(`{"model":{"vocab":{},"merges":[]},"post_processor":{"type":"TemplateProcessing","single":["<s>","$A"],"special_tokens":{"<s>":{"id":"<s>","ids":[0]}}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "Hello world", " a\n\n b 123 <s> \xff日本"} {
			ids := tk.Encode(s, true)
			_ = tk.Decode(ids)
			_ = tk.DecodeSkipSpecial(ids)
		}
		_ = tk.Decode([]int{-1, 0, 1, 2, 1 << 40})
	})
}

func BenchmarkEncodeFixture(b *testing.B) {
	tk := loadFixture(b)
	text, _ := readFixture(b)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tk.Encode(text, false)
	}
}

// BenchmarkEncodeByteLevel runs the Llama 3 split scanner and the
// byte-level model (word cache warm) on the fixture text.
func BenchmarkEncodeByteLevel(b *testing.B) {
	tk := byteLevelTokenizer(b, "llama3")
	text, _ := readFixture(b)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tk.Encode(text, false)
	}
}

func BenchmarkDecodeFixture(b *testing.B) {
	tk := loadFixture(b)
	text, ids := readFixture(b)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tk.Decode(ids)
	}
}

// TestBoundarySplitExact checks that cutting words before "▁" (an
// optimisation tokenizers does not have) gives the same ids as merging the
// whole word, on the fixture text and on random strings.
func TestBoundarySplitExact(t *testing.T) {
	split := loadFixture(t)
	if split.model.boundary != "▁" {
		t.Fatalf("boundary not enabled for the fixture")
	}
	whole := loadFixture(t)
	whole.model.boundary = ""
	text, _ := readFixture(t)
	inputs := []string{text, "a", "ab", "x▁y", "▁▁a ▁ b", "日 本"}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString([]string{"a", "e", "th", " ", "  ", "▁", "\n", "é", "日", "ing", "Once", "."}[rng.IntN(12)])
		}
		inputs = append(inputs, b.String())
	}
	for _, s := range inputs {
		if got, want := split.Encode(s, false), whole.Encode(s, false); !slices.Equal(got, want) {
			t.Fatalf("Encode(%.40q): split %v, whole word %v", s, got, want)
		}
	}
	// A merge whose right side starts with "▁" disables the cut.
	data := tweakFixture(t, nil)
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	model := doc["model"].(map[string]any)
	model["vocab"].(map[string]any)["a▁the"] = 600
	model["merges"] = append(model["merges"].([]any), "a ▁the")
	data, _ = json.Marshal(doc)
	if tk := mustParse(t, data); tk.model.boundary != "" {
		t.Error("boundary enabled although a merge joins across ▁")
	}
}

// BenchmarkEncodeFixtureWholeWord measures the heap BPE alone: the fixture
// text merged as the single 30 KB word tokenizers itself would merge.
func BenchmarkEncodeFixtureWholeWord(b *testing.B) {
	tk := loadFixture(b)
	tk.model.boundary = ""
	text, _ := readFixture(b)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tk.Encode(text, false)
	}
}
