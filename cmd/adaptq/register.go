package main

import (
	"context"
	"os"

	"go.temporal.io/sdk/worker"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

// registrar registers adaptq's workflows and activities for a worker role:
// "quantize" runs the workflows and the plan/shard/stitch activities on
// the main task queue; "eval" runs the evaluation activities (on the
// <queue>-eval task queue: the caller chooses the queue); "all" both.
func registrar() workers.Registrar {
	return func(r worker.Registry, role string) error {
		a := &activities.Activities{ShardDone: func(ctx context.Context, seconds float64, in, out int64) {
			if m := workers.MetricsFromContext(ctx); m != nil {
				m.ShardDone(seconds, in, out)
			}
		}, FailShard: os.Getenv(activities.TestFaultEnv)}
		if role == workers.RoleQuantize || role == workers.RoleAll {
			r.RegisterWorkflow(workflows.QuantizeModel)
			r.RegisterWorkflow(workflows.EvaluateModel)
			r.RegisterWorkflow(workflows.CalibrateModel)
			r.RegisterActivity(a.PlanModel)
			r.RegisterActivity(a.QuantizeShard)
			r.RegisterActivity(a.StitchModel)
			r.RegisterActivity(a.MarkIncomplete)
			r.RegisterActivity(a.PlanBudget)
		}
		if role == workers.RoleEval || role == workers.RoleAll {
			r.RegisterActivity(a.PrepareEval)
			r.RegisterActivity(a.EvalWindows)
			r.RegisterActivity(a.AggregateEval)
			r.RegisterActivity(a.CalibrateWindows)
			r.RegisterActivity(a.AggregateCalib)
			r.RegisterActivity(a.MeasureBudget)
		}
		return nil
	}
}
