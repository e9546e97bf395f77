package export_test

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/store"
)

// TestLlamaCppLoadsExports is the oracle test of the export: llama.cpp
// (node-llama-cpp's prebuilt CPU build) loads every export of the fixture,
// fallbacks included; its greedy text from BOS equals ours on the same file,
// and its perplexity (llama-perplexity's protocol, ctx 256, first 12
// chunks) equals ours to within 0.5 %.
func TestLlamaCppLoadsExports(t *testing.T) {
	o := llamacpp.Require(t)
	ctx := context.Background()
	ck := fixture(t)
	ids32, err := infer.ReadIDsFile("../testdata/text/tinystories-valid-sample.ids")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(ids32))
	for i, id := range ids32 {
		ids[i] = int(id)
	}
	// The first 12 chunks keep the test short; the whole-text figures are in
	// README's table.
	windows, from := llamacpp.PerplexityWindows(ids, 256, 1)
	windows = windows[:12]
	ourWins, err := infer.Windows(ids32, infer.ProtocolLlamaCpp, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ourWins = ourWins[:12]
	for _, tc := range []struct {
		recipe string
		rot    bool
	}{{"f32", false}, {"q8_0", false}, {"q4_k", false}, {"q4_k", true}, {"q2_k", false}, {"tq2_0", false}} {
		dir := t.TempDir()
		out, _ := store.NewLocal(dir)
		sum, _, err := export.Run(ctx, ck, out, recipe(t, tc.recipe, tc.rot), export.Events{})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, export.GGUFKey)
		resp, err := o.Run(ctx, &llamacpp.Request{
			Model: path, ContextSize: 256, Threads: 2,
			Generate: &llamacpp.Generate{Tokens: 47},
			Score:    &llamacpp.Score{Windows: windows, From: from},
		})
		if err != nil {
			t.Fatalf("%s rot=%v: llama.cpp: %v", tc.recipe, tc.rot, err)
		}
		theirPPL, err := llamacpp.Perplexity(resp.Score)
		if err != nil {
			t.Fatal(err)
		}
		m, err := infer.LoadGGUF(ctx, out, export.GGUFKey, infer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ours, err := infer.Generate(ctx, m, []int32{1}, 47, nil)
		if err != nil {
			t.Fatal(err)
		}
		sums, err := infer.Evaluate(ctx, m, ourWins, infer.EvalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ourPPL := sums.Result().PPL
		t.Logf("%-5s rot=%-5v %6.3f bits/weight  llama.cpp PPL %.4f  ours %.4f  greedy %q", tc.recipe, tc.rot, sum.BitsPerWeight, theirPPL, ourPPL, resp.Generate.Text)
		theirs := make([]int32, len(resp.Generate.Tokens))
		for i, id := range resp.Generate.Tokens {
			theirs[i] = int32(id)
		}
		if !slices.Equal(theirs, ours[:min(len(ours), len(theirs))]) || len(theirs) != len(ours) {
			t.Errorf("%s rot=%v: greedy tokens differ:\n llama.cpp %v\n ours      %v", tc.recipe, tc.rot, theirs, ours)
		}
		if math.Abs(theirPPL-ourPPL)/ourPPL > 0.005 {
			t.Errorf("%s rot=%v: llama.cpp PPL %.4f, ours %.4f", tc.recipe, tc.rot, theirPPL, ourPPL)
		}
	}
}
