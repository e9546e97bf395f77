package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// tokenizerFile is the Hugging Face tokenizer file of a checkpoint.
const tokenizerFile = "tokenizer.json"

// verifyReport is what `adaptq verify --json` prints: the settings, the
// evaluation result (infer.Result's fields, inlined) and the speed.
type verifyReport struct {
	Model             string `json:"model"`
	ReferenceModel    string `json:"reference_model,omitempty"`
	ReferenceLogProbs string `json:"reference_logprobs,omitempty"`
	// Input is the text or ids file; InputTokens its number of token ids
	// (without BOS).
	Input       string `json:"input"`
	InputTokens int    `json:"input_tokens"`
	Protocol    string `json:"protocol"`
	Ctx         int    `json:"ctx"`
	ActBits     int    `json:"act_bits"`
	Hadamard    bool   `json:"hadamard"`
	Workers     int    `json:"workers"`
	// Exact is true for float32 semantics (--exact), false for llama.cpp's
	// integer kernels.
	Exact bool `json:"exact"`
	infer.Result
	// Seconds is the wall-clock time of the evaluation loop (with a live
	// reference model, its forward passes included). ForwardTokens is the
	// number of tokens the evaluated model ran (windows × ctx), scored or
	// not; TokensPerSecond = ForwardTokens / Seconds.
	Seconds         float64 `json:"seconds"`
	ForwardTokens   int64   `json:"forward_tokens"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	SavedLogProbs   string  `json:"saved_logprobs,omitempty"`
}

// loadedModel is a model given by location: a Hugging Face checkpoint, or
// a GGUF file (a location ending in .gguf) whose weights stay quantized.
type loadedModel struct {
	Location string
	Config   *model.Config
	// Tokens is where tokenizer.json is looked for: the checkpoint, or the
	// GGUF file's folder (adaptq export writes a copy there).
	Tokens store.Store
}

// splitGGUF splits "dir/model.gguf" (or s3://bucket/prefix/model.gguf) into
// the folder's location and the file's key; ok is false for other locations.
func splitGGUF(location string) (dir, key string, ok bool) {
	if !strings.HasSuffix(strings.ToLower(strings.TrimRight(location, "/")), ".gguf") {
		return "", "", false
	}
	dir, key, err := store.SplitObject(location)
	return dir, key, err == nil
}

// loadModel opens and loads the model at a location given by a flag.
func loadModel(ctx context.Context, flagName, location string) (*loadedModel, *infer.Model, error) {
	if dir, key, ok := splitGGUF(location); ok {
		s, err := store.Open(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", flagName, err)
		}
		m, err := infer.LoadGGUF(ctx, s, key, infer.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", flagName, err)
		}
		return &loadedModel{Location: store.Describe(s, key), Config: m.Config(), Tokens: s}, m, nil
	}
	s, err := store.Open(location)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flagName, err)
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flagName, err)
	}
	m, err := infer.LoadModel(ctx, ck)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flagName, err)
	}
	return &loadedModel{Location: s.Location(), Config: ck.Config, Tokens: s}, m, nil
}

// errNoTokenizer reports a checkpoint without tokenizer.json.
var errNoTokenizer = errors.New("no " + tokenizerFile)

// errTokenizerType reports a tokenizer.json whose model is not BPE.
var errTokenizerType = errors.New("tokenizer model type not supported")

// loadTokenizer reads the checkpoint's tokenizer.json; a missing file is
// reported wrapping errNoTokenizer, a model type other than BPE wrapping
// errTokenizerType.
func loadTokenizer(ctx context.Context, lm *loadedModel) (*tokenizer.Tokenizer, error) {
	data, err := store.ReadAll(ctx, lm.Tokens, tokenizerFile)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s has %w", lm.Tokens.Location(), errNoTokenizer)
	}
	if err != nil {
		return nil, fmt.Errorf("read tokenizer: %w", err)
	}
	// The model type first: tokenizer.Parse would otherwise report a
	// WordPiece or Unigram file by the first field it cannot decode.
	var head struct {
		Model struct {
			Type string `json:"type"`
		} `json:"model"`
	}
	if json.Unmarshal(data, &head) == nil && head.Model.Type != "" && head.Model.Type != "BPE" {
		return nil, fmt.Errorf("%s: %w: %q (only BPE: SentencePiece-style and byte-level)",
			store.Describe(lm.Tokens, tokenizerFile), errTokenizerType, head.Model.Type)
	}
	tok, err := tokenizer.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", store.Describe(lm.Tokens, tokenizerFile), err)
	}
	return tok, nil
}

// bosID is the BOS token id: the tokenizer's, else config.json's.
func bosID(cfg *model.Config, tok *tokenizer.Tokenizer) (int32, error) {
	if tok != nil {
		if id, ok := tok.BOS(); ok {
			return int32(id), nil
		}
	}
	if len(cfg.BOSTokenID) > 0 {
		return int32(cfg.BOSTokenID[0]), nil
	}
	return 0, fmt.Errorf("the model defines no BOS token (neither tokenizer.json nor config.json bos_token_id)")
}

// toInt32 converts tokenizer ids.
func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", "--model <location> (--text <file> | --ids <file>) [--reference <location> | --reference-logprobs <file>] [--ctx 256] [--protocol full|llama.cpp] [--act-bits 8|4 [--hadamard]] [--exact] [--workers N] [--save-logprobs <file> [--topk 32]] [--limit N] [--json]", stderr)
	modelLoc := fs.String("model", "", "checkpoint to evaluate (directory, file://, s3://)")
	refLoc := fs.String("reference", "", "reference checkpoint for KL divergence, top-1 agreement and PPL ratio")
	textPath := fs.String("text", "", "text file, tokenized with the model's tokenizer.json (whole file, no BOS)")
	idsPath := fs.String("ids", "", "file of whitespace-separated token ids (no BOS), instead of --text")
	ctxLen := fs.Int("ctx", 256, "context length of a window")
	protocol := fs.String("protocol", string(infer.ProtocolFull), "perplexity protocol: full or llama.cpp")
	actBits := fs.Int("act-bits", 0, "simulate per-token activation quantization with 8 or 4 bits (0: off)")
	hadamard := fs.Bool("hadamard", false, "rotate every linear input by a randomized Hadamard matrix (before --act-bits)")
	hadamardSeed := fs.Uint64("hadamard-seed", 0, "seed of the Hadamard signs")
	workers := fs.Int("workers", 0, "goroutines of the forward pass (0: GOMAXPROCS)")
	exact := fs.Bool("exact", false, "float32 semantics on dequantized rows instead of llama.cpp's integer kernels (both models)")
	savePath := fs.String("save-logprobs", "", "write the model's top-k log-probabilities (AQLP) to this file, for use as --reference-logprobs")
	topk := fs.Int("topk", 32, "log-probabilities kept per token with --save-logprobs")
	refLogProbs := fs.String("reference-logprobs", "", "AQLP file written by --save-logprobs, used as the reference")
	limit := fs.Int("limit", 0, "evaluate only the first N windows (0: all)")
	asJSON := fs.Bool("json", false, "print a JSON report for machines")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error {
		fs.Usage()
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
	}
	switch {
	case len(pos) != 0:
		return usageErr("unexpected argument %q", pos[0])
	case *modelLoc == "":
		return usageErr("--model is required")
	case (*textPath == "") == (*idsPath == ""):
		return usageErr("give exactly one of --text and --ids")
	case *refLoc != "" && *refLogProbs != "":
		return usageErr("give at most one of --reference and --reference-logprobs")
	case *ctxLen < 4:
		return usageErr("--ctx %d: want at least 4", *ctxLen)
	case *protocol != string(infer.ProtocolFull) && *protocol != string(infer.ProtocolLlamaCpp):
		return usageErr("--protocol %q: want %s or %s", *protocol, infer.ProtocolFull, infer.ProtocolLlamaCpp)
	case *actBits != 0 && *actBits != 4 && *actBits != 8:
		return usageErr("--act-bits %d: want 8 or 4 (0: off)", *actBits)
	case *workers < 0:
		return usageErr("--workers %d: want 0 or more", *workers)
	case *topk < 1:
		return usageErr("--topk %d: want at least 1", *topk)
	case *limit < 0:
		return usageErr("--limit %d: want 0 or more", *limit)
	}

	ck, base, err := loadModel(ctx, "--model", *modelLoc)
	if err != nil {
		return err
	}
	cfg := ck.Config
	opts := infer.Options{Workers: *workers, Exact: *exact, Act: infer.ActQuant{Bits: *actBits, Hadamard: *hadamard, HadamardSeed: *hadamardSeed}}
	m, err := base.With(opts)
	if err != nil {
		return err
	}
	if maxPos := cfg.MaxPositionEmbeddings; maxPos > 0 && *ctxLen > maxPos {
		return fmt.Errorf("--ctx %d exceeds the model's max_position_embeddings %d", *ctxLen, maxPos)
	}

	// Token ids.
	var ids []int32
	var tok *tokenizer.Tokenizer
	input := *idsPath
	if *textPath != "" {
		input = *textPath
		if tok, err = loadTokenizer(ctx, ck); errors.Is(err, errNoTokenizer) || errors.Is(err, errTokenizerType) {
			return fmt.Errorf("--text needs the model's tokenizer: %w; give token ids with --ids instead", err)
		} else if err != nil {
			return err
		}
		text, err := os.ReadFile(*textPath)
		if err != nil {
			return fmt.Errorf("--text: %w", err)
		}
		ids = toInt32(tok.Encode(string(text), false))
	} else {
		if ids, err = infer.ReadIDsFile(*idsPath); err != nil {
			return fmt.Errorf("--ids: %w", err)
		}
		// The tokenizer is optional here; it only supplies BOS (else
		// config.json does).
		if tok, err = loadTokenizer(ctx, ck); err != nil && !errors.Is(err, errNoTokenizer) && !errors.Is(err, errTokenizerType) {
			return err
		}
	}
	for i, id := range ids {
		if int(id) >= cfg.VocabSize {
			return fmt.Errorf("%s: token id %d (#%d) is outside the model's vocabulary of %d", input, id, i, cfg.VocabSize)
		}
	}
	bos, err := bosID(cfg, tok)
	if err != nil {
		return err
	}
	if len(ids) < *ctxLen-1 {
		return fmt.Errorf("%s: %d tokens is shorter than one window (protocol %s at --ctx %d needs %d tokens); give a longer text or a smaller --ctx",
			input, len(ids), *protocol, *ctxLen, *ctxLen-1)
	}
	windows, err := infer.Windows(ids, infer.Protocol(*protocol), *ctxLen, bos)
	if err != nil {
		return err
	}
	if *limit > 0 && *limit < len(windows) {
		windows = windows[:*limit]
	}

	// Reference and recording.
	rep := verifyReport{
		Model: ck.Location, Input: input, InputTokens: len(ids), Protocol: *protocol, Ctx: *ctxLen,
		ActBits: *actBits, Hadamard: *hadamard, Workers: *workers, Exact: *exact,
	}
	var eo infer.EvalOptions
	switch {
	case *refLoc != "":
		rck, ref, err := loadModel(ctx, "--reference", *refLoc)
		if err != nil {
			return err
		}
		if rck.Config.VocabSize != cfg.VocabSize {
			return fmt.Errorf("--reference %s has a vocabulary of %d, the model %d", rck.Location, rck.Config.VocabSize, cfg.VocabSize)
		}
		if ref, err = ref.With(infer.Options{Workers: *workers, Exact: *exact}); err != nil {
			return err
		}
		eo.Reference = infer.ModelReference{Model: ref}
		rep.ReferenceModel = rck.Location
	case *refLogProbs != "":
		f, err := os.Open(*refLogProbs)
		if err != nil {
			return fmt.Errorf("--reference-logprobs: %w", err)
		}
		saved, err := infer.ReadLogProbs(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--reference-logprobs %s: %w", *refLogProbs, err)
		}
		eo.Reference = saved
		rep.ReferenceLogProbs = *refLogProbs
	}
	var saveFile *os.File
	saved := false // the AQLP file is complete; otherwise it is removed
	if *savePath != "" {
		if saveFile, err = os.Create(*savePath); err != nil {
			return fmt.Errorf("--save-logprobs: %w", err)
		}
		defer func() {
			saveFile.Close()
			if !saved {
				os.Remove(*savePath)
			}
		}()
		if eo.Record, err = infer.NewLogProbWriter(saveFile, *topk, cfg.VocabSize); err != nil {
			return fmt.Errorf("--save-logprobs: %w", err)
		}
		rep.SavedLogProbs = *savePath
	}

	// Evaluate window by window for the progress bar; merging per-window
	// sums gives the same result as one Evaluate.
	bar := progress.New(stderr, "verify", int64(len(windows)), false)
	start := time.Now()
	parts := make([]*infer.Sums, 0, len(windows))
	for i := range windows {
		s, err := infer.Evaluate(ctx, m, windows[i:i+1], eo)
		if err != nil {
			return err
		}
		parts = append(parts, s)
		bar.Set(int64(i + 1))
	}
	elapsed := time.Since(start)
	bar.Done()
	sums, err := infer.Merge(parts...)
	if err != nil {
		return err
	}
	if eo.Record != nil {
		if err = eo.Record.Flush(); err != nil {
			return fmt.Errorf("--save-logprobs: %w", err)
		}
		if err := saveFile.Close(); err != nil {
			return fmt.Errorf("--save-logprobs: %w", err)
		}
		saved = true
	}
	rep.Result = sums.Result()
	rep.Seconds = elapsed.Seconds()
	rep.ForwardTokens = int64(len(windows)) * int64(*ctxLen)
	if rep.Seconds > 0 {
		rep.TokensPerSecond = float64(rep.ForwardTokens) / rep.Seconds
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printVerify(stdout, &rep)
	return nil
}

// printVerify prints the report for people.
func printVerify(w io.Writer, r *verifyReport) {
	fmt.Fprintf(w, "model       %s\n", r.Model)
	fmt.Fprintf(w, "input       %s: %d tokens\n", r.Input, r.InputTokens)
	act := "float activations"
	if r.ActBits > 0 {
		act = fmt.Sprintf("%d-bit activations", r.ActBits)
	}
	if r.Hadamard {
		act += " after a Hadamard rotation"
	}
	fmt.Fprintf(w, "protocol    %s, ctx %d: %d windows, %d tokens scored; %s\n", r.Protocol, r.Ctx, r.Windows, r.Tokens, act)
	fmt.Fprintf(w, "PPL         %.5f (NLL %.5f nats/token)\n", r.PPL, r.NLL)
	if r.Reference {
		ref := r.ReferenceModel
		if ref == "" {
			ref = r.ReferenceLogProbs + " (saved top-k: KL is a lower bound)"
		}
		fmt.Fprintf(w, "reference   %s\n", ref)
		fmt.Fprintf(w, "ref PPL     %.5f, ratio %.6f\n", r.RefPPL, r.PPLRatio)
		fmt.Fprintf(w, "KL          mean %.4g, median %.4g, p99 %.4g, max %.4g nats/token\n", r.KLMean, r.KLMedian, r.KLP99, r.KLMax)
		fmt.Fprintf(w, "top-1       %.2f%% agreement\n", 100*r.Top1)
	}
	workers := "GOMAXPROCS workers"
	if r.Workers > 0 {
		workers = fmt.Sprintf("%d workers", r.Workers)
	}
	note := ""
	if r.ReferenceModel != "" {
		note = ", reference model's passes included"
	}
	fmt.Fprintf(w, "speed       %.0f tokens/s (%d windows × %d tokens in %.2f s, %s%s)\n",
		r.TokensPerSecond, r.Windows, r.Ctx, r.Seconds, workers, note)
	if r.SavedLogProbs != "" {
		fmt.Fprintf(w, "saved       %s\n", r.SavedLogProbs)
	}
}
