package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

func runQuantize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("quantize", "--model <location> --out <location> [--recipe q4_k_m] [--rotate hadamard --seed 1] [--text <eval text>] [--imatrix <file> | --calib-text <file> [--calib-ctx 512] [--calib-chunks N]] [--temporal host:port] [-v]", stderr)
	modelLoc := fs.String("model", "", "checkpoint location (directory, file://, s3://bucket/prefix)")
	out := fs.String("out", "", "output location: shard objects, model.gguf, manifest.parquet, eval/, logs/")
	rf := addRecipeFlags(fs, "recipe")
	text := fs.String("text", "", "evaluation text (a file or object location); without it nothing is evaluated")
	ctxLen := fs.Int("ctx", activities.DefaultEvalCtx, "evaluation window length")
	protocol := fs.String("protocol", "full", "perplexity protocol: full or llama.cpp")
	imatrix := fs.String("imatrix", "", "importance-matrix file (llama.cpp's GGUF imatrix or legacy .dat, or `adaptq calibrate`'s) the quantizers weight each column with")
	calibText := fs.String("calib-text", "", "collect an importance matrix over this text first (CalibrateModel on the eval queue) and quantize with it; disjoint from --text")
	calibCtx := fs.Int("calib-ctx", activities.DefaultCalibCtx, "calibration window length")
	calibChunks := fs.Int("calib-chunks", 0, "use at most this many calibration windows (0: all)")
	targetBPW := fs.Float64("target-bpw", 0, "budget: the least predicted KL divergence within this many bits per weight over the whole file (needs --budget-text)")
	maxKLD := fs.Float64("max-kld", 0, "budget: the smallest file whose predicted mean KL divergence is at most this (needs --budget-text; the corrective pass is export's)")
	budgetText := fs.String("budget-text", "", "text each tensor's sensitivity is probed on (MeasureBudget per shard on the eval queue); not the evaluation text")
	budgetCtx := fs.Int("budget-ctx", 128, "probe window length")
	budgetWindows := fs.Int("budget-windows", 1, "probe windows")
	conc := fs.Int("concurrency", 4, "shards in flight")
	hostPort := fs.String("temporal", "", "Temporal frontend host:port; empty runs an embedded server and worker in this process")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	queue := fs.String("task-queue", workflows.TaskQueue, "task queue (evaluation uses <queue>-eval)")
	devPort := fs.Int("dev-port", 0, "port of the embedded server's frontend (0: 7233 if free, else any; -1: any)")
	uiPort := fs.Int("ui-port", 0, "port of the embedded server's Web UI (0: 8233 if free, else any; -1: any)")
	wfID := fs.String("workflow-id", "", "workflow id (default adaptq-<model>-<recipe>-<hash of the inputs>: the same command attaches to the same run)")
	stateDir := fs.String("state", "", "state folder of the embedded server's database (default <out>/.adaptq-state for a local --out; in memory for s3://)")
	heartbeat := fs.Int("heartbeat-seconds", 0, "QuantizeShard's heartbeat timeout: how soon a dead worker's shard is retried (0: 30 on the embedded server, 300 on a cluster)")
	verbose := fs.Bool("v", false, "log to stderr instead of the log file, and print Temporal's whole error chain on failure")
	logFormat := fs.String("log-format", "text", "log line format: text (to the log file, or stderr with -v) or json (to stderr)")
	localChecks := fs.Bool("local-checks", true, "check the inputs here before starting the run (PlanModel checks them again on a worker); "+
		"false leaves them to the worker, for a machine that does not see the workers' stores")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if *modelLoc == "" || *out == "" || len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: --model and --out are required", errUsage)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", errUsage, *logFormat)
	}
	set := setFlags(fs)
	names := flagNames("recipe")
	in := workflows.QuantizeInput{Model: absLocation(*modelLoc), Output: absLocation(*out), Recipe: *rf.name,
		Rotation: rf.rotation(), Optimized: *rf.opt, Compress: *rf.compress, Concurrency: *conc,
		HeartbeatSeconds: *heartbeat}
	if *heartbeat < 0 || *heartbeat > workflows.MaxHeartbeatSeconds {
		return fmt.Errorf("%w: --heartbeat-seconds %d: want 1 to %d, or 0 for the default", errUsage, *heartbeat, workflows.MaxHeartbeatSeconds)
	}
	if *conc < 1 || *conc > workflows.MaxConcurrency {
		return fmt.Errorf("%w: --concurrency %d: want 1 to %d shards in flight", errUsage, *conc, workflows.MaxConcurrency)
	}
	if *hostPort == "" && in.HeartbeatSeconds == 0 {
		in.HeartbeatSeconds = embeddedHeartbeat
	}
	if *hostPort != "" && *stateDir != "" {
		return fmt.Errorf("%w: --state is the embedded server's; a cluster given with --temporal keeps its own state", errUsage)
	}
	if *text != "" || set["ctx"] || set["protocol"] {
		in.Evaluation = &workflows.EvalSpec{Ctx: *ctxLen, Protocol: *protocol}
		if *text != "" {
			in.Evaluation.Text = absLocation(*text)
		}
	}
	if *imatrix != "" {
		in.Imatrix = absLocation(*imatrix)
	}
	if *calibText != "" || set["calib-ctx"] || set["calib-chunks"] {
		if *calibChunks < 0 {
			return fmt.Errorf("%w: --calib-chunks %d: want 0 (all) or more", errUsage, *calibChunks)
		}
		in.Calibration = &workflows.CalibSpec{Ctx: *calibCtx, Chunks: *calibChunks}
		if *calibText != "" {
			in.Calibration.Text = absLocation(*calibText)
		}
	}
	if *targetBPW != 0 || *maxKLD != 0 || *budgetText != "" {
		g := budget.Goal{TargetBPW: *targetBPW, MaxKLD: *maxKLD}
		switch err := g.Validate(); {
		case err != nil:
			return &failure{code: exitBadInput, line: "--target-bpw/--max-kld: " + err.Error()}
		case *budgetText == "":
			return &failure{code: exitBadInput, line: "a budget needs --budget-text <file>: the text each tensor's sensitivity is measured on"}
		case *text != "" && absLocation(*text) == absLocation(*budgetText):
			return &failure{code: exitBadInput, line: "--text is the --budget-text: evaluate on text held out from the probes"}
		case rf.rotation().Enabled():
			return &failure{code: exitBadInput, line: "a budget is measured on the unrotated weights: drop --rotate or the budget"}
		}
		in.Budget = &workflows.BudgetSpec{TargetBPW: *targetBPW, MaxKLD: *maxKLD, Text: absLocation(*budgetText), Ctx: *budgetCtx, Windows: *budgetWindows}
	}
	if err := in.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	id := *wfID
	if id == "" {
		id = runID(in)
	}
	log := openRunLog(stderr, *verbose, *logFormat, absLocation(*out), id)
	defer log.close()
	fail := func(err error, started bool) error {
		runID := ""
		if started {
			runID = id
		}
		f := describe(err, names, runID, log.path)
		if *verbose {
			fmt.Fprintf(stderr, "adaptq quantize: error chain: %v\n", err)
		}
		return f
	}

	recipe, err := rf.recipe(set)
	if err != nil {
		return fail(err, false)
	}

	cfg := workers.Config{HostPort: *hostPort, Namespace: *namespace, TaskQueue: *queue, Role: workers.RoleAll, Logger: log.logger}
	var c client.Client
	if *hostPort != "" { // a remote cluster: is it there? (cheap, and before anything is written)
		if c, err = dial(ctx, cfg, true); err != nil {
			return fail(err, false)
		}
		defer c.Close()
	}
	if *localChecks {
		pin := activities.PlanInput{Model: in.Model, Output: in.Output, Recipe: recipe, Imatrix: in.Imatrix}
		if ev := in.Evaluation; ev != nil {
			pin.Evaluation = &activities.TextInput{Text: ev.Text, Ctx: ev.Ctx, Protocol: ev.Protocol}
		}
		if c := in.Calibration; c != nil {
			pin.Calibration = &activities.TextInput{Text: c.Text, Ctx: c.Ctx}
		}
		if _, err := (&activities.Activities{}).Check(ctx, pin); err != nil {
			return fail(err, false)
		}
	}
	if log.path != "" {
		fmt.Fprintf(stderr, "log: %s\n", log.path)
	}
	if *hostPort == "" {
		dbFile := ""
		if dir := *stateDir; dir != "" || localPath(in.Output) != "" {
			if dir == "" {
				dir = filepath.Join(localPath(in.Output), stateFolder)
			}
			unlock, err := lockState(dir)
			if err != nil {
				return fail(err, false)
			}
			defer unlock()
			dbFile = filepath.Join(dir, stateDB)
		} else {
			fmt.Fprintf(stderr, "note: the embedded server keeps its state in memory for an %s output; give --state DIR so that the same command after a crash resumes the run\n", *out)
		}
		dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: *devPort, UIPort: *uiPort, Namespace: *namespace, SearchAttributes: searchAttributes(), Logger: log.logger, DBFile: dbFile})
		if err != nil {
			return fail(fmt.Errorf("embedded Temporal server: %w", err), false)
		}
		defer dev.Stop()
		cfg.HostPort = dev.Address()
		fmt.Fprintf(stderr, "embedded Temporal server on %s (namespace %s): attach with `temporal workflow describe --address %s -w %s`\n", dev.Address(), *namespace, dev.Address(), id)
		fmt.Fprintf(stderr, "Web UI: %s/namespaces/%s/workflows/%s\n", dev.UIAddress(), *namespace, id)
		if c, err = dial(ctx, cfg, false); err != nil {
			return fail(err, false)
		}
		defer c.Close()
		w, err := workers.StartInProcess(c, cfg, registrar()) // both roles, both queues
		if err != nil {
			return fail(err, false)
		}
		defer w.Stop()
	}
	if err := checkSearchAttributes(ctx, c, *namespace); err != nil {
		return fail(err, false)
	}
	start := time.Now()
	run, err := startOrAttach(ctx, c, id, *queue, in, stderr)
	if err != nil {
		return fail(err, false)
	}
	sum, err := follow(ctx, c, run, cfg.HostPort, stderr, log.path != "")
	if err != nil {
		return fail(err, true)
	}
	printSummary(stdout, sum, time.Since(start))
	return nil
}

// dialTimeout bounds connecting to Temporal.
const dialTimeout = 20 * time.Second

// dial connects to Temporal within dialTimeout; remote says the address
// came from --temporal.
func dial(ctx context.Context, cfg workers.Config, remote bool) (client.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if host, _, err := net.SplitHostPort(cfg.HostPort); err != nil {
		return nil, &failure{code: exitBadInput, line: fmt.Sprintf("--temporal %s: not host:port (%v); give the frontend's address, e.g. temporal.example:7233", cfg.HostPort, err), err: err}
	} else if _, err := net.DefaultResolver.LookupHost(dctx, host); err != nil {
		return nil, unreachable(cfg.HostPort, remote, err) // gRPC would say "no children to pick from"
	}
	c, err := workers.Dial(dctx, cfg)
	if err != nil {
		return nil, unreachable(cfg.HostPort, remote, err)
	}
	return c, nil
}

// unreachable says in one line that Temporal did not answer at hostPort
// and what to do.
func unreachable(hostPort string, remote bool, err error) error {
	fix := "the embedded server did not answer; run with -v to see its log"
	if remote {
		fix = "start a Temporal server there (`adaptq dev --port <port>`), correct --temporal, or leave it out to run an embedded server"
	}
	return &failure{code: exitFailure, line: fmt.Sprintf("Temporal at %s: unreachable (%s); %s", hostPort, dialCause(err), fix), err: err}
}

// dialCause is the innermost reason of a failed dial ("connection
// refused", "no such host").
func dialCause(err error) string {
	msg := strings.TrimRight(err.Error(), `")`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// setFlags are the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// follow polls the progress query and draws a bar over the shards (when
// bars) until the workflow ends (following continue-as-new runs), then
// returns its result. A parked shard is printed once, with the command
// that retries it.
func follow(ctx context.Context, c client.Client, run client.WorkflowRun, hostPort string, stderr io.Writer, bars bool) (*workflows.Summary, error) {
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
					return nil, &failure{code: exitFailure, line: fmt.Sprintf("workflow %s was cancelled", run.GetID()), err: r.err}
				}
				return nil, r.err
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
				} else if bar == nil && bars {
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

// budgetGoal describes a budget.
func budgetGoal(g budget.Goal) string {
	if g.TargetBPW > 0 {
		return fmt.Sprintf("%.3f bits/weight (whole file)", g.TargetBPW)
	}
	return fmt.Sprintf("predicted mean KLD ≤ %.5g", g.MaxKLD)
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
	if c := s.Calibration; c != nil {
		fmt.Fprintf(tw, "calibration\t%d windows, %d tokens, %d entries in %.1fs (%.1f tokens/s)\n", c.Windows, c.Tokens, c.Entries, s.CalibrationSecs, float64(c.Tokens)/max(s.CalibrationSecs, 1e-9))
	}
	if im := s.Imatrix; im != nil {
		fmt.Fprintf(tw, "imatrix\t%s (sha256 %s)\n", im.Location, im.SHA256)
	}
	if b := s.Budget; b != nil {
		p := b.Plan
		fmt.Fprintf(tw, "budget\t%s\n", budgetGoal(b.Goal))
		fmt.Fprintf(tw, "budget measured\t%d probes on %d tokens, α %.3f, held-out rank correlation %.3f (%d tensors); %.1f worker-seconds, %.1fs wall (%d shards reused)\n",
			p.Probes, p.ProbeTokens, p.Alpha, p.Spearman, p.HeldOut, b.WorkerSeconds, b.Seconds, b.Reused)
		fmt.Fprintf(tw, "budget predicted\t%.3f bits/weight, mean KLD %.5f (gap ≤ %.3g); plan %s/%s\n", p.BitsPerWeight, p.PredictedKLD, p.Gap, strings.TrimRight(s.Output, "/"), p.Key)
	}
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
	fmt.Fprintf(tw, "report\t%s/%s\n", strings.TrimRight(s.Output, "/"), report.Key)
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
	cmds := make([]string, len(missing))
	for i, n := range missing {
		cmds[i] = fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type Keyword", namespace, n)
	}
	return fmt.Errorf("namespace %s lacks the search attributes %s; register them once: %s", namespace, strings.Join(missing, ", "), strings.Join(cmds, " && "))
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

// embeddedHeartbeat is QuantizeShard's heartbeat timeout on the embedded
// server: after a crash, the shards the dead process was running are
// retried this many seconds after their last heartbeat.
const embeddedHeartbeat = 30

// The embedded server's state: stateFolder in a local output, holding the
// SQLite database stateDB and the lock file stateLock.
const (
	stateFolder = ".adaptq-state"
	stateDB     = "temporal.sqlite"
	stateLock   = "lock"
)

// runID is the default workflow id of a run: the model's name, the recipe
// and a hash of the whole input, so that the same command names the same
// workflow and attaches to it.
func runID(in workflows.QuantizeInput) string {
	b, _ := json.Marshal(in)
	h := sha256.Sum256(b)
	return fmt.Sprintf("adaptq-%s-%s-%s", filepath.Base(strings.TrimRight(in.Model, "/")), in.Recipe, hex.EncodeToString(h[:6]))
}

// localPath is the directory of a local location (a path or file://), or
// "" for any other.
func localPath(loc string) string {
	if p, ok := strings.CutPrefix(loc, "file://"); ok {
		return p
	}
	if strings.Contains(loc, "://") {
		return ""
	}
	return loc
}

// lockState creates the state folder dir and takes its lock, so that two
// processes never share one database; the returned function releases it.
func lockState(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &failure{code: exitFailure, line: fmt.Sprintf("%s: cannot create the state folder (%v); give --state DIR on a writable disk", dir, err), err: err}
	}
	f, err := os.OpenFile(filepath.Join(dir, stateLock), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, &failure{code: exitFailure, line: fmt.Sprintf("%s: cannot open the lock file (%v); give --state DIR on a writable disk", dir, err), err: err}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, &failure{code: exitFailure, line: fmt.Sprintf("%s: another adaptq process uses this state folder (the same run is going on); wait for it to end, or give another --state", dir), err: err}
	}
	return func() { f.Close() }, nil
}

// startOrAttach starts the run id, or attaches to it: a run that is going
// on (started by an earlier command that died, or by another client) is
// followed, a finished one returns its result; a failed, cancelled or
// terminated one is started anew (its finished shards are reused).
func startOrAttach(ctx context.Context, c client.Client, id, queue string, in workflows.QuantizeInput, stderr io.Writer) (client.WorkflowRun, error) {
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
	case err != nil:
		return nil, fmt.Errorf("describe workflow %s: %w", id, err)
	case d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		fmt.Fprintf(stderr, "workflow %s already finished; its result follows (give another --workflow-id to run it again)\n", id)
		return c.GetWorkflow(ctx, id, ""), nil
	case d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		run := c.GetWorkflow(ctx, id, "")
		fmt.Fprintf(stderr, "workflow %s is running (run %s): attached to it\n", id, d.GetWorkflowExecutionInfo().GetExecution().GetRunId())
		return run, nil
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.AttrModel.ValueSet(in.Model), workflows.AttrRecipe.ValueSet(in.Recipe))},
		workflows.QuantizeModel, in)
	if err != nil {
		return nil, fmt.Errorf("start workflow: %w", err)
	}
	fmt.Fprintf(stderr, "workflow %s run %s\n", run.GetID(), run.GetRunID())
	return run, nil
}
