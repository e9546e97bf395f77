package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/rotate"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// splitObject splits an object location ("dir/file", "s3://b/p/file") into
// the store of its folder and its key.
func (a *Activities) splitObject(loc string) (store.Store, string, error) {
	dir, key, err := store.SplitObject(loc)
	if err != nil {
		return nil, "", err
	}
	s, err := a.open(dir)
	return s, key, err
}

// EvalPrepInput is the input of PrepareEval.
type EvalPrepInput struct {
	Reference string `json:"reference"` // checkpoint whose tokenizer.json tokenizes the text
	Text      string `json:"text"`      // object location of the text
	Output    string `json:"output"`    // where the token ids are written
	Ctx       int    `json:"ctx"`
	Protocol  string `json:"protocol"`
}

// EvalPrep is what PrepareEval returns.
type EvalPrep struct {
	IDsKey  string `json:"ids_key"` // in the output store
	Tokens  int    `json:"tokens"`
	Windows int    `json:"windows"`
	BOS     int32  `json:"bos"`
}

// PrepareEval tokenizes the evaluation text once, stores the ids and says
// how many windows the protocol makes of them.
func (a *Activities) PrepareEval(ctx context.Context, in EvalPrepInput) (EvalPrep, error) {
	bad := func(err error) (EvalPrep, error) {
		return EvalPrep{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	ref, err := a.open(in.Reference)
	if err != nil {
		return bad(err)
	}
	tokJSON, err := store.ReadAll(ctx, ref, model.TokenizerFile)
	if errors.Is(err, store.ErrNotFound) {
		return bad(err)
	} else if err != nil {
		return EvalPrep{}, err
	}
	tok, err := tokenizer.Parse(tokJSON)
	if err != nil {
		return bad(fmt.Errorf("%s: %w", store.Describe(ref, model.TokenizerFile), err))
	}
	ts, key, err := a.splitObject(in.Text)
	if err != nil {
		return bad(err)
	}
	text, err := store.ReadAll(ctx, ts, key)
	if errors.Is(err, store.ErrNotFound) {
		return bad(err)
	} else if err != nil {
		return EvalPrep{}, err
	}
	var cfg *model.Config
	if raw, err := store.ReadAll(ctx, ref, model.ConfigFile); err == nil {
		cfg, _ = model.ParseConfig(raw, store.Describe(ref, model.ConfigFile))
	}
	bos, ok := BOS(tok, cfg)
	if !ok {
		return bad(fmt.Errorf("%s defines no BOS token (nor does config.json's bos_token_id)", store.Describe(ref, model.TokenizerFile)))
	}
	ids := tok.Encode(string(text), false)
	wins, err := infer.Windows(toInt32(ids), infer.Protocol(in.Protocol), in.Ctx, int32(bos))
	if err != nil {
		return bad(fmt.Errorf("%s: %w", in.Text, err))
	}
	out, err := a.open(in.Output)
	if err != nil {
		return bad(err)
	}
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, id)
	}
	idsKey := "eval/ids-" + hashOf(in.Text, in.Reference)[:16] + ".txt"
	if _, err := out.Put(ctx, idsKey, strings.NewReader(b.String()), int64(b.Len())); err != nil {
		return EvalPrep{}, err
	}
	return EvalPrep{IDsKey: idsKey, Tokens: len(ids), Windows: len(wins), BOS: int32(bos)}, nil
}

// EvalChunkInput is the input of EvalWindows: a range of windows.
type EvalChunkInput struct {
	Model     string `json:"model"`     // the quantized GGUF file's location
	Reference string `json:"reference"` // the original checkpoint
	Output    string `json:"output"`    // holds the ids; receives the sums
	IDsKey    string `json:"ids_key"`
	Ctx       int    `json:"ctx"`
	Protocol  string `json:"protocol"`
	BOS       int32  `json:"bos"`
	First     int    `json:"first"`
	Count     int    `json:"count"`
	// Exact evaluates both models with float32 semantics (infer.Options.Exact)
	// instead of llama.cpp's integer kernels.
	Exact bool `json:"exact,omitempty"`
}

// EvalChunk is what EvalWindows returns: where the full sums are and their
// totals (the per-token KL values stay in the store).
type EvalChunk struct {
	SumsKey string  `json:"sums_key"`
	Windows int     `json:"windows"`
	Tokens  int     `json:"tokens"`
	NLL     float64 `json:"nll"`
	RefNLL  float64 `json:"ref_nll"`
	KL      float64 `json:"kl"`
	Top1    int     `json:"top1"`
}

// EvalWindows evaluates a range of windows of the quantized model against
// the reference and stores the mergeable sums. Both models are loaded once
// per worker and kept (see Activities.Models).
func (a *Activities) EvalWindows(ctx context.Context, in EvalChunkInput) (EvalChunk, error) {
	bad := func(err error) (EvalChunk, error) {
		return EvalChunk{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return bad(err)
	}
	wins, err := a.readWindows(ctx, out, in.IDsKey, infer.Protocol(in.Protocol), in.Ctx, in.BOS)
	if err != nil {
		return EvalChunk{}, err
	}
	if in.First < 0 || in.Count <= 0 || in.First+in.Count > len(wins) {
		return bad(fmt.Errorf("windows [%d, %d) outside the %d windows of the text", in.First, in.First+in.Count, len(wins)))
	}
	qm, err := a.models().get(ctx, a, in.Model, true)
	if err != nil {
		return EvalChunk{}, err
	}
	rm, err := a.models().get(ctx, a, in.Reference, false)
	if err != nil {
		return EvalChunk{}, err
	}
	if in.Exact {
		if qm, err = qm.With(infer.Options{Exact: true}); err != nil {
			return EvalChunk{}, err
		}
		if rm, err = rm.With(infer.Options{Exact: true}); err != nil {
			return EvalChunk{}, err
		}
	}
	sums := &infer.Sums{Reference: true}
	for i := in.First; i < in.First+in.Count; i++ {
		part, err := infer.Evaluate(ctx, qm, wins[i:i+1], infer.EvalOptions{Reference: infer.ModelReference{Model: rm}})
		if err != nil {
			return EvalChunk{}, err
		}
		sums.Windows = append(sums.Windows, part.Windows...)
		activity.RecordHeartbeat(ctx, i-in.First+1)
	}
	b, err := json.Marshal(sums)
	if err != nil {
		return EvalChunk{}, err
	}
	parts := []string{in.Model, in.Reference, in.IDsKey, in.Protocol, fmt.Sprint(in.Ctx)}
	if in.Exact {
		parts = append(parts, "exact")
	}
	key := fmt.Sprintf("eval/sums-%s-%06d-%06d.json", hashOf(parts...)[:16], in.First, in.Count)
	if _, err := out.Put(ctx, key, strings.NewReader(string(b)), int64(len(b))); err != nil {
		return EvalChunk{}, err
	}
	c := EvalChunk{SumsKey: key, Windows: len(sums.Windows)}
	for _, w := range sums.Windows {
		c.Tokens += w.Tokens
		c.NLL += w.NLL
		c.RefNLL += w.RefNLL
		c.KL += w.KL
		c.Top1 += w.Top1
	}
	return c, nil
}

// AggregateInput is the input of AggregateEval.
type AggregateInput struct {
	Output  string   `json:"output"`
	SumsKey []string `json:"sums_keys"`
}

// ResultKey is where AggregateEval writes the evaluation result.
const ResultKey = "eval/result.json"

// AggregateEval merges the stored sums of every chunk (exact quantiles over
// all tokens) and writes the result beside the model.
func (a *Activities) AggregateEval(ctx context.Context, in AggregateInput) (infer.Result, error) {
	out, err := a.open(in.Output)
	if err != nil {
		return infer.Result{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	parts := make([]*infer.Sums, 0, len(in.SumsKey))
	for _, k := range in.SumsKey {
		b, err := store.ReadAll(ctx, out, k)
		if err != nil {
			return infer.Result{}, err
		}
		var s infer.Sums
		if err := json.Unmarshal(b, &s); err != nil {
			return infer.Result{}, fmt.Errorf("%s: %w", store.Describe(out, k), err)
		}
		parts = append(parts, &s)
	}
	merged, err := infer.Merge(parts...)
	if err != nil {
		return infer.Result{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	res := merged.Result()
	b, _ := json.MarshalIndent(res, "", "  ")
	if _, err := out.Put(ctx, ResultKey, strings.NewReader(string(b)), int64(len(b))); err != nil {
		return infer.Result{}, err
	}
	// Refresh report.html with the evaluation (an output without a
	// manifest has no page).
	if _, err := report.Write(ctx, out); err != nil && !errors.Is(err, store.ErrNotFound) {
		return infer.Result{}, err
	}
	return res, nil
}

// modelCache keeps the last few loaded models of a worker, keyed by
// location and the object's ETag, so a worker loads a model once.
type modelCache struct {
	mu    sync.Mutex
	max   int
	order []string
	m     map[string]*infer.Model
}

func (c *modelCache) get(ctx context.Context, a *Activities, loc string, gguf bool) (*infer.Model, error) {
	if !gguf {
		return c.getCheckpoint(ctx, a, loc, shards.Rotation{})
	}
	s, key, err := a.splitObject(loc)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	return c.load(ctx, s, key, loc, func() (*infer.Model, error) {
		return infer.LoadGGUF(ctx, s, key, infer.Options{})
	})
}

// getCheckpoint returns the model of a checkpoint, rotated as the recipe
// rotates it when rot is enabled (what calibration runs on).
func (c *modelCache) getCheckpoint(ctx context.Context, a *Activities, loc string, rot shards.Rotation) (*infer.Model, error) {
	s, err := a.open(loc)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	return c.load(ctx, s, model.ConfigFile, loc+"\x00"+rotationID(rot), func() (*infer.Model, error) {
		ck, err := model.Open(ctx, s)
		if err != nil {
			return nil, err
		}
		if !rot.Enabled() {
			return infer.LoadModel(ctx, ck)
		}
		w, err := infer.RotatedWeights(ctx, ck, rot.Seed, rotate.Options{HeadRotation: rot.Heads})
		if err != nil {
			return nil, err
		}
		return infer.NewModel(ck.Config, w, infer.Options{})
	})
}

// load returns the cached model named id whose object key in s has not
// changed (same ETag), or loads it.
func (c *modelCache) load(ctx context.Context, s store.Store, key, id string, loader func() (*infer.Model, error)) (*infer.Model, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
		}
		return nil, err
	}
	id += "\x00" + info.ETag
	c.mu.Lock()
	if m, ok := c.m[id]; ok {
		c.mu.Unlock()
		return m, nil
	}
	c.mu.Unlock()
	m, err := loader()
	if err != nil {
		return nil, badInput(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*infer.Model{}
	}
	if _, ok := c.m[id]; !ok {
		c.m[id] = m
		c.order = append(c.order, id)
		for len(c.order) > c.max {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
	}
	return m, nil
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// BOS is the token every evaluation and calibration window starts with:
// the tokenizer's BOS, else config.json's bos_token_id (SmolLM2's
// tokenizer.json names none; llama.cpp takes tokenizer.ggml.bos_token_id,
// which the config's is). cfg may be nil.
func BOS(tok *tokenizer.Tokenizer, cfg *model.Config) (int, bool) {
	if id, ok := tok.BOS(); ok {
		return id, true
	}
	if cfg != nil && len(cfg.BOSTokenID) > 0 {
		return cfg.BOSTokenID[0], true
	}
	return 0, false
}
