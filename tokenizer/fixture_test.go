package tokenizer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var (
	fixtureTokenizer = filepath.Join("..", "testdata", "models", "stories260k", "tokenizer.json")
	fixtureText      = filepath.Join("..", "testdata", "text", "tinystories-valid-sample.txt")
	fixtureIDs       = filepath.Join("..", "testdata", "text", "tinystories-valid-sample.ids")
)

func loadFixture(t testing.TB) *Tokenizer {
	t.Helper()
	tk, err := Load(fixtureTokenizer)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func readFixture(t testing.TB) (string, []int) {
	t.Helper()
	text, err := os.ReadFile(fixtureText)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(fixtureIDs)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, f := range strings.Fields(string(raw)) {
		id, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %v", fixtureIDs, err)
		}
		ids = append(ids, id)
	}
	return string(text), ids
}

// TestFixtureIDs checks the reference ids. Convention of the .ids file: the
// WHOLE file (CRLF line endings included, no trailing newline) is encoded in
// one call with addSpecial=false, so there is no BOS, a single "▁" is
// prepended at the very start only, and each "\r\n" becomes the byte
// fallback tokens <0x0D> <0x0A> (ids 16 13), with no "▁" after it.
// Encoding line by line instead would give a leading "▁" on every line.
func TestFixtureIDs(t *testing.T) {
	tk := loadFixture(t)
	text, want := readFixture(t)
	got := tk.Encode(text, false)
	if len(got) != len(want) {
		t.Errorf("len = %d, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("first difference at %d: got %d, want %d", i, got[i], want[i])
		}
	}
	// Per-line encoding does not reproduce the file.
	var perLine []int
	for _, line := range strings.SplitAfter(text, "\n") {
		perLine = append(perLine, tk.Encode(line, false)...)
	}
	if len(perLine) == len(want) {
		t.Errorf("per-line encoding unexpectedly has the same length %d", len(want))
	}
	withBOS := tk.Encode(text, true)
	if len(withBOS) != len(want)+1 || withBOS[0] != 1 {
		t.Errorf("Encode(text, true) starts %v, want BOS 1 then the ids", withBOS[:3])
	}
	if dec := tk.Decode(want); dec != text {
		t.Errorf("Decode(ids) differs from the text (len %d vs %d)", len(dec), len(text))
	}
}
