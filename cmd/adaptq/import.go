package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
)

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("import", "<file.gguf> --out <location> [--dtype f16|bf16|f32] [--max-shard-gib 4]", stderr)
	out := fs.String("out", "", "output location for the checkpoint (directory, file://, s3://bucket/prefix); must not hold one already")
	dtype := fs.String("dtype", "f16", "dtype of the matrices: f16, bf16 or f32 (f32 keeps every dequantized value; vectors are always f32)")
	shardGiB := fs.Float64("max-shard-gib", 4, "split the weights into safetensors files of at most this many GiB")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *out == "" || len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: one GGUF file and --out are required", errUsage)
	}
	dt, err := safetensors.ParseDType(strings.ToUpper(*dtype))
	if err != nil || !dt.Float() {
		return fmt.Errorf("%w: --dtype %q: want f16, bf16 or f32", errUsage, *dtype)
	}
	if !(*shardGiB > 0) {
		return fmt.Errorf("%w: --max-shard-gib %g: want a positive size", errUsage, *shardGiB)
	}
	dir, key, err := store.SplitObject(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	src, err := store.Open(dir)
	if err != nil {
		return err
	}
	dst, err := store.Open(*out)
	if err != nil {
		return err
	}
	bar := progress.New(stderr, "import", 0, true)
	opts := importer.Options{DType: dt, MaxShardBytes: int64(*shardGiB * (1 << 30)),
		Progress: func(done, total int64) { bar.SetTotal(total); bar.Set(done) }}
	plan, sum, err := importer.Import(ctx, src, key, dst, opts)
	if err != nil {
		return err
	}
	bar.Done()
	cfg := plan.Config
	fmt.Fprintf(stdout, "source       %s\n", plan.Source)
	fmt.Fprintf(stdout, "model        %s, %d layers, hidden %d, %d/%d heads, vocab %d%s\n", cfg.ModelType, cfg.NumLayers,
		cfg.HiddenSize, cfg.NumHeads, cfg.NumKVHeads, cfg.VocabSize, map[bool]string{true: ", tied embeddings"}[cfg.TieWordEmbeddings])
	fmt.Fprintf(stdout, "tensors      %d (%s parameters, %s; vectors in F32)\n", sum.Tensors, human(sum.Params), dt)
	fmt.Fprintf(stdout, "written      %s in %d safetensors file(s) and config.json, tokenizer.json, tokenizer_config.json\n", progress.FormatBytes(sum.Bytes), sum.Files)
	fmt.Fprintf(stdout, "checkpoint   %s\n", dst.Location())
	fmt.Fprintf(stdout, "time         %.2fs\n", sum.Seconds)
	return nil
}
