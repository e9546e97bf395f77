package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "--model <location> --type <recipe> [--rotate hadamard --seed 1 [--heads]] [--optimized] [--compress] [--imatrix <file>] [--target-bpw X | --max-kld Y --eval-text <file>] [--budget-text <file>] --out <location>", stderr)
	modelLoc := fs.String("model", "", "checkpoint location (directory, file://, s3://bucket/prefix)")
	rf := addRecipeFlags(fs, "type")
	bf := addBudgetFlags(fs)
	out := fs.String("out", "", "output location: shard objects, plan.json, model.gguf, manifest.parquet")
	verbose := fs.Bool("v", false, "print every tensor's type, bits per weight and error")
	imatrix := fs.String("imatrix", "", "importance-matrix file (llama.cpp's GGUF imatrix or legacy .dat, or `adaptq calibrate`'s) the quantizers weight each column with")
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
	pin := activities.PlanInput{Model: absLocation(*modelLoc), Output: absLocation(*out), Recipe: r}
	if *imatrix != "" {
		pin.Imatrix = absLocation(*imatrix)
	}
	ck, err := (&activities.Activities{}).Check(ctx, pin)
	if err != nil {
		return describe(err, names, "", "")
	}
	im, err := readIMatrix(ctx, pin.Imatrix)
	if err != nil {
		return err
	}
	if im != nil {
		r.Imatrix = &shards.IMatrixRef{Location: pin.Imatrix, SHA256: im.sha}
	}
	src := ck.Store
	dst, err := store.Open(absLocation(*out))
	if err != nil {
		return err
	}
	var matrix *gguf.IMatrix
	if im != nil {
		matrix = im.m
	}
	run := func(r shards.Recipe) (*export.Summary, []export.ShardRecord, error) {
		bar := progress.New(stderr, "shards", int64(ck.Config.NumLayers+2), false)
		sum, recs, err := export.RunWeighted(ctx, ck, dst, r, matrix, export.Events{ShardDone: func(rec export.ShardRecord, done, total int) { bar.Set(int64(done)) }})
		if err == nil {
			bar.Done()
		}
		return sum, recs, err
	}
	var sum *export.Summary
	var recs []export.ShardRecord
	var brec *budgetRecord
	if budgeted {
		var imp shards.Importance
		if matrix != nil {
			if imp, err = shards.ImportanceOf(matrix); err != nil {
				return fmt.Errorf("--imatrix %s: %w", *imatrix, err)
			}
		}
		if r, sum, recs, brec, err = exportBudget(ctx, ck, dst, r, imp, bf, g, run, stderr); err != nil {
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
	if im != nil {
		fmt.Fprintf(stdout, "imatrix      %s (%d entries, %d chunks of %d tokens, sha256 %s)\n", *imatrix, len(im.m.Entries), im.m.ChunkCount, im.m.ChunkSize, im.sha)
	}
	fmt.Fprintf(stdout, "original     %s of tensors (%s on disk)\n", progress.FormatBytes(sum.SourceBytes), progress.FormatBytes(ck.SizeOnDisk()))
	fmt.Fprintf(stdout, "quantized    %s of tensors in %d tensors (%d fell back to another type)\n", progress.FormatBytes(sum.Bytes), sum.Tensors, sum.Fallbacks)
	fmt.Fprintf(stdout, "bits/weight  %.3f (all tensors, embeddings and norms included)\n", sum.BitsPerWeight)
	fmt.Fprintf(stdout, "ratio        %.2fx smaller than the source tensors\n", sum.Ratio)
	fmt.Fprintf(stdout, "gguf         %s/%s (%s, sha256 %s)\n", dst.Location(), sum.GGUFKey, progress.FormatBytes(sum.GGUFSize), sum.GGUFSHA256)
	fmt.Fprintf(stdout, "manifest     %s/%s\n", dst.Location(), sum.ManifestKey)
	if brec != nil {
		printBudget(stdout, brec, sum.BitsPerWeight)
		fmt.Fprintf(stdout, "plan file    %s/%s\n", dst.Location(), budgetKey)
		// The stitch wrote report.html before budget.json had its last pass.
		if _, err := report.Write(ctx, dst); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "report       %s/%s\n", dst.Location(), report.Key)
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

// loadedIMatrix is an importance matrix read for a run, with its checksum.
type loadedIMatrix struct {
	m   *gguf.IMatrix
	sha string
}

// readIMatrix reads the importance matrix at loc (nil for loc ""), after
// activities.Check has checked it.
func readIMatrix(ctx context.Context, loc string) (*loadedIMatrix, error) {
	if loc == "" {
		return nil, nil
	}
	dir, key, err := store.SplitObject(loc)
	if err != nil {
		return nil, err
	}
	s, err := store.Open(dir)
	if err != nil {
		return nil, err
	}
	m, sha, err := export.ReadIMatrix(ctx, s, key)
	if err != nil {
		return nil, err
	}
	return &loadedIMatrix{m: m, sha: sha}, nil
}
