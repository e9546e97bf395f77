package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ohms-project/adaptq/infer"
)

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", `--model <location> [--prompt "text"] [-n 48] [--workers N] [--exact]`, stderr)
	modelLoc := fs.String("model", "", "checkpoint to run (directory, file://, s3://)")
	prompt := fs.String("prompt", "", "text to continue (empty: start from BOS alone)")
	n := fs.Int("n", 48, "maximum number of tokens to generate (stops earlier at EOS)")
	workers := fs.Int("workers", 0, "goroutines of the forward pass (0: GOMAXPROCS)")
	exact := fs.Bool("exact", false, "float32 semantics on dequantized rows instead of llama.cpp's integer kernels")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 0:
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	case *modelLoc == "":
		fs.Usage()
		return fmt.Errorf("%w: --model is required", errUsage)
	case *n < 0:
		return fmt.Errorf("%w: -n %d: want 0 or more", errUsage, *n)
	case *workers < 0:
		return fmt.Errorf("%w: --workers %d: want 0 or more", errUsage, *workers)
	}
	ck, m, err := loadModel(ctx, "--model", *modelLoc)
	if err != nil {
		return err
	}
	if m, err = m.With(infer.Options{Workers: *workers, Exact: *exact}); err != nil {
		return err
	}
	tok, err := loadTokenizer(ctx, ck)
	if errors.Is(err, errNoTokenizer) {
		return fmt.Errorf("%w; generate needs it to encode the prompt and decode the output", err)
	} else if err != nil {
		return err
	}
	bos, err := bosID(ck.Config, tok)
	if err != nil {
		return err
	}
	// The prompt as the model sees it: BOS, then the text's tokens.
	in := []int32{bos}
	if *prompt != "" {
		in = toInt32(tok.Encode(*prompt, true))
		if len(in) == 0 || in[0] != bos {
			in = slices.Insert(in, 0, bos)
		}
	}
	var stop []int32
	if id, ok := tok.EOS(); ok {
		stop = append(stop, int32(id))
	}
	for _, id := range ck.Config.EOSTokenID {
		if !slices.Contains(stop, int32(id)) {
			stop = append(stop, int32(id))
		}
	}
	start := time.Now()
	out, err := infer.Generate(ctx, m, in, *n, stop)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	// Decode prompt and continuation together so that the spacing at the
	// join is the tokenizer's; special tokens (BOS) are dropped.
	all := make([]int, 0, len(in)+len(out))
	for _, id := range slices.Concat(in, out) {
		all = append(all, int(id))
	}
	fmt.Fprintln(stdout, tok.DecodeSkipSpecial(all))
	why := fmt.Sprintf("stopped after -n %d", *n)
	if len(out) < *n {
		why = "stopped at EOS"
	}
	rate := ""
	if secs > 0 {
		rate = fmt.Sprintf(" (%.0f tokens/s, prompt processing included)", float64(len(out))/secs)
	}
	fmt.Fprintf(stderr, "generated %d tokens after a %d-token prompt in %.3f s%s; %s\n", len(out), len(in), secs, rate, why)
	return nil
}
