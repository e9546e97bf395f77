package export_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/llamacpp"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// TestRealModelPresetGreedyMatchesLlamaCpp: SmolLM2-135M (the smallest real
// model, which `make test` fetches) imported at F16 and exported as
// llama.cpp's q4_k_m preset loads in llama.cpp, whose greedy continuation
// of a prompt is token for token ours on the same file: 13 tokens, to the
// end of the sentence. Further on, at the paragraph break that follows
// (token 16), the two forward passes pick different tokens among
// near-equal candidates (llama.cpp's own choice there changes with its
// key/value cache type).
func TestRealModelPresetGreedyMatchesLlamaCpp(t *testing.T) {
	o := llamacpp.Require(t)
	src := testenv.RealModel(t, "smollm2-135m")
	ctx := context.Background()
	in, err := store.NewLocal(filepath.Dir(src))
	if err != nil {
		t.Fatal(err)
	}
	ckDir := t.TempDir()
	ckStore, _ := store.NewLocal(ckDir)
	if _, _, err := importer.Import(ctx, in, filepath.Base(src), ckStore, importer.Options{DType: safetensors.F16}); err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, ckStore)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, _ := store.NewLocal(dir)
	sum, _, err := export.Run(ctx, ck, out, recipe(t, "q4_k_m", false), export.Events{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(ckDir, model.TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	bos, ok := activities.BOS(tok, ck.Config)
	if !ok {
		t.Fatal("no BOS token")
	}
	prompt := []int32{int32(bos)}
	for _, id := range tok.Encode("The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is", false) {
		prompt = append(prompt, int32(id))
	}
	const n = 13
	p := make([]int, len(prompt))
	for i, id := range prompt {
		p[i] = int(id)
	}
	path := filepath.Join(dir, export.GGUFKey)
	// llama.cpp with an F32 key/value cache and no flash attention: its
	// default F16 cache rounds keys and values, which we do not.
	noFlash := false
	resp, err := o.Run(ctx, &llamacpp.Request{Model: path, ContextSize: 256, Threads: 2, KVCacheType: "F32", FlashAttention: &noFlash,
		Generate: &llamacpp.Generate{Tokens: n, Prompt: p}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := infer.LoadGGUF(ctx, out, export.GGUFKey, infer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := infer.Generate(ctx, m, prompt, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	theirs := make([]int32, len(resp.Generate.Tokens))
	for i, id := range resp.Generate.Tokens {
		theirs[i] = int32(id)
	}
	t.Logf("q4_k_m, %.3f bits/weight; llama.cpp continues %q", sum.BitsPerWeight, resp.Generate.Text)
	if !slices.Equal(theirs, ours) {
		t.Errorf("greedy tokens differ:\n llama.cpp %v\n ours      %v", theirs, ours)
	}
}
