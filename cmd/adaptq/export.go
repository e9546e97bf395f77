package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "--model <location> --type <recipe> [--rotate hadamard --seed 1 [--heads]] [--optimized] [--compress] --out <location>", stderr)
	modelLoc := fs.String("model", "", "checkpoint location (directory, file://, s3://bucket/prefix)")
	rf := addRecipeFlags(fs, "type")
	bf := addBudgetFlags(fs)
	out := fs.String("out", "", "output location: shard objects, plan.json, model.gguf, manifest.parquet")
	verbose := fs.Bool("v", false, "print every tensor's type, bits per weight and error")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelLoc == "" || *out == "" || len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --model and --out are required", errUsage)
	}
	names := flagNames("type")
	r, err := rf.recipe(setFlags(fs))
	if err != nil {
		return describe(err, names, "", "")
	}
	g, budgeted, err := bf.goal()
	if err != nil {
		return err
	}
	start := time.Now()
	ck, err := (&activities.Activities{}).Check(ctx, activities.PlanInput{Model: absLocation(*modelLoc), Output: absLocation(*out), Recipe: r})
	if err != nil {
		return describe(err, names, "", "")
	}
	src := ck.Store
	dst, err := store.Open(absLocation(*out))
	if err != nil {
		return err
	}
	run := func(r shards.Recipe) (*export.Summary, []export.ShardRecord, error) {
		bar := progress.New(stderr, "shards", int64(ck.Config.NumLayers+2), false)
		sum, recs, err := export.Run(ctx, ck, dst, r, export.Events{ShardDone: func(rec export.ShardRecord, done, total int) { bar.Set(int64(done)) }})
		if err == nil {
			bar.Done()
		}
		return sum, recs, err
	}
	var sum *export.Summary
	var recs []export.ShardRecord
	var brec *budgetRecord
	if budgeted {
		if r, sum, recs, brec, err = exportBudget(ctx, ck, dst, r, bf, g, run, stderr); err != nil {
			return err
		}
	} else if sum, recs, err = run(r); err != nil {
		return err
	}
	elapsed := time.Since(start)
	if *verbose {
		printShards(stdout, recs)
	}
	fmt.Fprintf(stdout, "model        %s (%s, %d parameters)\n", src.Location(), ck.Config.ModelType, ck.NumParams())
	fmt.Fprintf(stdout, "recipe       %s, rotation %s\n", r.Name, describeRotation(r.Rotation))
	fmt.Fprintf(stdout, "original     %s of tensors (%s on disk)\n", progress.FormatBytes(sum.SourceBytes), progress.FormatBytes(ck.SizeOnDisk()))
	fmt.Fprintf(stdout, "quantized    %s of tensors in %d tensors (%d fell back to another type)\n", progress.FormatBytes(sum.Bytes), sum.Tensors, sum.Fallbacks)
	fmt.Fprintf(stdout, "bits/weight  %.3f (all tensors, embeddings and norms included)\n", sum.BitsPerWeight)
	fmt.Fprintf(stdout, "ratio        %.2fx smaller than the source tensors\n", sum.Ratio)
	fmt.Fprintf(stdout, "gguf         %s/%s (%s, sha256 %s)\n", dst.Location(), sum.GGUFKey, progress.FormatBytes(sum.GGUFSize), sum.GGUFSHA256)
	fmt.Fprintf(stdout, "manifest     %s/%s\n", dst.Location(), sum.ManifestKey)
	if brec != nil {
		printBudget(stdout, brec, sum.BitsPerWeight)
		fmt.Fprintf(stdout, "plan file    %s/%s\n", dst.Location(), budgetKey)
	}
	fmt.Fprintf(stdout, "time         %.2fs\n", elapsed.Seconds())
	return nil
}

func describeRotation(r shards.Rotation) string {
	if !r.Enabled() {
		return "none"
	}
	s := fmt.Sprintf("hadamard (seed %d)", r.Seed)
	if r.Heads {
		s += " with per-head value/output rotation"
	}
	return s
}

func printShards(w io.Writer, recs []export.ShardRecord) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shard\tweights\tbytes\tbits/w\tmax rel err\tstored\tzstd ratio\treused")
	for _, r := range recs {
		bpw := 0.0
		if r.Weights > 0 {
			bpw = float64(r.Bytes) * 8 / float64(r.Weights)
		}
		ratio := 1.0
		if r.StoredSize > 0 {
			ratio = float64(r.RawSize) / float64(r.StoredSize)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%.4f\t%d\t%.3f\t%v\n", r.Shard, r.Weights, r.Bytes, bpw, r.MaxRelErr, r.Size, ratio, r.Reused)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
