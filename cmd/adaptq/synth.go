package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

func runSynth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("synth", "--shape <name|json> [--layers N] [--dtype bf16] [--seed 1] --out <location>", stderr)
	shape := fs.String("shape", "", "architecture: "+strings.Join(synth.Shapes(), ", ")+", or a config.json object")
	layers := fs.Int("layers", 0, "number of decoder layers (0: the architecture's own)")
	dtype := fs.String("dtype", "bf16", "weight dtype: f32, f16 or bf16")
	seed := fs.Uint64("seed", 1, "random seed (the same seed gives the same bytes)")
	out := fs.String("out", "", "output location (directory, file://, s3://bucket/prefix)")
	shardGiB := fs.Float64("max-shard-gib", 4, "split the weights into files of at most this many GiB")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *shape == "" || *out == "" || len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --shape and --out are required", errUsage)
	}
	dt, err := safetensors.ParseDType(strings.ToUpper(*dtype))
	if err != nil || !dt.Float() {
		return fmt.Errorf("%w: --dtype %q: want f32, f16 or bf16", errUsage, *dtype)
	}
	raw, cfg, err := synth.ShapeConfig(*shape, *layers)
	if err != nil {
		return err
	}
	s, err := store.Open(*out)
	if err != nil {
		return err
	}
	bar := progress.New(stderr, "synth", 0, true)
	opt := synth.Options{DType: dt, Seed: *seed, MaxShardBytes: int64(*shardGiB * (1 << 30)),
		Progress: func(done, total int64) { bar.SetTotal(total); bar.Set(done) }}
	if err := synth.Write(ctx, s, raw, cfg, opt); err != nil {
		return err
	}
	bar.Done()
	ck, err := model.Open(ctx, s)
	if err != nil {
		return fmt.Errorf("reading back what synth wrote: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %s, %d layers, %s parameters, %s in %d file(s)\n", s.Location(), cfg.ModelType,
		cfg.NumLayers, human(ck.NumParams()), progress.FormatBytes(ck.SizeOnDisk()), len(ck.Files))
	return nil
}
