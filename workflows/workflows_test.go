package workflows

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/store"
)

const fixture = "../testdata/models/stories260k"

func newEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *activities.Activities) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(5 * time.Minute)
	a := &activities.Activities{}
	env.RegisterWorkflow(QuantizeModel)
	env.RegisterWorkflow(EvaluateModel)
	env.RegisterActivity(a)
	return env, a
}

// TestQuantizeFixture runs the whole workflow with the real activities on
// the fixture: plan, 7 shards, stitch, evaluation against the original.
func TestQuantizeFixture(t *testing.T) {
	env, _ := newEnv(t)
	out := t.TempDir()
	text, _ := filepath.Abs("../testdata/text/tinystories-valid-sample.txt")
	env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: fixture, Output: out, Recipe: "q8_0",
		Evaluation: &EvalSpec{Text: text, Ctx: 256, Protocol: "full", Chunk: 20, Parallel: 2}, Concurrency: 3})
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var sum Summary
	if err := env.GetWorkflowResult(&sum); err != nil {
		t.Fatal(err)
	}
	if sum.Parameters != 260032 || sum.Export.Tensors != 47 || sum.Evaluation == nil || sum.Export.GGUFSHA256 == "" {
		t.Fatalf("summary %+v", sum)
	}
	ev := sum.Evaluation
	t.Logf("bits/weight %.3f, ratio %.2f, PPL %.4f (reference %.4f), KL %.3g, top-1 %.2f%%",
		sum.Export.BitsPerWeight, sum.Export.Ratio, ev.PPL, ev.RefPPL, ev.KLMean, 100*ev.Top1)
	if ev.Tokens != 15300 || ev.RefPPL < 6.8139 || ev.RefPPL > 6.8149 || ev.KLMean <= 0 || ev.KLMean > 0.01 || ev.Top1 < 0.95 {
		t.Fatalf("evaluation %+v", ev)
	}
	s, _ := store.NewLocal(out)
	mb, err := store.ReadAll(context.Background(), s, export.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Read(context.Background(), mb)
	if err != nil || m.Meta["gguf_sha256"] != sum.Export.GGUFSHA256 {
		t.Fatalf("manifest: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, activities.IncompleteKey)); err == nil {
		t.Fatal("a finished run is marked incomplete")
	}
}

// TestContinueAsNew300 plans a synthetic 300-layer model (mocked
// activities) and checks that the workflow continues as new before its
// history grows, carrying its state, until every shard is done exactly once.
func TestContinueAsNew300(t *testing.T) {
	const shardsN = 302 // 300 layers + embed + head
	var calls [shardsN]atomic.Int32
	in := QuantizeInput{Model: "s3://models/big", Output: "s3://out/big", Recipe: "q4_k", Concurrency: 16, MaxShardsPerRun: 100}
	runs := 0
	for {
		env, a := newEnv(t)
		env.OnActivity(a.PlanModel, mock.Anything, mock.Anything).Return(func(ctx context.Context, p activities.PlanInput) (activities.PlanOutput, error) {
			po := activities.PlanOutput{PlanKey: "plan.json", Layers: 300}
			for i := range shardsN {
				po.Shards = append(po.Shards, fmt.Sprintf("s%03d", i))
			}
			return po, nil
		})
		env.OnActivity(a.QuantizeShard, mock.Anything, mock.Anything).Return(func(ctx context.Context, s activities.ShardInput) (export.ShardRecord, error) {
			calls[s.Index].Add(1)
			return export.ShardRecord{Shard: fmt.Sprintf("s%03d", s.Index), Key: fmt.Sprintf("shards/s%03d", s.Index), Size: 100}, nil
		})
		env.OnActivity(a.StitchModel, mock.Anything, mock.Anything).Return(func(ctx context.Context, s activities.StitchInput) (export.Summary, error) {
			for i, r := range s.Records {
				if r.Key != fmt.Sprintf("shards/s%03d", i) {
					return export.Summary{}, fmt.Errorf("record %d is %q", i, r.Key)
				}
			}
			return export.Summary{Tensors: len(s.Records), GGUFKey: "model.gguf"}, nil
		})
		env.ExecuteWorkflow(QuantizeModel, in)
		runs++
		err := env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if errors.As(err, &can) {
			if runs > 10 {
				t.Fatal("too many runs")
			}
			var next QuantizeInput
			if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
				t.Fatal(err)
			}
			if next.State == nil || next.State.Runs != runs {
				t.Fatalf("run %d: state not carried: %+v", runs, next.State)
			}
			in = next
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var sum Summary
		if err := env.GetWorkflowResult(&sum); err != nil || sum.Export.Tensors != shardsN {
			t.Fatalf("%v %+v", err, sum)
		}
		break
	}
	if runs != 4 {
		t.Errorf("%d runs for %d shards at 100 per run, want 4", runs, shardsN)
	}
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Fatalf("shard %d quantized %d times", i, n)
		}
	}
}

// TestBadInputFailsFast feeds broken checkpoints to the workflow: it fails
// with a non-retryable error naming the file and the tensor after one
// attempt, and no GGUF or manifest appears.
func TestBadInputFailsFast(t *testing.T) {
	for _, c := range []string{"offsets-overlap", "truncated-data", "config-missing-field", "index-path-escape"} {
		t.Run(c, func(t *testing.T) {
			env, _ := newEnv(t)
			var attempts atomic.Int32
			env.SetOnActivityStartedListener(func(info *activity.Info, ctx context.Context, args converter.EncodedValues) {
				if info.ActivityType.Name == "PlanModel" {
					attempts.Add(1)
				}
			})
			out := t.TempDir()
			env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: "../testdata/bad/" + c, Output: out, Recipe: "q4_k"})
			err := env.GetWorkflowError()
			var ae *temporal.ApplicationError
			if err == nil || !errors.As(err, &ae) || !ae.NonRetryable() || ae.Type() != activities.ErrTypeBadInput {
				t.Fatalf("want a non-retryable BadInput error, got %v", err)
			}
			want, _ := os.ReadFile(filepath.Join("../testdata/bad", c, "want-error.txt"))
			for _, w := range splitLines(string(want)) {
				if !contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if n := attempts.Load(); n != 1 {
				t.Errorf("PlanModel ran %d times, want 1", n)
			}
			for _, k := range []string{export.GGUFKey, export.ManifestKey} {
				if _, err := os.Stat(filepath.Join(out, k)); err == nil {
					t.Errorf("%s appeared", k)
				}
			}
			if _, err := os.Stat(filepath.Join(out, activities.IncompleteKey)); err != nil {
				t.Errorf("the output is not marked incomplete: %v", err)
			}
		})
	}
}

// TestProgressQuery: the query reports the phase and shard counts.
func TestProgressQuery(t *testing.T) {
	env, _ := newEnv(t)
	out := t.TempDir()
	env.RegisterDelayedCallback(func() {}, 0)
	env.ExecuteWorkflow(QuantizeModel, QuantizeInput{Model: fixture, Output: out, Recipe: "q4_0"})
	v, err := env.QueryWorkflow(ProgressQuery)
	if err != nil {
		t.Fatal(err)
	}
	var p Progress
	if err := v.Get(&p); err != nil || p.Phase != PhaseDone || p.ShardsDone != 7 || p.ShardsTotal != 7 {
		t.Fatalf("progress %+v %v", p, err)
	}
}

func splitLines(s string) []string {
	var out []string
	cur := ""
	for _, r := range s {
		if r == '\n' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
