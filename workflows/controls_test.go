package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
)

// shardCall is one QuantizeShard call a fake run saw.
type shardCall struct {
	in activities.ShardInput
	at time.Time // on the workflow clock
}

// fakeRun is QuantizeModel in the SDK's test environment with mocked
// activities: n shards named s000…, each taking shardTime on the workflow
// clock, failing (non-retryably) whenever fail says so.
type fakeRun struct {
	env *testsuite.TestWorkflowEnvironment
	t   *testing.T

	mu         sync.Mutex
	calls      []shardCall
	incomplete []string // MarkIncomplete reasons
	stitched   []export.ShardRecord
}

func newFakeRun(t *testing.T, n int, shardTime time.Duration, fail func(activities.ShardInput) bool) *fakeRun {
	env, a := newEnv(t)
	f := &fakeRun{env: env, t: t}
	env.OnActivity(a.PlanModel, mock.Anything, mock.Anything).Return(func(ctx context.Context, p activities.PlanInput) (activities.PlanOutput, error) {
		po := activities.PlanOutput{PlanKey: "plan.json", Layers: n - 2}
		for i := range n {
			po.Shards = append(po.Shards, fmt.Sprintf("s%03d", i))
		}
		return po, nil
	})
	env.OnActivity(a.QuantizeShard, mock.Anything, mock.Anything).After(shardTime).Return(func(ctx context.Context, in activities.ShardInput) (export.ShardRecord, error) {
		f.mu.Lock()
		f.calls = append(f.calls, shardCall{in: in, at: env.Now()})
		f.mu.Unlock()
		if fail != nil && fail(in) {
			return export.ShardRecord{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("shard s%03d: made to fail", in.Index), "TestFault", nil)
		}
		return export.ShardRecord{Shard: fmt.Sprintf("s%03d", in.Index), Key: fmt.Sprintf("shards/s%03d-%s", in.Index, in.Recipe.Linear), Size: 100}, nil
	})
	env.OnActivity(a.StitchModel, mock.Anything, mock.Anything).Return(func(ctx context.Context, s activities.StitchInput) (export.Summary, error) {
		f.mu.Lock()
		f.stitched = s.Records
		f.mu.Unlock()
		return export.Summary{Tensors: len(s.Records), GGUFKey: "model.gguf"}, nil
	})
	env.OnActivity(a.MarkIncomplete, mock.Anything, mock.Anything, mock.Anything).Return(func(ctx context.Context, out, reason string) error {
		f.mu.Lock()
		f.incomplete = append(f.incomplete, reason)
		f.mu.Unlock()
		return nil
	})
	return f
}

// at runs fn at workflow time d.
func (f *fakeRun) at(d time.Duration, fn func()) { f.env.RegisterDelayedCallback(fn, d) }

// progress queries the run.
func (f *fakeRun) progress() Progress {
	f.t.Helper()
	v, err := f.env.QueryWorkflow(ProgressQuery)
	if err != nil {
		f.t.Fatalf("progress query: %v", err)
	}
	var p Progress
	if err := v.Get(&p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// updateOutcome is how an update ended.
type updateOutcome struct {
	rejected error
	err      error
	progress Progress
	done     bool
}

// update sends an update; its outcome is filled in when the workflow has
// handled it (check it in a later callback or after the run).
func (f *fakeRun) update(name string, args ...any) *updateOutcome {
	o := &updateOutcome{}
	f.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", name, time.Now().UnixNano()), &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) { o.rejected, o.done = err, true },
		OnComplete: func(v any, err error) {
			o.err, o.done = err, true
			if p, ok := v.(Progress); ok {
				o.progress = p
			}
		},
	}, args...)
	return o
}

// accepted fails the test unless the update was accepted and completed.
func (o *updateOutcome) accepted(t *testing.T, what string) {
	t.Helper()
	if !o.done || o.rejected != nil || o.err != nil {
		t.Errorf("%s: done %v, rejected %v, error %v", what, o.done, o.rejected, o.err)
	}
}

// rejectedWith fails the test unless the update was rejected with an
// error holding want.
func (o *updateOutcome) rejectedWith(t *testing.T, what, want string) {
	t.Helper()
	if !o.done || o.rejected == nil || !strings.Contains(o.rejected.Error(), want) {
		t.Errorf("%s: want a rejection saying %q, got done %v, rejected %v, error %v", what, want, o.done, o.rejected, o.err)
		return
	}
	t.Logf("%s rejected: %v", what, o.rejected)
}

// callsOf returns the QuantizeShard calls of shard i.
func (f *fakeRun) callsOf(i int) []shardCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []shardCall
	for _, c := range f.calls {
		if c.in.Index == i {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeRun) result() (*Summary, error) {
	f.t.Helper()
	if !f.env.IsWorkflowCompleted() {
		f.t.Fatal("the workflow did not complete")
	}
	if err := f.env.GetWorkflowError(); err != nil {
		return nil, err
	}
	var s Summary
	if err := f.env.GetWorkflowResult(&s); err != nil {
		f.t.Fatal(err)
	}
	return &s, nil
}

// TestParkAndRetryShard: a shard that fails parks; the other shards go
// on; the run waits in phase attention with the shard and its error in the
// progress query; retry-shard rejects an unknown shard, a shard that is
// not parked and a bad type; retrying the parked shard finishes the run.
func TestParkAndRetryShard(t *testing.T) {
	f := newFakeRun(t, 6, 10*time.Second, func(in activities.ShardInput) bool { return in.Index == 2 && in.Retries == 0 })
	var parked Progress
	var unknown, notParked, badType, sameType, retry *updateOutcome
	f.at(5*time.Minute, func() {
		parked = f.progress()
		unknown = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s999"})
		notParked = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s001"})
		badType = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s002", Type: "q9_z"})
		sameType = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s002", Type: "q8_0"})
		retry = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s002"})
	})
	f.env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q8_0", Concurrency: 2})
	sum, err := f.result()
	if err != nil {
		t.Fatal(err)
	}
	if parked.Phase != PhaseAttention || parked.ShardsDone != 5 || parked.ShardsRunning != 0 || len(parked.Parked) != 1 ||
		parked.Parked[0].Shard != "s002" || !strings.Contains(parked.Parked[0].Error, "made to fail") {
		t.Fatalf("while parked: %+v", parked)
	}
	unknown.rejectedWith(t, "retry of an unknown shard", `no shard "s999"`)
	notParked.rejectedWith(t, "retry of a done shard", "shard s001 is done, not parked")
	badType.rejectedWith(t, "retry with an unknown type", `unknown type "q9_z"`)
	sameType.rejectedWith(t, "retry with the recipe's own type", "already uses Q8_0")
	retry.accepted(t, "retry-shard s002")
	if len(retry.progress.Parked) != 0 || retry.progress.Phase != PhaseQuantize {
		t.Errorf("retry-shard answered %+v", retry.progress)
	}
	if c := f.callsOf(2); len(c) != 2 || c[1].in.Retries != 1 || c[1].at.Sub(c[0].at) < 4*time.Minute {
		t.Errorf("shard 2 calls %+v", c)
	}
	if sum.ShardsRetried != 1 || len(f.stitched) != 6 || f.stitched[2].Key == "" {
		t.Errorf("summary %+v, stitched %+v", sum, f.stitched)
	}
	if p := f.progress(); p.Phase != PhaseDone || len(p.Parked) != 0 {
		t.Errorf("after the run: %+v", p)
	}
}

// TestRetryShardWithType: retry-shard with a type quantizes that shard's
// tensors with it under another shard key; the other shards keep the
// recipe.
func TestRetryShardWithType(t *testing.T) {
	f := newFakeRun(t, 4, time.Second, func(in activities.ShardInput) bool { return in.Index == 1 && in.Retries == 0 })
	var retry *updateOutcome
	f.at(time.Minute, func() { retry = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s001", Type: "Q8_0"}) })
	f.env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q4_k"})
	if _, err := f.result(); err != nil {
		t.Fatal(err)
	}
	retry.accepted(t, "retry-shard s001 type Q8_0")
	c := f.callsOf(1)
	if len(c) != 2 {
		t.Fatalf("shard 1 ran %d times", len(c))
	}
	first, again := c[0].in.Recipe, c[1].in.Recipe
	if first.Linear != quant.Q4_K || again.Linear != quant.Q8_0 || again.Output != quant.Q8_0 || again.Embed != quant.Q8_0 {
		t.Errorf("recipes: first %+v, retry %+v", first, again)
	}
	if other := f.callsOf(2); len(other) != 1 || other[0].in.Recipe.Linear != quant.Q4_K {
		t.Errorf("shard 2's recipe changed: %+v", other)
	}
	p := &shards.Plan{SourceID: "src", Shards: []shards.Shard{{Name: "s001", Tensors: []string{"a", "b"}}}}
	if k1, k2 := p.Key(p.Shards[0], first), p.Key(p.Shards[0], again); k1 == k2 {
		t.Errorf("the retried shard keeps its key %s", k1)
	}
	if f.stitched[1].Key != "shards/s001-Q8_0" {
		t.Errorf("stitched record %+v", f.stitched[1])
	}
}

// TestPauseResume: pause stops the starting of new shards (the running
// ones finish), the phase is paused, pause and resume are rejected when
// they mean nothing, and resume finishes the run.
func TestPauseResume(t *testing.T) {
	f := newFakeRun(t, 6, 10*time.Second, nil)
	var pause, again, resume, resumeAgain *updateOutcome
	var paused Progress
	f.at(15*time.Second, func() { pause = f.update(UpdatePause) })
	f.at(16*time.Second, func() { again = f.update(UpdatePause) })
	f.at(10*time.Minute, func() {
		paused = f.progress()
		resume = f.update(UpdateResume)
	})
	f.at(10*time.Minute+time.Second, func() { resumeAgain = f.update(UpdateResume) })
	f.env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q8_0", Concurrency: 2})
	if _, err := f.result(); err != nil {
		t.Fatal(err)
	}
	pause.accepted(t, "pause")
	if !pause.progress.Paused || pause.progress.Phase != PhasePaused {
		t.Errorf("pause answered %+v", pause.progress)
	}
	again.rejectedWith(t, "a second pause", "already paused")
	resume.accepted(t, "resume")
	resumeAgain.rejectedWith(t, "a second resume", "not paused")
	if paused.Phase != PhasePaused || !paused.Paused || paused.ShardsDone != 4 || paused.ShardsRunning != 0 {
		t.Errorf("while paused: %+v", paused)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		// Shards 0-3 started before the pause (0 s and 10 s); 4 and 5
		// only after the resume at 10 min.
		if c.in.Index >= 4 && c.at.Sub(f.calls[0].at) < 10*time.Minute {
			t.Errorf("shard %d ran at %v, while paused", c.in.Index, c.at.Sub(f.calls[0].at))
		}
	}
	if len(f.calls) != 6 {
		t.Errorf("%d shard calls, want 6", len(f.calls))
	}
	if p := f.progress(); p.Paused {
		t.Errorf("finished run still paused: %+v", p)
	}
}

// TestAbort: abort is rejected without a reason; with one it cancels the
// running shards, marks the output incomplete with the reason and fails
// the run with ErrTypeAborted; a second abort is rejected.
func TestAbort(t *testing.T) {
	f := newFakeRun(t, 6, time.Hour, nil)
	var noReason, abort, again *updateOutcome
	f.at(time.Minute, func() {
		noReason = f.update(UpdateAbort, AbortRequest{Reason: "  "})
		abort = f.update(UpdateAbort, AbortRequest{Reason: "wrong recipe"})
		again = f.update(UpdateAbort, AbortRequest{Reason: "twice"})
	})
	t0 := f.env.Now()
	f.env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q8_0", Concurrency: 2})
	if d := f.env.Now().Sub(t0); d >= time.Hour {
		t.Errorf("the aborted run waited %v for its hour-long shards", d)
	}
	_, err := f.result()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeAborted || !strings.Contains(err.Error(), "wrong recipe") {
		t.Fatalf("want an %s error naming the reason, got %v", ErrTypeAborted, err)
	}
	noReason.rejectedWith(t, "abort without a reason", "abort needs a reason")
	abort.accepted(t, "abort")
	again.rejectedWith(t, "a second abort", "already being aborted")
	if len(f.incomplete) != 1 || !strings.Contains(f.incomplete[0], "aborted by an operator: wrong recipe") {
		t.Errorf("MarkIncomplete reasons %q", f.incomplete)
	}
	if p := f.progress(); p.Phase != PhaseAborted || p.AbortReason != "wrong recipe" {
		t.Errorf("after the abort: %+v", p)
	}
	if len(f.stitched) != 0 {
		t.Error("an aborted run stitched")
	}
}

// TestAbortParked: a run waiting on a parked shard is aborted.
func TestAbortParked(t *testing.T) {
	f := newFakeRun(t, 3, time.Second, func(in activities.ShardInput) bool { return in.Index == 0 })
	var abort *updateOutcome
	f.at(time.Hour, func() { abort = f.update(UpdateAbort, AbortRequest{Reason: "give up"}) })
	f.env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q8_0"})
	_, err := f.result()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrTypeAborted {
		t.Fatalf("want %s, got %v", ErrTypeAborted, err)
	}
	abort.accepted(t, "abort of a parked run")
}

// TestControlsAfterShards: once every shard is done, the shard controls
// are rejected for what they are.
func TestControlsAfterShards(t *testing.T) {
	env, a := newEnv(t)
	env.OnActivity(a.PlanModel, mock.Anything, mock.Anything).Return(activities.PlanOutput{PlanKey: "p", Shards: []string{"s000"}}, nil)
	env.OnActivity(a.QuantizeShard, mock.Anything, mock.Anything).Return(export.ShardRecord{Shard: "s000", Key: "k"}, nil)
	env.OnActivity(a.StitchModel, mock.Anything, mock.Anything).After(time.Hour).Return(export.Summary{GGUFKey: "model.gguf"}, nil)
	f := &fakeRun{env: env, t: t}
	var pause, resume, retry *updateOutcome
	f.at(time.Minute, func() {
		pause = f.update(UpdatePause)
		resume = f.update(UpdateResume)
		retry = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s000"})
	})
	env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q8_0"})
	if _, err := f.result(); err != nil {
		t.Fatal(err)
	}
	pause.rejectedWith(t, "pause while stitching", "past its shards (phase stitch)")
	resume.rejectedWith(t, "resume while stitching", "past its shards")
	retry.rejectedWith(t, "retry while stitching", "past its shards")
}

// TestParkedPausedContinueAsNew: a parked shard and a pause are carried by
// continue-as-new: the next run starts waiting, lists the parked shard,
// and finishes after resume and retry-shard.
func TestParkedPausedContinueAsNew(t *testing.T) {
	fail := func(in activities.ShardInput) bool { return in.Index == 1 && in.Retries == 0 }
	in := QuantizeInput{Model: "m", Output: "o", Recipe: "uniform-q8_0", Concurrency: 3, MaxShardsPerRun: 3}
	f := newFakeRun(t, 6, 10*time.Second, fail)
	var pause *updateOutcome
	f.at(5*time.Second, func() { pause = f.update(UpdatePause) })
	f.env.ExecuteWorkflow(QuantizeModel, in)
	pause.accepted(t, "pause")
	next := continuedInput(t, f.env)
	st := next.State
	if st == nil || !st.Paused || len(st.Parked) != 1 || st.Parked[0].Shard != "s001" || st.Records[0].Key == "" || st.Records[2].Key == "" {
		t.Fatalf("state carried: %+v", st)
	}

	// The next run: it starts nothing until an operator acts.
	f = newFakeRun(t, 6, 10*time.Second, fail)
	var waiting Progress
	var resume, retry *updateOutcome
	var acted time.Time
	f.at(time.Hour, func() {
		acted = f.env.Now()
		waiting = f.progress()
		resume = f.update(UpdateResume)
		retry = f.update(UpdateRetryShard, RetryShardRequest{Shard: "s001"})
	})
	f.env.ExecuteWorkflow(QuantizeModel, next)
	if waiting.Phase != PhaseAttention || !waiting.Paused || len(waiting.Parked) != 1 || waiting.ShardsDone != 2 || waiting.Runs != 1 {
		t.Fatalf("next run while waiting: %+v", waiting)
	}
	for _, c := range f.calls {
		if c.at.Before(acted) {
			t.Errorf("shard %d ran before the operator resumed the run", c.in.Index)
		}
	}
	resume.accepted(t, "resume")
	retry.accepted(t, "retry-shard")
	// Shards 1, 3 and 4 fill this run's three starts; one more run does 5.
	next = continuedInput(t, f.env)
	f = newFakeRun(t, 6, 10*time.Second, fail)
	f.env.ExecuteWorkflow(QuantizeModel, next)
	sum, err := f.result()
	if err != nil {
		t.Fatal(err)
	}
	if sum.ContinuedRuns != 2 || sum.ShardsRetried != 1 || len(f.stitched) != 6 {
		t.Errorf("summary %+v", sum)
	}
	for i, r := range f.stitched {
		if r.Key == "" {
			t.Errorf("shard %d not done", i)
		}
	}
}

// continuedInput returns the input of the run the finished one continued
// as.
func continuedInput(t *testing.T, env *testsuite.TestWorkflowEnvironment) QuantizeInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next QuantizeInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	return next
}
