package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

func runQuantize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("quantize", "--model <location> --out <location> [--recipe q4_k] [--rotate hadamard --seed 1] [--text <eval text>] [--temporal host:port]", stderr)
	modelLoc := fs.String("model", "", "checkpoint location (directory, file://, s3://bucket/prefix)")
	out := fs.String("out", "", "output location: shard objects, model.gguf, manifest.parquet, eval/")
	rf := addRecipeFlags(fs, "recipe")
	text := fs.String("text", "", "evaluation text (a file or object location); without it nothing is evaluated")
	ctxLen := fs.Int("ctx", 256, "evaluation window length")
	protocol := fs.String("protocol", "full", "perplexity protocol: full or llama.cpp")
	conc := fs.Int("concurrency", 4, "shards in flight")
	hostPort := fs.String("temporal", "", "Temporal frontend host:port; empty runs an embedded server and worker in this process")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	queue := fs.String("task-queue", workflows.TaskQueue, "task queue (evaluation uses <queue>-eval)")
	devPort := fs.Int("dev-port", 0, "port of the embedded server's frontend (0: 7233 if free, else any; -1: any)")
	uiPort := fs.Int("ui-port", 0, "port of the embedded server's Web UI (0: 8233 if free, else any; -1: any)")
	wfID := fs.String("workflow-id", "", "workflow id (default adaptq-<model>-<recipe>-<time>)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelLoc == "" || *out == "" || len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --model and --out are required", errUsage)
	}
	if _, err := rf.recipe(); err != nil {
		return err
	}
	recipe := rf.name
	in := workflows.QuantizeInput{Model: absLocation(*modelLoc), Output: absLocation(*out), Recipe: *recipe,
		Rotation: rf.rotation(), Optimized: *rf.opt, Compress: *rf.compress, Concurrency: *conc}
	if *text != "" {
		in.Evaluation = &workflows.EvalSpec{Text: absLocation(*text), Ctx: *ctxLen, Protocol: *protocol}
	}
	id := *wfID
	if id == "" {
		id = fmt.Sprintf("adaptq-%s-%s-%s", filepath.Base(strings.TrimRight(*modelLoc, "/")), *recipe, time.Now().UTC().Format("20060102T150405"))
	}
	logger := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true}).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	cfg := workers.Config{HostPort: *hostPort, Namespace: *namespace, TaskQueue: *queue, Role: workers.RoleAll, Logger: logger}
	if *hostPort == "" {
		dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: *devPort, UIPort: *uiPort, Namespace: *namespace, SearchAttributes: searchAttributes(), Logger: logger})
		if err != nil {
			return fmt.Errorf("embedded Temporal server: %w", err)
		}
		defer dev.Stop()
		cfg.HostPort = dev.Address()
		fmt.Fprintf(stderr, "embedded Temporal server on %s (namespace %s): attach with `temporal workflow describe --address %s -w %s`\n", dev.Address(), *namespace, dev.Address(), id)
		fmt.Fprintf(stderr, "Web UI: %s/namespaces/%s/workflows/%s\n", dev.UIAddress(), *namespace, id)
	}
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if *hostPort == "" {
		w, err := workers.StartInProcess(c, cfg, registrar()) // both roles, both queues
		if err != nil {
			return err
		}
		defer w.Stop()
	}
	if err := checkSearchAttributes(ctx, c, *namespace); err != nil {
		return err
	}
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: *queue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrModel.ValueSet(in.Model), workflows.AttrRecipe.ValueSet(in.Recipe))},
		workflows.QuantizeModel, in)
	if err != nil {
		return fmt.Errorf("start workflow: %w", err)
	}
	fmt.Fprintf(stderr, "workflow %s run %s\n", run.GetID(), run.GetRunID())
	sum, err := follow(ctx, c, run, cfg.HostPort, stderr)
	if err != nil {
		return err
	}
	printSummary(stdout, sum, time.Since(start))
	return nil
}

// follow polls the progress query and draws a bar over the shards until
// the workflow ends (following continue-as-new runs), then returns its
// result. A parked shard is printed once, with the command that retries
// it.
func follow(ctx context.Context, c client.Client, run client.WorkflowRun, hostPort string, stderr io.Writer) (*workflows.Summary, error) {
	type result struct {
		sum workflows.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		var s workflows.Summary
		err := run.Get(ctx, &s) // follows continue-as-new
		done <- result{s, err}
	}()
	var bar *progress.Bar
	phase := ""
	told := map[string]bool{} // parked shards printed, by shard and time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if bar != nil {
				bar.Done()
			}
			if r.err != nil {
				var ce *temporal.CanceledError
				if errors.As(r.err, &ce) {
					return nil, fmt.Errorf("workflow %s was cancelled", run.GetID())
				}
				return nil, fmt.Errorf("workflow %s: %w", run.GetID(), r.err)
			}
			return &r.sum, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			v, err := c.QueryWorkflow(ctx, run.GetID(), "", workflows.ProgressQuery)
			if err != nil {
				continue
			}
			var p workflows.Progress
			if v.Get(&p) != nil {
				continue
			}
			shardStage := p.Phase == workflows.PhaseQuantize || p.Phase == workflows.PhaseAttention || p.Phase == workflows.PhasePaused
			if p.Phase != phase {
				if bar != nil && !shardStage {
					bar.Set(int64(p.ShardsDone))
					bar.Done()
					bar = nil
				}
				phase = p.Phase
				if p.Phase == workflows.PhasePaused {
					fmt.Fprintf(stderr, "\npaused by an operator; resume with `adaptq run resume --workflow-id %s --temporal %s`\n", run.GetID(), hostPort)
				}
				if !shardStage {
					fmt.Fprintf(stderr, "phase: %s\n", p.Phase)
				} else if bar == nil {
					bar = progress.New(stderr, "shards", int64(p.ShardsTotal), false)
				}
			}
			for _, s := range p.Parked {
				k := s.Shard + s.At.String()
				if !told[k] {
					told[k] = true
					fmt.Fprintf(stderr, "\nshard %s parked after its last attempt: %s\n  retry it: adaptq run retry --workflow-id %s --temporal %s --shard %s [--type q8_0]\n  or give up: adaptq run abort --workflow-id %s --temporal %s --reason \"…\"\n",
						s.Shard, s.Error, run.GetID(), hostPort, s.Shard, run.GetID(), hostPort)
				}
			}
			if bar != nil {
				bar.Set(int64(p.ShardsDone))
			}
		}
	}
}

func printSummary(w io.Writer, s *workflows.Summary, wall time.Duration) {
	e := s.Export
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s\n", s.Model)
	fmt.Fprintf(tw, "recipe\t%s\n", s.Recipe)
	fmt.Fprintf(tw, "original size\t%s (%d parameters, tensor bytes %d)\n", progress.FormatBytes(e.SourceBytes), s.Parameters, e.SourceBytes)
	fmt.Fprintf(tw, "quantized size\t%s (tensor bytes %d; GGUF file %s)\n", progress.FormatBytes(e.Bytes), e.Bytes, progress.FormatBytes(e.GGUFSize))
	fmt.Fprintf(tw, "bits per weight\t%.3f (all tensors; %d fell back to another type)\n", e.BitsPerWeight, e.Fallbacks)
	fmt.Fprintf(tw, "compression ratio\t%.2fx\n", e.Ratio)
	fmt.Fprintf(tw, "max relative error\t%.4f (per shard, against the weights quantized)\n", s.MaxRelError)
	if ev := s.Evaluation; ev != nil {
		fmt.Fprintf(tw, "PPL before / after\t%.4f / %.4f (ratio %.4f, %d tokens)\n", ev.RefPPL, ev.PPL, ev.PPLRatio, ev.Tokens)
		fmt.Fprintf(tw, "KL divergence\tmean %.4g, median %.4g, p99 %.4g nats/token\n", ev.KLMean, ev.KLMedian, ev.KLP99)
		fmt.Fprintf(tw, "top-1 agreement\t%.2f%%\n", 100*ev.Top1)
	} else {
		fmt.Fprintf(tw, "PPL / KL / top-1\tnot measured (give --text)\n")
	}
	fmt.Fprintf(tw, "time\t%.1fs (quantize %.1fs, evaluate %.1fs; %d shards reused)\n", wall.Seconds(), s.QuantizeSecs, s.EvaluateSecs, s.ShardsReused)
	fmt.Fprintf(tw, "gguf\t%s/%s (sha256 %s)\n", strings.TrimRight(s.Output, "/"), e.GGUFKey, e.GGUFSHA256)
	fmt.Fprintf(tw, "manifest\t%s/%s\n", strings.TrimRight(s.Output, "/"), e.ManifestKey)
	tw.Flush()
}

// absLocation makes a local path absolute, so that workers with another
// working directory find it; URLs are kept.
func absLocation(loc string) string {
	if strings.Contains(loc, "://") {
		return loc
	}
	if abs, err := filepath.Abs(loc); err == nil {
		return abs
	}
	return loc
}

// checkSearchAttributes fails early, with the commands that fix it, when
// the namespace lacks adaptq's search attributes: the workflow's upserts
// would otherwise fail its workflow tasks over and over.
func checkSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	var missing []string
	for _, n := range workflows.SearchAttributeNames() {
		if _, ok := resp.GetCustomAttributes()[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var b strings.Builder
	for _, n := range missing {
		fmt.Fprintf(&b, "\n  temporal operator search-attribute create --namespace %s --name %s --type Keyword", namespace, n)
	}
	return fmt.Errorf("namespace %s lacks the search attributes %s; register them once:%s", namespace, strings.Join(missing, ", "), b.String())
}

// searchAttributes are adaptq's search attributes with their types, as a
// server registers them.
func searchAttributes() map[string]enumspb.IndexedValueType {
	attrs := map[string]enumspb.IndexedValueType{}
	for _, n := range workflows.SearchAttributeNames() {
		attrs[n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	return attrs
}
