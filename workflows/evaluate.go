package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/infer"
)

// EvalInput is EvaluateModel's input.
type EvalInput struct {
	Model     string   `json:"model"`     // quantized GGUF location
	Reference string   `json:"reference"` // original checkpoint location
	Output    string   `json:"output"`    // where ids, sums and the result go
	Spec      EvalSpec `json:"spec"`
}

// EvaluateModel tokenizes the text once, evaluates chunks of windows in
// parallel on the evaluation task queue and merges the stored sums: the
// aggregate equals a single-process evaluation of the same windows.
func EvaluateModel(ctx workflow.Context, in EvalInput) (*infer.Result, error) {
	var a *activities.Activities
	spec := in.Spec
	if spec.Chunk <= 0 {
		spec.Chunk = 8
	}
	if spec.Parallel <= 0 {
		spec.Parallel = 4
	}
	if spec.Ctx <= 0 {
		spec.Ctx = activities.DefaultEvalCtx
	}
	if spec.Protocol == "" {
		spec.Protocol = string(infer.ProtocolFull)
	}
	queue := workflow.GetInfo(ctx).TaskQueueName + EvalQueueSuffix
	opts := workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    10 * time.Minute,
		// A cancelled evaluation waits until its running chunks stop.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 20, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}},
	}
	actx := workflow.WithActivityOptions(ctx, opts)
	var prep activities.EvalPrep
	if err := workflow.ExecuteActivity(actx, a.PrepareEval, activities.EvalPrepInput{Reference: in.Reference, Text: spec.Text,
		Output: in.Output, Ctx: spec.Ctx, Protocol: spec.Protocol}).Get(ctx, &prep); err != nil {
		return nil, err
	}
	if prep.Windows == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("the text has %d tokens: less than one window of %d", prep.Tokens, spec.Ctx), activities.ErrTypeBadInput, nil)
	}
	n := (prep.Windows + spec.Chunk - 1) / spec.Chunk
	keys := make([]string, n)
	err := fanOut(ctx, n, spec.Parallel, func(i int) workflow.Future {
		first := i * spec.Chunk
		return workflow.ExecuteActivity(actx, a.EvalWindows, activities.EvalChunkInput{Model: in.Model, Reference: in.Reference,
			Output: in.Output, IDsKey: prep.IDsKey, Ctx: spec.Ctx, Protocol: spec.Protocol, BOS: prep.BOS,
			First: first, Count: min(spec.Chunk, prep.Windows-first), Exact: spec.Exact})
	}, func(i int, f workflow.Future) error {
		var c activities.EvalChunk
		if err := f.Get(ctx, &c); err != nil {
			return err
		}
		keys[i] = c.SumsKey
		return nil
	})
	if err != nil {
		return nil, err
	}
	var res infer.Result
	if err := workflow.ExecuteActivity(actx, a.AggregateEval, activities.AggregateInput{Output: in.Output, SumsKey: keys}).Get(ctx, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
