package workflows

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/quant"
)

// registerHandlers registers the progress query and the operators'
// updates. Validators only read the state; a rejected update leaves no
// trace in the history.
func (r *quantizeRun) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (Progress, error) { return r.progress(), nil },
		workflow.QueryHandlerOptions{Description: "phase, shard counts, parked shards with their errors, paused"}); err != nil {
		return err
	}
	updates := []struct {
		name, desc         string
		handler, validator any
	}{
		{UpdateRetryShard, `retry a parked shard: {"shard": "layer-007", "type": "q8_0" (optional)}`, r.retryShard, r.validateRetryShard},
		{UpdateAbort, `stop the run and mark its output incomplete: {"reason": "…"}`, r.abort, r.validateAbort},
		{UpdatePause, "start no new shard until resume (running shards finish)", r.pause, r.validatePause},
		{UpdateResume, "start shards again after pause", r.resume, r.validateResume},
	}
	for _, u := range updates {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, u.handler,
			workflow.UpdateHandlerOptions{Validator: u.validator, Description: u.desc}); err != nil {
			return fmt.Errorf("update %s: %w", u.name, err)
		}
	}
	return nil
}

// progress is the progress query's answer.
func (r *quantizeRun) progress() Progress {
	p := Progress{Phase: r.phase, ShardsRunning: len(r.running), Paused: r.paused, AbortReason: r.abortReason}
	if r.st == nil {
		return p
	}
	p.ShardsTotal, p.Runs = len(r.st.Records), r.st.Runs
	for _, rec := range r.st.Records {
		if rec.Key != "" {
			p.ShardsDone++
			p.BytesOut += rec.Size
		}
	}
	p.Parked = append([]ParkedShard(nil), r.st.Parked...)
	return p
}

// shardStage says whether the run is still at its shards (planning
// included when beforePlan), the only time shard controls apply.
func (r *quantizeRun) shardStage(action string, beforePlan bool) error {
	if r.abortReason != "" {
		return fmt.Errorf("cannot %s: the run is being aborted (%s)", action, r.abortReason)
	}
	switch r.phase {
	case PhaseQuantize, PhaseAttention, PhasePaused:
		return nil
	case PhasePlan:
		if beforePlan {
			return nil
		}
		return fmt.Errorf("cannot %s: the run is still planning its shards", action)
	}
	return fmt.Errorf("cannot %s: the run is past its shards (phase %s)", action, r.phase)
}

// shardIndex finds a shard by name.
func (r *quantizeRun) shardIndex(name string) (int, error) {
	if name == "" {
		return 0, errors.New(`retry-shard needs a shard: {"shard": "layer-007"}`)
	}
	for i, s := range r.st.Plan.Shards {
		if s == name {
			return i, nil
		}
	}
	names := r.st.Plan.Shards
	if len(names) > 6 {
		names = append(append(append([]string(nil), names[:3]...), "…"), names[len(names)-2:]...)
	}
	return 0, fmt.Errorf("no shard %q in this run (its %d shards: %s)", name, len(r.st.Plan.Shards), strings.Join(names, ", "))
}

// shardState names what shard i is doing, for messages.
func (r *quantizeRun) shardState(i int) string {
	switch {
	case r.st.Records[i].Key != "":
		return "done"
	case r.running[i]:
		return "running"
	case r.parkedAt(i) >= 0:
		return "parked"
	}
	return "waiting to start"
}

func (r *quantizeRun) validateRetryShard(ctx workflow.Context, req RetryShardRequest) error {
	if err := r.shardStage("retry a shard", false); err != nil {
		return err
	}
	i, err := r.shardIndex(req.Shard)
	if err != nil {
		return err
	}
	if r.parkedAt(i) < 0 {
		return fmt.Errorf("shard %s is %s, not parked: only a parked shard can be retried", req.Shard, r.shardState(i))
	}
	if req.Type == "" {
		return nil
	}
	t, err := quant.ParseType(req.Type)
	if err != nil {
		return fmt.Errorf("retry-shard %s: %w", req.Shard, err)
	}
	cur := r.shardRecipe(i)
	next := r.recipe.WithType(t)
	if reflect.DeepEqual(cur, next) {
		return fmt.Errorf("shard %s already uses %s everywhere: retry it without a type, or name another type", req.Shard, t)
	}
	if err := next.Validate(); err != nil {
		return fmt.Errorf("retry-shard %s with %s: %w", req.Shard, t, err)
	}
	return nil
}

// retryShard unparks a shard: it starts again as soon as the window (and
// the pause) allows, with the type asked for under a new key.
func (r *quantizeRun) retryShard(ctx workflow.Context, req RetryShardRequest) (Progress, error) {
	i, err := r.shardIndex(req.Shard)
	if err != nil {
		return Progress{}, err
	}
	j := r.parkedAt(i)
	if j < 0 {
		return Progress{}, fmt.Errorf("shard %s is %s, not parked", req.Shard, r.shardState(i))
	}
	r.st.Parked = append(r.st.Parked[:j], r.st.Parked[j+1:]...)
	if r.st.Retried == nil {
		r.st.Retried = map[int]ShardRetry{}
	}
	rt := r.st.Retried[i]
	rt.Count++
	if req.Type != "" {
		t, _ := quant.ParseType(req.Type)
		rt.Type = t.String()
	}
	r.st.Retried[i] = rt
	workflow.GetLogger(ctx).Info("shard retried by an operator", "shard", req.Shard, "type", rt.Type, "retries", rt.Count)
	r.changed = true
	r.setPhase(ctx, r.shardPhase())
	return r.progress(), nil
}

func (r *quantizeRun) validateAbort(ctx workflow.Context, req AbortRequest) error {
	if strings.TrimSpace(req.Reason) == "" {
		return errors.New(`abort needs a reason: {"reason": "…"}`)
	}
	switch {
	case r.abortReason != "":
		return fmt.Errorf("the run is already being aborted (%s)", r.abortReason)
	case r.phase == PhaseDone || r.phase == PhaseFailed || r.phase == PhaseAborted:
		return fmt.Errorf("the run has ended (phase %s): nothing to abort", r.phase)
	}
	return nil
}

// abort cancels the running work; the run then marks its output
// incomplete and fails with ErrTypeAborted.
func (r *quantizeRun) abort(ctx workflow.Context, req AbortRequest) (Progress, error) {
	r.abortReason = strings.TrimSpace(req.Reason)
	workflow.GetLogger(ctx).Warn("run aborted by an operator", "reason", r.abortReason)
	r.cancelWork()
	r.changed = true
	return r.progress(), nil
}

func (r *quantizeRun) validatePause(ctx workflow.Context) error {
	if err := r.shardStage("pause", true); err != nil {
		return err
	}
	if r.paused {
		return errors.New("the run is already paused")
	}
	return nil
}

// pause stops the starting of new shards; the running ones finish.
func (r *quantizeRun) pause(ctx workflow.Context) (Progress, error) {
	r.paused = true
	workflow.GetLogger(ctx).Info("run paused by an operator")
	if r.st != nil {
		r.setPhase(ctx, r.shardPhase())
	}
	return r.progress(), nil
}

func (r *quantizeRun) validateResume(ctx workflow.Context) error {
	if err := r.shardStage("resume", true); err != nil {
		return err
	}
	if !r.paused {
		return fmt.Errorf("the run is not paused (phase %s)", r.phase)
	}
	return nil
}

// resume lets the window start shards again.
func (r *quantizeRun) resume(ctx workflow.Context) (Progress, error) {
	r.paused = false
	workflow.GetLogger(ctx).Info("run resumed by an operator")
	r.changed = true
	if r.st != nil {
		r.setPhase(ctx, r.shardPhase())
	}
	return r.progress(), nil
}
