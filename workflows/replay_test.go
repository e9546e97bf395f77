package workflows_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

// Replay tests. testdata/histories holds the event histories of real runs
// (one file per workflow run; a continued-as-new workflow has one file per
// run, a child workflow its own file). TestReplayHistories replays every
// file with the SDK's WorkflowReplayer against the workflow code as it is
// now: a change to QuantizeModel, EvaluateModel or CalibrateModel that
// would make a running workflow take another path (a new activity, a
// reordered step, another timer) fails it. Such a change goes behind
// workflow.GetVersion. TestRecordHistories re-records the files (only for
// new scenarios): go test ./workflows -run TestRecordHistories -record

var record = flag.Bool("record", false, "TestRecordHistories: run every scenario on an embedded Temporal server and rewrite testdata/histories")

const historiesDir = "testdata/histories"

// replayScenarios are the scenarios whose histories must be present. The
// files of a scenario are replay-<scenario>.<run>.json (the workflow id,
// then the run's number in the chain of continue-as-new); a child
// workflow's id is its parent's with a suffix (replay-evaluation-eval).
var replayScenarios = []string{"normal", "continue-as-new", "parked-retried", "cancelled", "evaluation", "calibration", "quantize-calibration"}

// TestReplayHistories replays every recorded history with the current
// workflow code.
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(historiesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range replayScenarios {
		found := false
		for _, f := range files {
			found = found || workflowID(f) == "replay-"+s
		}
		if !found {
			t.Errorf("no history of scenario %q in %s; record it: go test ./workflows -run TestRecordHistories -record", s, historiesDir)
		}
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			if err := replayFile(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// workflowID is the workflow id of a history file: its name up to the
// first dot. The replayer needs it: a child workflow's id derives from it.
func workflowID(path string) string {
	id, _, _ := strings.Cut(filepath.Base(path), ".")
	return id
}

// replayFile replays one history file.
func replayFile(path string) error {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflow(workflows.QuantizeModel)
	r.RegisterWorkflow(workflows.EvaluateModel)
	r.RegisterWorkflow(workflows.CalibrateModel)
	h, err := client.HistoryFromJSON(mustOpen(path), client.HistoryJSONOptions{})
	if err != nil {
		return fmt.Errorf("%s: read history: %w", path, err)
	}
	if len(h.GetEvents()) < 3 {
		return fmt.Errorf("%s: %d events: not a recorded run", path, len(h.GetEvents()))
	}
	opts := worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: workflowID(path), RunID: "replay"}}
	if err := r.ReplayWorkflowHistoryWithOptions(workers.NewSDKLogger(zerolog.Nop()), h, opts); err != nil {
		return fmt.Errorf("%s: replay: %w", path, err)
	}
	return nil
}

func mustOpen(path string) *bytes.Reader {
	b, err := os.ReadFile(path)
	if err != nil {
		return bytes.NewReader(nil)
	}
	return bytes.NewReader(b)
}

// recorder runs scenarios on an embedded Temporal server with an
// in-process worker and the real activities.
type recorder struct {
	c     client.Client
	queue string
	ctx   context.Context
}

// faultQueue is the task queue of the parked scenario.
const faultQueue = "adaptq-replay-fault"

// TestRecordHistories runs every scenario on the fixture model and writes
// its histories into testdata/histories (only with -record).
func TestRecordHistories(t *testing.T) {
	if !*record {
		t.Skip("re-records testdata/histories only with -record")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	attrs := map[string]enumspb.IndexedValueType{}
	for _, n := range workflows.SearchAttributeNames() {
		attrs[n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: -1, NoUI: true, SearchAttributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Stop()
	cfg := workers.Config{HostPort: dev.Address(), Namespace: dev.Namespace(), TaskQueue: "adaptq-replay", Role: workers.RoleAll,
		Logger: zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)}
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two workers: the parked scenario's queue has a shard that fails
	// until an operator retries it.
	for queue, fail := range map[string]string{cfg.TaskQueue: "", faultQueue: "layer-001"} {
		a := &activities.Activities{FailShard: fail}
		qcfg := cfg
		qcfg.TaskQueue = queue
		w, err := workers.StartInProcess(c, qcfg, func(r worker.Registry, role string) error {
			r.RegisterWorkflow(workflows.QuantizeModel)
			r.RegisterWorkflow(workflows.EvaluateModel)
			r.RegisterWorkflow(workflows.CalibrateModel)
			r.RegisterActivity(a)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
	}
	if err := os.MkdirAll(historiesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{c: c, queue: cfg.TaskQueue, ctx: ctx}
	model, _ := filepath.Abs("../testdata/models/stories260k")
	evalText, _ := filepath.Abs("../testdata/text/tinystories-valid-sample.txt")
	calibText, _ := filepath.Abs("../testdata/text/go-calib.txt")
	base := func() workflows.QuantizeInput {
		return workflows.QuantizeInput{Model: model, Output: t.TempDir(), Recipe: "q4_k_m", Concurrency: 3}
	}

	t.Run("normal", func(t *testing.T) {
		in := base()
		rec.quantize(t, "normal", in, nil)
	})
	t.Run("continue-as-new", func(t *testing.T) {
		in := base()
		in.MaxShardsPerRun = 3
		rec.quantize(t, "continue-as-new", in, nil)
	})
	t.Run("parked-retried", func(t *testing.T) {
		in := base()
		in.Recipe = "q8_0"
		in.ShardAttempts = 2
		rec := *rec
		rec.queue = faultQueue
		rec.quantize(t, "parked-retried", in, func(run client.WorkflowRun) {
			rec.waitParked(t, run.GetID(), "layer-001")
			h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: run.GetID(), UpdateName: workflows.UpdateRetryShard,
				Args: []any{workflows.RetryShardRequest{Shard: "layer-001"}}, WaitForStage: client.WorkflowUpdateStageCompleted})
			if err != nil {
				t.Fatal(err)
			}
			var p workflows.Progress
			if err := h.Get(ctx, &p); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("cancelled", func(t *testing.T) {
		in := base()
		in.Recipe = "q6_k"
		in.Concurrency = 1
		rec.quantize(t, "cancelled", in, func(run client.WorkflowRun) {
			rec.waitShards(t, run.GetID(), 1)
			if err := c.CancelWorkflow(ctx, run.GetID(), ""); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("evaluation", func(t *testing.T) {
		in := base()
		in.Recipe = "q8_0"
		in.Evaluation = &workflows.EvalSpec{Text: evalText, Ctx: 256, Protocol: "full", Chunk: 20, Parallel: 2}
		id := rec.quantize(t, "evaluation", in, nil)
		rec.save(t, id+"-eval", "", 1)
	})
	t.Run("quantize-calibration", func(t *testing.T) {
		in := base()
		in.Calibration = &workflows.CalibSpec{Text: calibText, Ctx: 128, Chunks: 6, Chunk: 2, Parallel: 2}
		id := rec.quantize(t, "quantize-calibration", in, nil)
		rec.save(t, id+"-calib", "", 1)
	})
	t.Run("calibration", func(t *testing.T) {
		in := workflows.CalibrateInput{Model: model, Output: t.TempDir(), Spec: workflows.CalibSpec{Text: calibText, Ctx: 128, Chunks: 6, Chunk: 2, Parallel: 2}}
		id := "replay-calibration"
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: rec.queue}, workflows.CalibrateModel, in)
		if err != nil {
			t.Fatal(err)
		}
		var res activities.CalibResult
		if err := run.Get(ctx, &res); err != nil {
			t.Fatal(err)
		}
		rec.saveRuns(t, id, run.GetRunID())
	})
}

// quantize starts QuantizeModel as replay-<name>, calls during (if any)
// while it runs, waits for its end and saves every run's history. It
// returns the workflow id.
func (r *recorder) quantize(t *testing.T, name string, in workflows.QuantizeInput, during func(client.WorkflowRun)) string {
	id := "replay-" + name
	run, err := r.c.ExecuteWorkflow(r.ctx, client.StartWorkflowOptions{ID: id, TaskQueue: r.queue,
		TypedSearchAttributes: temporalSearchAttributes(in)}, workflows.QuantizeModel, in)
	if err != nil {
		t.Fatal(err)
	}
	first := run.GetRunID() // Get follows continue-as-new and moves GetRunID on
	if during != nil {
		during(run)
	}
	var sum workflows.Summary
	err = run.Get(r.ctx, &sum)
	if name == "cancelled" {
		if err == nil {
			t.Fatal("the cancelled run finished")
		}
	} else if err != nil {
		t.Fatal(err)
	}
	r.saveRuns(t, id, first)
	return id
}

// saveRuns saves the history of the run firstRun of id and of every run
// it continued as.
func (r *recorder) saveRuns(t *testing.T, id, firstRun string) {
	runID := firstRun
	for n := 1; runID != ""; n++ {
		runID = r.save(t, id, runID, n)
	}
}

// save writes the history of run runID of id ("": the latest) as
// <id>.<n>.json and returns the run it continued as ("" if none).
func (r *recorder) save(t *testing.T, id, runID string, n int) string {
	it := r.c.GetWorkflowHistory(r.ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s run %s: %v", id, runID, err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: " "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(historiesDir, fmt.Sprintf("%s.%d.json", id, n))
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	last := h.Events[len(h.Events)-1]
	t.Logf("%s: %d events, last %s", path, len(h.Events), last.GetEventType())
	if ca := last.GetWorkflowExecutionContinuedAsNewEventAttributes(); ca != nil {
		return ca.GetNewExecutionRunId()
	}
	return ""
}

// waitParked waits until the progress query lists shard as parked.
func (r *recorder) waitParked(t *testing.T, id, shard string) {
	r.waitProgress(t, id, func(p workflows.Progress) bool {
		for _, s := range p.Parked {
			if s.Shard == shard {
				return true
			}
		}
		return false
	})
}

// waitShards waits until n shards are done.
func (r *recorder) waitShards(t *testing.T, id string, n int) {
	r.waitProgress(t, id, func(p workflows.Progress) bool { return p.ShardsDone >= n })
}

func (r *recorder) waitProgress(t *testing.T, id string, ok func(workflows.Progress) bool) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		v, err := r.c.QueryWorkflow(r.ctx, id, "", workflows.ProgressQuery)
		if err == nil {
			var p workflows.Progress
			if v.Get(&p) == nil && ok(p) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("workflow %s: progress not reached in 5 minutes", id)
}

func temporalSearchAttributes(in workflows.QuantizeInput) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(workflows.AttrModel.ValueSet(in.Model), workflows.AttrRecipe.ValueSet(in.Recipe))
}

// TestReplayDetectsChange: the replayer is not vacuous: a history whose
// recorded commands differ from what the code does (here: the normal
// run's first activity renamed) fails with a nondeterminism error.
func TestReplayDetectsChange(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(historiesDir, "replay-normal.1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"PlanModel"`)) {
		t.Fatal("replay-normal.1.json schedules no PlanModel")
	}
	broken := filepath.Join(t.TempDir(), "replay-normal.1.json")
	if err := os.WriteFile(broken, bytes.Replace(b, []byte(`"PlanModel"`), []byte(`"PlanModelV2"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	err = replayFile(broken)
	if err == nil || !strings.Contains(err.Error(), "nondeterministic") {
		t.Fatalf("a history that schedules another activity replays with %v, want a nondeterminism error", err)
	}
	t.Logf("replay of the altered history: %v", err)
}
