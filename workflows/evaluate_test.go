package workflows

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// TestDistributedEvalEqualsSingleProcess: EvaluateModel's aggregate over
// chunks of windows equals one in-process evaluation of the same windows,
// whatever the chunking.
func TestDistributedEvalEqualsSingleProcess(t *testing.T) {
	ctx := context.Background()
	src, _ := store.NewLocal(fixture)
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	out, _ := store.NewLocal(outDir)
	r, _ := shards.NamedRecipe("q4_0")
	if _, _, err := export.Run(ctx, ck, out, r, export.Events{}); err != nil {
		t.Fatal(err)
	}
	text, _ := filepath.Abs("../testdata/text/tinystories-valid-sample.txt")

	// Single process.
	tok, err := tokenizer.Load(filepath.Join(fixture, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := store.ReadAll(ctx, mustLocal(t, filepath.Dir(text)), filepath.Base(text))
	ids := tok.Encode(string(raw), false)
	id32 := make([]int32, len(ids))
	for i, v := range ids {
		id32[i] = int32(v)
	}
	wins, err := infer.Windows(id32, infer.ProtocolFull, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	wins = wins[:20]
	qm, err := infer.LoadGGUF(ctx, out, export.GGUFKey, infer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rm, err := infer.LoadModel(ctx, ck)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := infer.Evaluate(ctx, qm, wins, infer.EvalOptions{Reference: infer.ModelReference{Model: rm}})
	if err != nil {
		t.Fatal(err)
	}
	want := sums.Result()

	// The same 20 windows through the workflow, chunked three ways. The
	// text is cut to exactly 20 windows of the full protocol.
	cut := filepath.Join(t.TempDir(), "text.txt")
	writeIDsText(t, tok, ids[:20*255], cut)
	for _, chunk := range []int{1, 7, 20} {
		env, _ := newEnv(t)
		env.ExecuteWorkflow(EvaluateModel, EvalInput{Model: filepath.Join(outDir, export.GGUFKey), Reference: fixture, Output: outDir,
			Spec: EvalSpec{Text: cut, Ctx: 256, Protocol: "full", Chunk: chunk, Parallel: 3}})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var got infer.Result
		if err := env.GetWorkflowResult(&got); err != nil {
			t.Fatal(err)
		}
		if got.Tokens != want.Tokens || math.Abs(got.PPL-want.PPL)/want.PPL > 1e-9 || math.Abs(got.KLMean-want.KLMean) > 1e-12 ||
			got.Top1 != want.Top1 || got.KLP99 != want.KLP99 {
			t.Fatalf("chunk %d: distributed %+v\n single process %+v", chunk, got, want)
		}
	}
	t.Logf("PPL %.6f, KL mean %.4g, top-1 %.4f over %d tokens: equal for chunks of 1, 7 and 20 windows", want.PPL, want.KLMean, want.Top1, want.Tokens)
}

func mustLocal(t *testing.T, dir string) store.Store {
	s, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeIDsText writes the text of ids such that re-encoding gives ids back.
func writeIDsText(t *testing.T, tok *tokenizer.Tokenizer, ids []int, path string) {
	text := tok.Decode(ids)
	back := tok.Encode(text, false)
	if len(back) != len(ids) {
		t.Fatalf("decode/encode of the cut text changed its length: %d vs %d", len(back), len(ids))
	}
	s := mustLocal(t, filepath.Dir(path))
	if _, err := s.Put(context.Background(), filepath.Base(path), stringsReader(text), int64(len(text))); err != nil {
		t.Fatal(err)
	}
}
