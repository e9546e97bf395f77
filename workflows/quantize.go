package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
)

// quantizeRun is one run of QuantizeModel: the state its query and update
// handlers and its main loop share. Everything a next run needs is in st,
// which continue-as-new carries; the rest lives for this run only.
type quantizeRun struct {
	in     QuantizeInput
	recipe shards.Recipe
	st     *QuantizeState // nil until the plan is made

	phase       string
	paused      bool         // st.Paused while the run lives (pause may come before the plan)
	running     map[int]bool // shard indexes in flight
	startedHere int          // shards this run started (MaxShardsPerRun)
	abortReason string       // set by the abort update

	// work is the parent context of every activity and child workflow;
	// abort cancels it.
	work       workflow.Context
	cancelWork workflow.CancelFunc
	// changed is set whenever something the main loop waits on changes:
	// a shard ended, an operator retried, resumed or aborted.
	changed bool
}

// newQuantizeRun builds a run from its input, registers the progress query
// and the operators' updates, and sets the search attributes and memo.
func newQuantizeRun(ctx workflow.Context, in QuantizeInput) (*quantizeRun, error) {
	if err := in.Validate(); err != nil && workflow.GetVersion(ctx, versionValidate, workflow.DefaultVersion, 1) == 1 {
		return nil, activities.BadInputError(err)
	}
	in.defaults()
	recipe, err := activities.Recipe(in.Recipe, in.Rotation, in.Optimized, in.Compress)
	if err != nil {
		return nil, activities.BadInputError(err)
	}
	if b := in.Budget; b != nil {
		switch err := (budget.Goal{TargetBPW: b.TargetBPW, MaxKLD: b.MaxKLD}).Validate(); {
		case err != nil:
			return nil, activities.BadInputError(err)
		case b.Text == "":
			return nil, activities.BadInputError(errors.New("budget: no probe text"))
		case recipe.Rotation.Enabled():
			return nil, activities.BadInputError(errors.New("budget: the tensors are measured unrotated; a budget does not go with a rotation"))
		}
	}
	r := &quantizeRun{in: in, recipe: recipe, st: in.State, running: map[int]bool{}}
	r.in.State = nil
	if r.st != nil && r.st.Budget != nil {
		r.recipe.Tensors = r.st.Budget.Plan.Types
	}
	r.work, r.cancelWork = workflow.WithCancel(ctx)
	if r.st != nil {
		r.paused = r.st.Paused
	}
	if err := r.registerHandlers(ctx); err != nil {
		return nil, err
	}
	r.phase = PhasePlan
	if r.st != nil {
		r.phase = r.shardPhase()
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrModel.ValueSet(in.Model), AttrRecipe.ValueSet(in.Recipe), AttrPhase.ValueSet(r.phase)); err != nil {
		return nil, fmt.Errorf("search attributes: %w", err)
	}
	if err := workflow.UpsertMemo(ctx, map[string]any{"output": in.Output, "rotation": in.Rotation.Kind}); err != nil {
		return nil, fmt.Errorf("memo: %w", err)
	}
	return r, nil
}

// execute runs the steps in order. New steps go where the comments say.
func (r *quantizeRun) execute(ctx workflow.Context) (*Summary, error) {
	if r.st == nil {
		if err := r.plan(ctx); err != nil {
			return r.fail(ctx, err)
		}
	}
	if err := r.calibrate(ctx); err != nil {
		return r.fail(ctx, err)
	}
	if r.in.Budget != nil && r.st.Budget == nil && workflow.GetVersion(ctx, "budget", workflow.DefaultVersion, 1) == 1 {
		if err := r.budget(ctx); err != nil {
			return r.fail(ctx, err)
		}
	}
	finished, err := r.quantize(ctx)
	if err != nil {
		return r.fail(ctx, err)
	}
	if !finished {
		return nil, r.continueAsNew(ctx)
	}
	sum, err := r.stitch(ctx)
	if err != nil {
		return r.fail(ctx, err)
	}
	out := r.summary(ctx, sum)
	if r.in.Evaluation != nil {
		if err := r.evaluate(ctx, out); err != nil {
			return r.fail(ctx, err)
		}
	}
	out.Seconds = workflow.Now(ctx).Sub(r.st.Started).Seconds()
	r.setPhase(ctx, PhaseDone)
	return out, r.handlersFinished(ctx)
}

// setPhase records the phase for the progress query and AdaptqPhase.
func (r *quantizeRun) setPhase(ctx workflow.Context, p string) {
	if p == r.phase {
		return
	}
	r.phase = p
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrPhase.ValueSet(p))
}

// plan runs PlanModel and starts the state a next run inherits.
func (r *quantizeRun) plan(ctx workflow.Context) error {
	var a *activities.Activities
	st := &QuantizeState{Started: workflow.Now(ctx)}
	pctx := workflow.WithActivityOptions(r.work, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}}})
	in := activities.PlanInput{Model: r.in.Model, Output: r.in.Output, Recipe: r.recipe, Imatrix: r.in.Imatrix}
	if ev := r.in.Evaluation; ev != nil {
		in.Evaluation = &activities.TextInput{Text: ev.Text, Ctx: ev.Ctx, Protocol: ev.Protocol}
	}
	if c := r.in.Calibration; c != nil {
		in.Calibration = &activities.TextInput{Text: c.Text, Ctx: c.Ctx, Protocol: string(infer.ProtocolLlamaCpp)}
	}
	if err := workflow.ExecuteActivity(pctx, a.PlanModel, in).Get(ctx, &st.Plan); err != nil {
		return err
	}
	st.Records = make([]export.ShardRecord, len(st.Plan.Shards))
	r.st = st
	return nil
}

// versionCalibrate marks the runs that know the importance-matrix step
// (calibrate): a run that started before it keeps quantizing without one
// when it replays.
const versionCalibrate = "calibrate"

// calibrate settles the importance matrix the shards quantize with: the
// input's file (whose SHA-256 PlanModel computed), or the one the
// CalibrateModel child workflow collects now, on the evaluation task
// queue, over the model the recipe quantizes. A run continued as new
// inherits it.
func (r *quantizeRun) calibrate(ctx workflow.Context) error {
	if r.st.Imatrix == nil && (r.in.Imatrix != "" || r.in.Calibration != nil) &&
		workflow.GetVersion(ctx, versionCalibrate, workflow.DefaultVersion, 1) == 1 {
		switch {
		case r.in.Calibration != nil:
			r.setPhase(ctx, PhaseCalibrate)
			start := workflow.Now(ctx)
			cctx := workflow.WithChildOptions(r.work, workflow.ChildWorkflowOptions{
				WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID + "-calib",
			})
			var res activities.CalibResult
			in := CalibrateInput{Model: r.in.Model, Output: r.in.Output, Rotation: r.recipe.Rotation, Spec: *r.in.Calibration}
			if err := workflow.ExecuteChildWorkflow(cctx, CalibrateModel, in).Get(ctx, &res); err != nil {
				return err
			}
			r.st.Calibration = &res
			r.st.CalibrationSecs = workflow.Now(ctx).Sub(start).Seconds()
			r.st.Imatrix = &shards.IMatrixRef{Location: joinLoc(r.in.Output, res.IMatrixKey), SHA256: res.SHA256}
		case r.st.Plan.ImatrixSHA256 != "":
			r.st.Imatrix = &shards.IMatrixRef{Location: r.in.Imatrix, SHA256: r.st.Plan.ImatrixSHA256}
		}
	}
	r.recipe.Imatrix = r.st.Imatrix
	return nil
}

// budget measures every shard's tensors on the evaluation queue (all
// shards at once; each measurement is stored under a derived key, so a
// retry reuses it), then allocates the types (PlanBudget) into the state.
func (r *quantizeRun) budget(ctx workflow.Context) error {
	var a *activities.Activities
	r.setPhase(ctx, PhaseBudget)
	b := r.in.Budget
	start := workflow.Now(ctx)
	ectx := workflow.WithActivityOptions(r.work, workflow.ActivityOptions{
		TaskQueue:           workflow.GetInfo(ctx).TaskQueueName + EvalQueueSuffix,
		StartToCloseTimeout: 6 * time.Hour, HeartbeatTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}}})
	var prep activities.EvalPrep
	if err := workflow.ExecuteActivity(ectx, a.PrepareEval, activities.EvalPrepInput{Reference: r.in.Model, Text: b.Text,
		Output: r.in.Output, Ctx: b.Ctx, Protocol: string(infer.ProtocolFull)}).Get(ctx, &prep); err != nil {
		return fmt.Errorf("budget text: %w", err)
	}
	pr := activities.BudgetProbe{IDsKey: prep.IDsKey, Ctx: b.Ctx, BOS: prep.BOS, Windows: b.Windows, AlphaEvery: b.AlphaEvery, Optimized: r.in.Optimized,
		Imatrix: r.recipe.Imatrix}
	futures := make([]workflow.Future, len(r.st.Plan.Shards))
	for i := range futures {
		futures[i] = workflow.ExecuteActivity(ectx, a.MeasureBudget, activities.MeasureInput{Model: r.in.Model, Output: r.in.Output,
			PlanKey: r.st.Plan.PlanKey, Index: i, Probe: pr})
	}
	bs := &BudgetState{Goal: budget.Goal{TargetBPW: b.TargetBPW, MaxKLD: b.MaxKLD}}
	var keys []string
	for i, f := range futures {
		var mo activities.MeasureOutput
		if err := f.Get(ctx, &mo); err != nil {
			return fmt.Errorf("budget: measure shard %s: %w", r.st.Plan.Shards[i], err)
		}
		keys = append(keys, mo.Key)
		bs.WorkerSeconds += mo.Seconds
		if mo.Reused {
			bs.Reused++
		}
	}
	pctx := workflow.WithActivityOptions(r.work, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}}})
	in := activities.PlanBudgetInput{Model: r.in.Model, Output: r.in.Output, Measurements: keys,
		Goal: bs.Goal}
	if err := workflow.ExecuteActivity(pctx, a.PlanBudget, in).Get(ctx, &bs.Plan); err != nil {
		return fmt.Errorf("budget: %w", err)
	}
	bs.Seconds = workflow.Now(ctx).Sub(start).Seconds()
	r.st.Budget = bs
	r.recipe.Tensors = bs.Plan.Types
	return nil
}

// quantize fills the window of shards until every shard is done (true),
// or until this run should continue as new (false). It waits, without
// starting shards, while the run is paused or the shards left are parked.
func (r *quantizeRun) quantize(ctx workflow.Context) (bool, error) {
	for {
		if r.abortReason == "" {
			r.fillWindow(ctx)
		}
		r.setPhase(ctx, r.shardPhase())
		if len(r.running) == 0 {
			switch {
			case r.abortReason != "":
				return false, errors.New("aborted")
			case r.shardsDone() == len(r.st.Records):
				r.paused = false // a pause stops shards from starting; none is left
				return true, nil
			case r.startedHere >= r.in.MaxShardsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested():
				return false, nil
			}
		}
		r.changed = false
		err := workflow.Await(ctx, func() bool {
			return r.changed || len(r.running) == 0 && workflow.GetInfo(ctx).GetContinueAsNewSuggested()
		})
		if err != nil {
			// Cancelled: the running shards learn of it at their next
			// heartbeat; the run closes once they stopped writing.
			dctx, _ := workflow.NewDisconnectedContext(ctx)
			_ = workflow.Await(dctx, func() bool { return len(r.running) == 0 })
			return false, err
		}
	}
}

// fillWindow starts shards in plan order, skipping the done, running and
// parked ones, until the window is full. A paused run starts none.
func (r *quantizeRun) fillWindow(ctx workflow.Context) {
	if r.paused {
		return
	}
	for i := range r.st.Records {
		if len(r.running) >= r.in.Concurrency || r.startedHere >= r.in.MaxShardsPerRun ||
			workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			return
		}
		if r.st.Records[i].Key != "" || r.running[i] || r.parkedAt(i) >= 0 {
			continue
		}
		r.startShard(ctx, i)
	}
}

// startShard starts QuantizeShard for shard i; a coroutine records how it
// ended.
func (r *quantizeRun) startShard(ctx workflow.Context, i int) {
	var a *activities.Activities
	r.running[i] = true
	r.startedHere++
	in := activities.ShardInput{Model: r.in.Model, Output: r.in.Output, PlanKey: r.st.Plan.PlanKey, Index: i,
		Recipe: r.shardRecipe(i), Retries: r.st.Retried[i].Count}
	f := workflow.ExecuteActivity(workflow.WithActivityOptions(r.work, shardOptions(&r.in)), a.QuantizeShard, in)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var rec export.ShardRecord
		err := f.Get(gctx, &rec)
		r.shardEnded(gctx, i, rec, err)
	})
}

// shardEnded records a finished shard, or parks a failed one. A shard
// cancelled because the run stops stays to do.
func (r *quantizeRun) shardEnded(ctx workflow.Context, i int, rec export.ShardRecord, err error) {
	delete(r.running, i)
	r.changed = true
	switch {
	case err == nil:
		r.st.Records[i] = rec
	case r.abortReason != "" || temporal.IsCanceledError(err):
	default:
		r.park(ctx, i, err)
	}
}

// park sets shard i aside with its last error, in index order.
func (r *quantizeRun) park(ctx workflow.Context, i int, err error) {
	p := ParkedShard{Index: i, Shard: r.st.Plan.Shards[i], Error: lastError(err), At: workflow.Now(ctx), Type: r.st.Retried[i].Type}
	workflow.GetLogger(ctx).Warn("shard parked: its attempts ran out; retry it with the retry-shard update",
		"shard", p.Shard, "error", p.Error)
	at := len(r.st.Parked)
	for at > 0 && r.st.Parked[at-1].Index > i {
		at--
	}
	r.st.Parked = append(r.st.Parked, ParkedShard{})
	copy(r.st.Parked[at+1:], r.st.Parked[at:])
	r.st.Parked[at] = p
}

// lastError is the message of the error that ended an activity's last
// attempt (without the activity error's envelope), at most 2000 bytes.
func lastError(err error) string {
	var ae *temporal.ActivityError
	if errors.As(err, &ae) && errors.Unwrap(ae) != nil {
		err = errors.Unwrap(ae)
	}
	msg := err.Error()
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		msg = app.Message()
	}
	if len(msg) > 2000 {
		msg = msg[:2000] + "…"
	}
	return msg
}

// parkedAt returns the position of shard i in st.Parked, or -1.
func (r *quantizeRun) parkedAt(i int) int {
	for j, p := range r.st.Parked {
		if p.Index == i {
			return j
		}
	}
	return -1
}

// shardRecipe is the recipe of shard i: the run's, or the type an
// operator asked for.
func (r *quantizeRun) shardRecipe(i int) shards.Recipe {
	if t := r.st.Retried[i].Type; t != "" {
		if typ, err := quant.ParseType(t); err == nil { // validated by retry-shard
			return r.recipe.WithType(typ)
		}
	}
	return r.recipe.ForShard(shardOf(r.st.Plan.Shards[i]))
}

// shardOf names a plan's shard as shards.Shard.Writes needs it: its name
// and layer ("layer-007" is layer 7; "embed" and "head" have none).
func shardOf(name string) shards.Shard {
	s := shards.Shard{Name: name, Layer: -1}
	var l int
	if _, err := fmt.Sscanf(name, "layer-%d", &l); err == nil {
		s.Layer = l
	}
	return s
}

// shardPhase is the phase while shards are to do.
func (r *quantizeRun) shardPhase() string {
	switch {
	case len(r.st.Parked) > 0:
		return PhaseAttention
	case r.paused:
		return PhasePaused
	}
	return PhaseQuantize
}

// shardsDone counts the finished shards.
func (r *quantizeRun) shardsDone() int {
	n := 0
	for _, rec := range r.st.Records {
		if rec.Key != "" {
			n++
		}
	}
	return n
}

// continueAsNew hands the state to a next run.
func (r *quantizeRun) continueAsNew(ctx workflow.Context) error {
	if err := r.handlersFinished(ctx); err != nil {
		return err
	}
	r.st.Runs++
	r.st.Paused = r.paused
	next := r.in
	next.State = r.st
	return workflow.NewContinueAsNewError(ctx, QuantizeModel, next)
}

// handlersFinished waits until no update handler is running, so that a
// run never ends in the middle of one.
func (r *quantizeRun) handlersFinished(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
}

// stitch writes model.gguf and manifest.parquet from the shard records.
func (r *quantizeRun) stitch(ctx workflow.Context) (export.Summary, error) {
	var a *activities.Activities
	r.setPhase(ctx, PhaseStitch)
	var sum export.Summary
	tctx := workflow.WithActivityOptions(r.work, workflow.ActivityOptions{StartToCloseTimeout: 6 * time.Hour, HeartbeatTimeout: 10 * time.Minute,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 10, NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}}})
	in := activities.StitchInput{Model: r.in.Model, Output: r.in.Output, PlanKey: r.st.Plan.PlanKey, Recipe: r.recipe, Records: r.st.Records}
	err := workflow.ExecuteActivity(tctx, a.StitchModel, in).Get(ctx, &sum)
	return sum, err
}

// summary is the run's result before the evaluation.
func (r *quantizeRun) summary(ctx workflow.Context, sum export.Summary) *Summary {
	out := &Summary{Model: r.in.Model, Output: r.in.Output, Recipe: r.in.Recipe, Parameters: r.st.Plan.Parameters,
		SourceBytes: r.st.Plan.SourceBytes, Export: sum, ContinuedRuns: r.st.Runs,
		QuantizeSecs: workflow.Now(ctx).Sub(r.st.Started).Seconds(), ShardsRetried: len(r.st.Retried),
		Imatrix: r.st.Imatrix, Calibration: r.st.Calibration, CalibrationSecs: r.st.CalibrationSecs,
		Budget: r.st.Budget}
	for _, rec := range r.st.Records {
		if rec.Reused {
			out.ShardsReused++
		}
		out.MaxRelError = max(out.MaxRelError, rec.MaxRelErr)
	}
	return out
}

// evaluate runs the EvaluateModel child workflow on the stitched GGUF.
func (r *quantizeRun) evaluate(ctx workflow.Context, out *Summary) error {
	r.setPhase(ctx, PhaseEvaluate)
	start := workflow.Now(ctx)
	cctx := workflow.WithChildOptions(r.work, workflow.ChildWorkflowOptions{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID + "-eval",
	})
	var res infer.Result
	ev := EvalInput{Model: joinLoc(r.in.Output, out.Export.GGUFKey), Reference: r.in.Model, Output: r.in.Output, Spec: *r.in.Evaluation}
	if err := workflow.ExecuteChildWorkflow(cctx, EvaluateModel, ev).Get(ctx, &res); err != nil {
		return err
	}
	out.Evaluation = &res
	out.EvaluateSecs = workflow.Now(ctx).Sub(start).Seconds()
	return nil
}

// fail ends the run: it marks the output incomplete (from a context that a
// cancellation does not reach) and returns the error, or the operator's
// abort.
func (r *quantizeRun) fail(ctx workflow.Context, err error) (*Summary, error) {
	var a *activities.Activities
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	reason := "run " + id + " did not finish: " + err.Error()
	switch {
	case r.abortReason != "":
		err = temporal.NewNonRetryableApplicationError("run "+id+" was aborted by an operator: "+r.abortReason, ErrTypeAborted, nil)
		reason = err.Error()
		r.setPhase(ctx, PhaseAborted)
	case temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled):
		reason = "run " + id + " was cancelled"
		r.setPhase(ctx, PhaseFailed)
	default:
		r.setPhase(ctx, PhaseFailed)
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 5}})
	_ = workflow.ExecuteActivity(dctx, a.MarkIncomplete, r.in.Output, reason).Get(dctx, nil)
	return nil, err
}

// shardOptions are QuantizeShard's activity options. A cancelled run waits
// for its running shards to acknowledge the cancellation (they learn of it
// at their next heartbeat; a dead worker's shard times out after the
// heartbeat timeout), so that the run closes, and its output is marked
// incomplete, only after no worker writes to the output any more. After
// ShardAttempts failed attempts (or one bad-input failure) the shard
// parks.
func shardOptions(in *QuantizeInput) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    time.Duration(in.HeartbeatSeconds) * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        int32(in.ShardAttempts),
			NonRetryableErrorTypes: []string{activities.ErrTypeBadInput},
		},
	}
}
