package infer

import (
	"context"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/tokenizer"
)

// fixtureStory is the fixture's greedy continuation of BOS (47 tokens,
// testdata/PROVENANCE.md). The provenance text starts with a space, as
// llama2.c prints the first token "▁Once"; the Hugging Face decoder of
// tokenizer.json strips that one leading space (its Strip decoder removes
// the space of the "▁" the normalizer prepends), so Decode gives the text
// without it.
const fixtureStory = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted"

// TestGenerateFixture decodes the fixture's greedy continuation of BOS.
func TestGenerateFixture(t *testing.T) {
	m := loadFixture(t, fixtureF32)
	tok, err := tokenizer.Load(fixtureF32 + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := Generate(context.Background(), m, []int32{fixtureBOS}, 47, []int32{2})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(gen))
	for i, id := range gen {
		ids[i] = int(id)
	}
	if got := tok.Decode(ids); len(gen) != 47 || got != fixtureStory {
		t.Fatalf("%d tokens %q\nwant 47 tokens %q", len(gen), got, fixtureStory)
	}
	// The provenance text's leading space is the "▁" of the first token,
	// which llama2.c prints and the tokenizer.json decoder strips.
	if first, _ := tok.IDToToken(ids[0]); first != "▁Once" {
		t.Errorf("first token %q, want %q", first, "▁Once")
	}
}

// TestGenerateMatchesForward checks that the cached generation gives the
// same tokens as re-running the whole window at every step (argmax of the
// last row of Forward), for several prompts, worker counts and activation
// quantization, and that stop tokens end the output.
func TestGenerateMatchesForward(t *testing.T) {
	base := loadFixture(t, fixtureF32)
	win := fixtureWindows(t, ProtocolFull, 64)[2].Input
	cases := []struct {
		name    string
		prompt  []int32
		n       int
		workers int
		act     ActQuant
		exact   bool
	}{
		{"bos", []int32{fixtureBOS}, 20, 1, ActQuant{}, false},
		{"bos 3 workers", []int32{fixtureBOS}, 20, 3, ActQuant{}, false},
		{"window prefix", win[:23], 16, 2, ActQuant{}, false},
		{"act 4 hadamard", win[:9], 12, 2, ActQuant{Bits: 4, Hadamard: true}, false},
		{"zero tokens", win[:5], 0, 1, ActQuant{}, false},
		{"exact", win[:23], 16, 2, ActQuant{}, true},
		{"exact act 4 hadamard", win[:9], 12, 3, ActQuant{Bits: 4, Hadamard: true}, true},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := base.With(Options{Workers: c.workers, Act: c.act, Exact: c.exact})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Generate(ctx, m, c.prompt, c.n, nil)
			if err != nil {
				t.Fatal(err)
			}
			seq := slices.Clone(c.prompt)
			V := m.Config().VocabSize
			for range c.n {
				logits, err := m.Forward(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				seq = append(seq, int32(argmax(logits[(len(seq)-1)*V:])))
			}
			want := seq[len(c.prompt):]
			if !slices.Equal(got, want) {
				t.Fatalf("cached generation %v\nre-run forward     %v", got, want)
			}
			if c.n < 2 {
				return
			}
			// Stop at the first occurrence of the token generated at step k.
			k := c.n / 2
			first := slices.Index(want, want[k])
			stopped, err := Generate(ctx, m, c.prompt, c.n, []int32{want[k]})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(stopped, want[:first]) {
				t.Errorf("stop at %d: %v, want %v", want[k], stopped, want[:first])
			}
		})
	}
}

// TestGenerateCachedLogits checks bit-identity of the cached logits with
// Forward's rows, position by position.
func TestGenerateCachedLogits(t *testing.T) {
	m := loadFixture(t, fixtureF32)
	in := fixtureWindows(t, ProtocolFull, 64)[1].Input
	ctx := context.Background()
	full, err := m.Forward(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config().VocabSize
	cache := newKVCache(m.Config().NumLayers, m.Config().KVDim())
	// Feed the window in uneven chunks: 1, 7, then one token at a time.
	for pos := 0; pos < len(in); {
		step := 1
		switch pos {
		case 1:
			step = 7
		}
		logits, err := m.forward(ctx, in[pos:pos+step], cache, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(logits, full[pos*V:(pos+step)*V]) {
			t.Fatalf("positions %d..%d: cached logits differ from Forward", pos, pos+step-1)
		}
		pos += step
	}
}

// TestGenerateErrors checks invalid requests.
func TestGenerateErrors(t *testing.T) {
	m := loadFixture(t, fixtureF32)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		prompt []int32
		n      int
	}{
		{"empty prompt", nil, 3},
		{"negative n", []int32{1}, -1},
		{"beyond max positions", []int32{1}, 512},
		{"token outside vocab", []int32{1, 9999}, 2},
	} {
		if _, err := Generate(ctx, m, c.prompt, c.n, nil); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
