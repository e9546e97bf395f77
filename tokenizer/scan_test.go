package tokenizer

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The alternatives of each known pattern, in order. The oracle below runs
// them the way a backtracking engine (Oniguruma) does: at each position the
// first alternative that matches wins, with its own greedy preference; the
// lookahead alternative \s+(?!\S) is emulated by trying every length of the
// whitespace run, longest first.
var (
	llama3Alts = []string{`(?i:'s|'t|'re|'ve|'m|'ll|'d)`, `[^\r\n\p{L}\p{N}]?\p{L}+`, `\p{N}{1,3}`, ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`}
	qwen2Alts  = []string{`(?i:'s|'t|'re|'ve|'m|'ll|'d)`, `[^\r\n\p{L}\p{N}]?\p{L}+`, `\p{N}`, ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`}
	gpt2Alts   = []string{`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`, ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`, `\s+(?!\S)`, `\s+`}
)

// Oniguruma's Unicode \s (White_Space); Go's \s is ASCII-only.
const whiteSpaceClass = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

type oracleAlt struct {
	re        *regexp.Regexp // anchored at the start
	lookahead bool           // followed by (?!\S)
}

type oracle []oracleAlt

func newOracle(t testing.TB, pattern string, alts []string) oracle {
	t.Helper()
	if strings.Join(alts, "|") != pattern {
		t.Fatalf("alternatives do not spell the pattern %q", pattern)
	}
	var o oracle
	for _, a := range alts {
		la := strings.HasSuffix(a, `(?!\S)`)
		a = strings.TrimSuffix(a, `(?!\S)`)
		a = strings.ReplaceAll(a, `[^\s`, `[^`+whiteSpaceClass)
		a = strings.ReplaceAll(a, `\s`, `[`+whiteSpaceClass+`]`)
		o = append(o, oracleAlt{re: regexp.MustCompile(`^(?:` + a + `)`), lookahead: la})
	}
	return o
}

func (o oracle) findAll(s string) [][2]int {
	var out [][2]int
	for i := 0; i < len(s); {
		end := -1
		for _, a := range o {
			if a.lookahead {
				// All candidate ends of the greedy quantifier, longest first.
				for e := len(s); e > i; e-- {
					if !a.re.MatchString(s[i:e]) || len(a.re.FindString(s[i:e])) != e-i {
						continue
					}
					if e == len(s) || isSpace(firstRune(s[e:])) {
						end = e
						break
					}
				}
			} else if loc := a.re.FindStringIndex(s[i:]); loc != nil && loc[1] > 0 {
				end = i + loc[1]
			}
			if end > 0 {
				break
			}
		}
		if end < 0 {
			_, n := runeAt(s, i)
			i += n
			continue
		}
		out = append(out, [2]int{i, end})
		i = end
	}
	return out
}

func firstRune(s string) rune { r, _ := runeAt(s, 0); return r }

func pieces(s string, locs [][2]int) []string {
	out := make([]string, len(locs))
	for i, l := range locs {
		out[i] = s[l[0]:l[1]]
	}
	return out
}

func TestScannerSplits(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		in      string
		want    []string
	}{
		{"llama3 spaces before word", Llama3Pattern, "Hello   world", []string{"Hello", "  ", " world"}},
		{"llama3 newlines then space", Llama3Pattern, "a\n\n b", []string{"a", "\n\n", " b"}},
		{"llama3 contraction", Llama3Pattern, "I'm here", []string{"I", "'m", " here"}},
		{"llama3 contraction upper", Llama3Pattern, "I'M", []string{"I", "'M"}},
		{"llama3 don't", Llama3Pattern, "don't", []string{"don", "'t"}},
		{"llama3 they'll've", Llama3Pattern, "they'll've", []string{"they", "'ll", "'ve"}},
		{"llama3 digits in threes", Llama3Pattern, "12345", []string{"123", "45"}},
		{"llama3 punct keeps newlines", Llama3Pattern, "hello!!\n\nworld", []string{"hello", "!!\n\n", "world"}},
		{"llama3 leading spaces", Llama3Pattern, "  leading", []string{" ", " leading"}},
		{"llama3 trailing spaces", Llama3Pattern, "trailing  ", []string{"trailing", "  "}},
		{"llama3 space newline space", Llama3Pattern, "x \n y", []string{"x", " \n", " y"}},
		{"llama3 tab joins word", Llama3Pattern, "tab\tx", []string{"tab", "\tx"}},
		{"llama3 spaces then newline at end", Llama3Pattern, "a  \n", []string{"a", "  \n"}},
		{"llama3 paren joins word", Llama3Pattern, "(hello)", []string{"(hello", ")"}},
		{"llama3 space punct", Llama3Pattern, " ?!x", []string{" ?!", "x"}},
		{"llama3 decimal", Llama3Pattern, "3.14", []string{"3", ".", "14"}},
		{"llama3 apostrophes", Llama3Pattern, "'s'", []string{"'s", "'"}},
		{"llama3 crlf", Llama3Pattern, "hello\r\nworld", []string{"hello", "\r\n", "world"}},
		{"llama3 only spaces", Llama3Pattern, "    ", []string{"    "}},
		{"llama3 nbsp joins word", Llama3Pattern, "x\u00a0y", []string{"x", "\u00a0y"}},
		{"llama3 currency", Llama3Pattern, "€100", []string{"€", "100"}},
		{"llama3 single space before punct run", Llama3Pattern, "a  !", []string{"a", " ", " !"}},
		{"llama3 newline space newline", Llama3Pattern, "\n \nX", []string{"\n \n", "X"}},
		{"llama3 unicode letters", Llama3Pattern, "naïve 日本語", []string{"naïve", " 日本語"}},
		{"llama3 invalid utf8 as symbol", Llama3Pattern, "a\xffb", []string{"a", "\xffb"}},
		{"qwen2 single digits", Qwen2Pattern, "12345", []string{"1", "2", "3", "4", "5"}},
		{"qwen2 spaces before word", Qwen2Pattern, "Hello   world", []string{"Hello", "  ", " world"}},
		{"gpt2 spaces before word", GPT2Pattern, "Hello   world", []string{"Hello", "  ", " world"}},
		{"gpt2 case-sensitive contraction", GPT2Pattern, "I'M", []string{"I", "'", "M"}},
		{"gpt2 contraction", GPT2Pattern, "I'm", []string{"I", "'m"}},
		{"gpt2 digits unbounded", GPT2Pattern, "a 12345", []string{"a", " 12345"}},
		{"gpt2 newlines split", GPT2Pattern, "hello!!\n\nworld", []string{"hello", "!!", "\n", "\n", "world"}},
		{"gpt2 space punct", GPT2Pattern, " ?!x", []string{" ?!", "x"}},
		{"gpt2 trailing spaces", GPT2Pattern, "end   ", []string{"end", "   "}},
		{"gpt2 tab before word", GPT2Pattern, "a\tb", []string{"a", "\t", "b"}},
	}
	oracles := map[string]oracle{
		Llama3Pattern: newOracle(t, Llama3Pattern, llama3Alts),
		Qwen2Pattern:  newOracle(t, Qwen2Pattern, qwen2Alts),
		GPT2Pattern:   newOracle(t, GPT2Pattern, gpt2Alts),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, ok := knownScanner(tt.pattern)
			if !ok {
				t.Fatal("pattern not recognised")
			}
			got := pieces(tt.in, sc.findAll(tt.in))
			if !slices.Equal(got, tt.want) {
				t.Errorf("scanner(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if o := pieces(tt.in, oracles[tt.pattern].findAll(tt.in)); !slices.Equal(o, tt.want) {
				t.Errorf("oracle(%q) = %q, want %q (test expectation or oracle wrong)", tt.in, o, tt.want)
			}
		})
	}
}

// scanAlphabet mixes every character class the patterns distinguish.
var scanAlphabet = []string{
	"a", "Z", "é", "日", "ſ", "s", "t", "r", "e", "v", "m", "l", "d", "S", "L", "'",
	"1", "٣", "½", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\v",
	"!", ".", "(", "€", "😀", "\xff", "\xe2\x82", "_",
}

func checkScannerAgainstOracle(t *testing.T, o map[string]oracle, s string) {
	t.Helper()
	for pat, or := range o {
		sc, _ := knownScanner(pat)
		got, want := sc.findAll(s), or.findAll(s)
		if !slices.Equal(got, want) {
			t.Fatalf("pattern %.20q… on %q:\nscanner %q\noracle  %q", pat, s, pieces(s, got), pieces(s, want))
		}
	}
}

func allOracles(t testing.TB) map[string]oracle {
	return map[string]oracle{
		Llama3Pattern: newOracle(t, Llama3Pattern, llama3Alts),
		Qwen2Pattern:  newOracle(t, Qwen2Pattern, qwen2Alts),
		GPT2Pattern:   newOracle(t, GPT2Pattern, gpt2Alts),
	}
}

func TestScannersMatchOracleRandom(t *testing.T) {
	o := allOracles(t)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for range n {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(scanAlphabet[rng.IntN(len(scanAlphabet))])
		}
		checkScannerAgainstOracle(t, o, b.String())
	}
}

func FuzzScanners(f *testing.F) {
	for _, s := range []string{"Hello   world", "a\n\n b", "I'M 12345 ?!\r\n", "x\u00a0\u3000y", "\xff'ſ"} {
		f.Add(s)
	}
	o := allOracles(f)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 64 {
			return // the oracle is quadratic
		}
		checkScannerAgainstOracle(t, o, s)
	})
}

func TestSplitBehaviors(t *testing.T) {
	m := literalMatcher("-")
	tests := []struct {
		behavior int
		invert   bool
		want     []string
	}{
		{behaviorRemoved, false, []string{"a", "b", "c"}},
		{behaviorIsolated, false, []string{"a", "-", "b", "-", "-", "c", "-"}},
		{behaviorMergedWithPrevious, false, []string{"a-", "b-", "-", "c-"}},
		{behaviorMergedWithNext, false, []string{"a", "-b", "-", "-c", "-"}},
		{behaviorContiguous, false, []string{"a", "-", "b", "--", "c", "-"}},
		{behaviorRemoved, true, []string{"-", "-", "-", "-"}},
	}
	for _, tt := range tests {
		got := splitText("a-b--c-", m, tt.behavior, tt.invert)
		if !slices.Equal(got, tt.want) {
			t.Errorf("behavior %d invert %v: got %q, want %q", tt.behavior, tt.invert, got, tt.want)
		}
	}
}
