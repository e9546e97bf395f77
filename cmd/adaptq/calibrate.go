package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

// runCalibrate collects an importance matrix with the CalibrateModel
// workflow: on an embedded Temporal server and in-process worker, or on a
// cluster with --temporal (its evaluation workers do the work).
func runCalibrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("calibrate", "--model <location> --text <file> [--ctx 512] [--chunks N] [--rotate hadamard --seed S [--heads]] [--head] --out <location> [--temporal host:port]", stderr)
	modelLoc := fs.String("model", "", "checkpoint location (directory, file://, s3://bucket/prefix)")
	text := fs.String("text", "", "calibration text (a file or object location); keep it disjoint from any evaluation text")
	ctxLen := fs.Int("ctx", activities.DefaultCalibCtx, "window (chunk) length in tokens, as llama-imatrix's -c")
	chunks := fs.Int("chunks", 0, "use at most this many windows (0: every window of the text)")
	rotate := fs.String("rotate", "none", "collect on the rotated model the recipe will quantize: none or hadamard")
	seed := fs.Uint64("seed", 1, "rotation seed")
	heads := fs.Bool("heads", false, "the rotation also rotates each attention head's value/output pair")
	head := fs.Bool("head", false, "also collect lm_head's input (output.weight), as llama-imatrix --process-output")
	out := fs.String("out", "", "output location: receives imatrix.gguf (llama.cpp's GGUF imatrix), the token ids and the partial sums")
	chunk := fs.Int("chunk", 0, "windows per activity (default 8)")
	parallel := fs.Int("parallel", 0, "activities in flight (default 4)")
	hostPort := fs.String("temporal", "", "Temporal frontend host:port; empty runs an embedded server and worker in this process")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	queue := fs.String("task-queue", workflows.TaskQueue, "task queue (the windows run on <queue>-eval)")
	devPort := fs.Int("dev-port", 0, "port of the embedded server's frontend (0: 7233 if free, else any; -1: any)")
	uiPort := fs.Int("ui-port", 0, "port of the embedded server's Web UI (0: 8233 if free, else any; -1: any)")
	wfID := fs.String("workflow-id", "", "workflow id (default adaptq-calibrate-<model>-<time>)")
	verbose := fs.Bool("v", false, "log to stderr instead of the log file, and print Temporal's whole error chain on failure")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelLoc == "" || *out == "" || *text == "" || len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --model, --text and --out are required", errUsage)
	}
	if *chunks < 0 {
		return fmt.Errorf("%w: --chunks %d: want 0 (all) or more", errUsage, *chunks)
	}
	set := setFlags(fs)
	names := flagNames("recipe")
	names[activities.FieldCalibText] = "--text"
	names[activities.FieldCalibCtx] = "--ctx"
	id := *wfID
	if id == "" {
		id = fmt.Sprintf("adaptq-calibrate-%s-%s", filepath.Base(strings.TrimRight(*modelLoc, "/")), time.Now().UTC().Format("20060102T150405"))
	}
	log := openRunLog(stderr, *verbose, "text", absLocation(*out), id)
	defer log.close()
	fail := func(err error, started bool) error {
		runID := ""
		if started {
			runID = id
		}
		f := describe(err, names, runID, log.path)
		if *verbose {
			fmt.Fprintf(stderr, "adaptq calibrate: error chain: %v\n", err)
		}
		return f
	}
	rf := &recipeFlags{name: new(string), rotate: rotate, seed: seed, heads: heads, opt: new(bool), compress: new(bool)}
	*rf.name = "f16" // only the rotation matters here; the recipe's check covers it
	recipe, err := rf.recipe(set)
	if err != nil {
		return fail(err, false)
	}
	in := workflows.CalibrateInput{Model: absLocation(*modelLoc), Output: absLocation(*out), Rotation: recipe.Rotation,
		Spec: workflows.CalibSpec{Text: absLocation(*text), Ctx: *ctxLen, Chunks: *chunks, Chunk: *chunk, Parallel: *parallel, Head: *head}}
	pin := activities.PlanInput{Model: in.Model, Output: in.Output, Recipe: recipe,
		Calibration: &activities.TextInput{Text: in.Spec.Text, Ctx: *ctxLen}}
	if _, err := (&activities.Activities{}).Check(ctx, pin); err != nil {
		return fail(err, false)
	}
	cfg := workers.Config{HostPort: *hostPort, Namespace: *namespace, TaskQueue: *queue, Role: workers.RoleAll, Logger: log.logger}
	var c client.Client
	if *hostPort != "" {
		if c, err = dial(ctx, cfg, true); err != nil {
			return fail(err, false)
		}
		defer c.Close()
	}
	if log.path != "" {
		fmt.Fprintf(stderr, "log: %s\n", log.path)
	}
	if *hostPort == "" {
		dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: *devPort, UIPort: *uiPort, Namespace: *namespace, SearchAttributes: searchAttributes(), Logger: log.logger})
		if err != nil {
			return fail(fmt.Errorf("embedded Temporal server: %w", err), false)
		}
		defer dev.Stop()
		cfg.HostPort = dev.Address()
		fmt.Fprintf(stderr, "embedded Temporal server on %s (namespace %s): attach with `temporal workflow describe --address %s -w %s`\n", dev.Address(), *namespace, dev.Address(), id)
		if c, err = dial(ctx, cfg, false); err != nil {
			return fail(err, false)
		}
		defer c.Close()
		w, err := workers.StartInProcess(c, cfg, registrar())
		if err != nil {
			return fail(err, false)
		}
		defer w.Stop()
	}
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: *queue}, workflows.CalibrateModel, in)
	if err != nil {
		return fail(fmt.Errorf("start workflow: %w", err), false)
	}
	fmt.Fprintf(stderr, "workflow %s run %s\n", run.GetID(), run.GetRunID())
	res, err := followCalib(ctx, c, run, stderr)
	if err != nil {
		return fail(err, true)
	}
	secs := time.Since(start).Seconds()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s (rotation %s)\n", in.Model, describeRotation(in.Rotation))
	fmt.Fprintf(tw, "text\t%s\n", in.Spec.Text)
	fmt.Fprintf(tw, "windows\t%d of %d tokens\n", res.Windows, *ctxLen)
	fmt.Fprintf(tw, "tokens\t%d (every position of every window)\n", res.Tokens)
	fmt.Fprintf(tw, "entries\t%d weights\n", res.Entries)
	fmt.Fprintf(tw, "seconds\t%.2f\n", secs)
	fmt.Fprintf(tw, "tokens/s\t%.1f (end to end, tokenizing and the workflow included)\n", float64(res.Tokens)/secs)
	fmt.Fprintf(tw, "file\t%s/%s (sha256 %s)\n", strings.TrimRight(in.Output, "/"), res.IMatrixKey, res.SHA256)
	return tw.Flush()
}

// followCalib draws a bar over the calibration's windows until the
// workflow ends, then returns its result.
func followCalib(ctx context.Context, c client.Client, run client.WorkflowRun, stderr io.Writer) (*activities.CalibResult, error) {
	type result struct {
		res activities.CalibResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r activities.CalibResult
		err := run.Get(ctx, &r)
		done <- result{r, err}
	}()
	var bar *progress.Bar
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if bar != nil {
				if r.err == nil {
					bar.Set(int64(r.res.Windows))
				}
				bar.Done()
			}
			if r.err != nil {
				return nil, r.err
			}
			return &r.res, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			v, err := c.QueryWorkflow(ctx, run.GetID(), "", workflows.ProgressQuery)
			if err != nil {
				continue
			}
			var p workflows.CalibProgress
			if v.Get(&p) != nil || p.Windows == 0 {
				continue
			}
			if bar == nil {
				bar = progress.New(stderr, "windows", int64(p.Windows), false)
			}
			bar.Set(int64(p.WindowsDone))
		}
	}
}
