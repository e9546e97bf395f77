// Package workflows holds adaptq's deterministic Temporal orchestration.
// QuantizeModel plans a checkpoint into shards, runs one QuantizeShard
// activity per shard in a bounded sliding window, continues as new before
// the history grows too long, stitches the GGUF and the manifest and then
// evaluates the result in the EvaluateModel child workflow. Workflows pass
// object keys, sizes and checksums — never tensor bytes, never credentials.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/shards"
)

// Task queues: workflows and quantize activities run on TaskQueue,
// evaluation activities on TaskQueue + EvalQueueSuffix, so each worker role
// polls only work it can do.
const (
	TaskQueue       = "adaptq"
	EvalQueueSuffix = "-eval"
)

// Search attributes shown in the Temporal Web UI (Keyword type).
var (
	AttrModel  = temporal.NewSearchAttributeKeyKeyword("AdaptqModel")
	AttrRecipe = temporal.NewSearchAttributeKeyKeyword("AdaptqRecipe")
	AttrPhase  = temporal.NewSearchAttributeKeyKeyword("AdaptqPhase")
)

// SearchAttributeNames lists the search attributes a cluster must register.
func SearchAttributeNames() []string {
	return []string{AttrModel.GetName(), AttrRecipe.GetName(), AttrPhase.GetName()}
}

// Phases of a run, as AdaptqPhase and the progress query report them.
const (
	PhasePlan     = "plan"
	PhaseQuantize = "quantize"
	PhaseStitch   = "stitch"
	PhaseEvaluate = "evaluate"
	PhaseDone     = "done"
	PhaseFailed   = "failed"
)

// ProgressQuery is the name of the query handler that reports Progress.
const ProgressQuery = "progress"

// EvalSpec says how to evaluate the quantized model.
type EvalSpec struct {
	Text     string `json:"text"`               // object location of the text
	Ctx      int    `json:"ctx"`                // window length
	Protocol string `json:"protocol"`           // "full" or "llama.cpp"
	Chunk    int    `json:"chunk,omitempty"`    // windows per activity (default 8)
	Parallel int    `json:"parallel,omitempty"` // chunks in flight (default 4)
	Exact    bool   `json:"exact,omitempty"`    // float32 semantics instead of llama.cpp's integer kernels
}

// QuantizeInput is QuantizeModel's JSON input (the file given to
// `temporal workflow start --input-file`).
type QuantizeInput struct {
	Model       string          `json:"model"`  // checkpoint location
	Output      string          `json:"output"` // output location
	Recipe      string          `json:"recipe"` // named recipe (shards.NamedRecipe: q4_k_m, uniform-q4_k, bitnet, ...)
	Rotation    shards.Rotation `json:"rotation"`
	Optimized   bool            `json:"optimized,omitempty"`
	Compress    bool            `json:"compress,omitempty"`
	Evaluation  *EvalSpec       `json:"evaluation,omitempty"`
	Concurrency int             `json:"concurrency,omitempty"` // shards in flight (default 8)
	// MaxShardsPerRun makes the workflow continue as new after starting
	// this many shards in one run (default 500), besides whenever Temporal
	// suggests it; each run keeps its history far from the limits.
	MaxShardsPerRun int `json:"max_shards_per_run,omitempty"`
	// HeartbeatSeconds is QuantizeShard's heartbeat timeout (default 300):
	// a worker that dies mid-shard is noticed this quickly.
	HeartbeatSeconds int `json:"heartbeat_seconds,omitempty"`
	// Imatrix is the location of an importance-matrix file. PlanModel
	// checks that it exists and is readable; the quantizers do not use it
	// yet.
	Imatrix string `json:"imatrix,omitempty"`
	// State is carried from one run to the next by continue-as-new; a new
	// run leaves it empty.
	State *QuantizeState `json:"state,omitempty"`
}

// QuantizeState is the progress a run hands to the next one.
type QuantizeState struct {
	Plan    activities.PlanOutput `json:"plan"`
	Records []export.ShardRecord  `json:"records"` // by shard index; Key "" = not done
	Started time.Time             `json:"started"`
	Runs    int                   `json:"runs"`
}

// Progress is what the progress query returns.
type Progress struct {
	Phase       string `json:"phase"`
	ShardsDone  int    `json:"shards_done"`
	ShardsTotal int    `json:"shards_total"`
	BytesOut    int64  `json:"bytes_out"`
	Runs        int    `json:"runs"` // continue-as-new generations so far
}

// Summary is QuantizeModel's result: sizes, measured figures and keys.
type Summary struct {
	Model         string         `json:"model"`
	Output        string         `json:"output"`
	Recipe        string         `json:"recipe"`
	Parameters    int64          `json:"parameters"`
	SourceBytes   int64          `json:"source_bytes"`
	Export        export.Summary `json:"export"`
	ShardsReused  int            `json:"shards_reused"`
	MaxRelError   float64        `json:"max_rel_error"`
	Evaluation    *infer.Result  `json:"evaluation,omitempty"`
	Seconds       float64        `json:"seconds"`
	QuantizeSecs  float64        `json:"quantize_seconds"`
	EvaluateSecs  float64        `json:"evaluate_seconds,omitempty"`
	ContinuedRuns int            `json:"continued_runs"`
}

func (in *QuantizeInput) defaults() {
	if in.Concurrency <= 0 {
		in.Concurrency = 8
	}
	if in.MaxShardsPerRun <= 0 {
		in.MaxShardsPerRun = 500
	}
	if in.HeartbeatSeconds <= 0 {
		in.HeartbeatSeconds = 300
	}
}

// shardOptions are QuantizeShard's activity options. A cancelled run waits
// for its running shards to acknowledge the cancellation (they learn of it
// at their next heartbeat; a dead worker's shard times out after the
// heartbeat timeout), so that the run closes, and its output is marked
// incomplete, only after no worker writes to the output any more.
func shardOptions(in *QuantizeInput) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    time.Duration(in.HeartbeatSeconds) * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        20,
			NonRetryableErrorTypes: []string{activities.ErrTypeBadInput},
		},
	}
}

// QuantizeModel is the main workflow: plan, quantize every shard in a
// sliding window, stitch, evaluate.
func QuantizeModel(ctx workflow.Context, in QuantizeInput) (*Summary, error) {
	in.defaults()
	var a *activities.Activities
	recipe, err := activities.Recipe(in.Recipe, in.Rotation, in.Optimized, in.Compress)
	if err != nil {
		return nil, activities.BadInputError(err)
	}
	st := in.State
	prog := &Progress{Phase: PhasePlan}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) { return *prog, nil }); err != nil {
		return nil, err
	}
	setPhase := func(p string) {
		prog.Phase = p
		_ = workflow.UpsertTypedSearchAttributes(ctx, AttrPhase.ValueSet(p))
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrModel.ValueSet(in.Model), AttrRecipe.ValueSet(in.Recipe), AttrPhase.ValueSet(PhasePlan))
	_ = workflow.UpsertMemo(ctx, map[string]any{"output": in.Output, "rotation": in.Rotation.Kind})

	fail := func(err error) (*Summary, error) {
		setPhase(PhaseFailed)
		dctx, _ := workflow.NewDisconnectedContext(ctx)
		dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute,
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 5}})
		reason := "run " + workflow.GetInfo(ctx).WorkflowExecution.ID + " did not finish: " + err.Error()
		if temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled) {
			reason = "run " + workflow.GetInfo(ctx).WorkflowExecution.ID + " was cancelled"
		}
		_ = workflow.ExecuteActivity(dctx, a.MarkIncomplete, in.Output, reason).Get(dctx, nil)
		return nil, err
	}

	if st == nil {
		st = &QuantizeState{Started: workflow.Now(ctx)}
		pctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Minute,
			RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}}})
		pin := activities.PlanInput{Model: in.Model, Output: in.Output, Recipe: recipe, Imatrix: in.Imatrix}
		if ev := in.Evaluation; ev != nil {
			pin.Evaluation = &activities.TextInput{Text: ev.Text, Ctx: ev.Ctx, Protocol: ev.Protocol}
		}
		if err := workflow.ExecuteActivity(pctx, a.PlanModel, pin).Get(ctx, &st.Plan); err != nil {
			return fail(err)
		}
		st.Records = make([]export.ShardRecord, len(st.Plan.Shards))
	}
	total := len(st.Plan.Shards)
	prog.ShardsTotal, prog.Runs = total, st.Runs
	for _, r := range st.Records {
		if r.Key != "" {
			prog.ShardsDone++
			prog.BytesOut += r.Size
		}
	}
	setPhase(PhaseQuantize)

	// The sliding window.
	sctx := workflow.WithActivityOptions(ctx, shardOptions(&in))
	sel := workflow.NewSelector(ctx)
	inflight, started := 0, 0
	var firstErr error
	next := 0
	start := func(i int) {
		f := workflow.ExecuteActivity(sctx, a.QuantizeShard, activities.ShardInput{Model: in.Model, Output: in.Output, PlanKey: st.Plan.PlanKey, Index: i, Recipe: recipe})
		inflight++
		started++
		sel.AddFuture(f, func(f workflow.Future) {
			inflight--
			var rec export.ShardRecord
			if err := f.Get(ctx, &rec); err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("shard %s: %w", st.Plan.Shards[i], err)
				}
				return
			}
			st.Records[i] = rec
			prog.ShardsDone++
			prog.BytesOut += rec.Size
		})
	}
	for {
		stopping := firstErr != nil || started >= in.MaxShardsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
		for !stopping && inflight < in.Concurrency {
			for next < total && st.Records[next].Key != "" {
				next++
			}
			if next >= total {
				break
			}
			start(next)
			next++
			stopping = started >= in.MaxShardsPerRun
		}
		if inflight == 0 {
			break
		}
		sel.Select(ctx)
	}
	if firstErr != nil {
		return fail(firstErr)
	}
	if prog.ShardsDone < total {
		st.Runs++
		in.State = st
		return nil, workflow.NewContinueAsNewError(ctx, QuantizeModel, in)
	}

	setPhase(PhaseStitch)
	stitched := workflow.Now(ctx)
	var sum export.Summary
	tctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 6 * time.Hour, HeartbeatTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}}})
	if err := workflow.ExecuteActivity(tctx, a.StitchModel, activities.StitchInput{Model: in.Model, Output: in.Output,
		PlanKey: st.Plan.PlanKey, Recipe: recipe, Records: st.Records}).Get(ctx, &sum); err != nil {
		return fail(err)
	}
	out := &Summary{Model: in.Model, Output: in.Output, Recipe: in.Recipe, Parameters: st.Plan.Parameters,
		SourceBytes: st.Plan.SourceBytes, Export: sum, ContinuedRuns: st.Runs,
		QuantizeSecs: stitched.Sub(st.Started).Seconds()}
	for _, r := range st.Records {
		if r.Reused {
			out.ShardsReused++
		}
		out.MaxRelError = max(out.MaxRelError, r.MaxRelErr)
	}
	if in.Evaluation != nil {
		setPhase(PhaseEvaluate)
		evStart := workflow.Now(ctx)
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID + "-eval",
		})
		var res infer.Result
		ev := EvalInput{Model: joinLoc(in.Output, sum.GGUFKey), Reference: in.Model, Output: in.Output, Spec: *in.Evaluation}
		if err := workflow.ExecuteChildWorkflow(cctx, EvaluateModel, ev).Get(ctx, &res); err != nil {
			return fail(err)
		}
		out.Evaluation = &res
		out.EvaluateSecs = workflow.Now(ctx).Sub(evStart).Seconds()
	}
	out.Seconds = workflow.Now(ctx).Sub(st.Started).Seconds()
	setPhase(PhaseDone)
	return out, nil
}

// joinLoc appends a key to a location.
func joinLoc(loc, key string) string {
	for len(loc) > 0 && loc[len(loc)-1] == '/' {
		loc = loc[:len(loc)-1]
	}
	return loc + "/" + key
}
