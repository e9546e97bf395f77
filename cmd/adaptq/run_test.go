package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/workflows"
)

// TestRunControls drives a run on the embedded default with `adaptq run`:
// the worker's test fault parks layer-000, status lists it with its error,
// a retry of an unknown shard is rejected with the validator's message,
// pause and resume answer, and retry finishes the run.
func TestRunControls(t *testing.T) {
	t.Setenv(activities.TestFaultEnv, "layer-000")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dev, c := startEmbeddedServer(t, ctx)
	in := workflows.QuantizeInput{Model: absLocation(fixtureF32), Output: t.TempDir(), Recipe: "q8_0", Concurrency: 2}
	id := fmt.Sprintf("run-controls-%d", time.Now().UnixNano())
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrModel.ValueSet(in.Model), workflows.AttrRecipe.ValueSet(in.Recipe))},
		workflows.QuantizeModel, in)
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (int, string, string) {
		return runCLI(append(args, "--workflow-id", id, "--temporal", dev.Address())...)
	}

	var status string
	for deadline := time.Now().Add(time.Minute); ; {
		code, out, stderr := cli("run", "status")
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, stderr)
		}
		status = out
		if strings.Contains(out, "phase attention, shards 6/7 done, 0 running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not park layer-000: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(status, "parked layer-000: test fault") {
		t.Fatalf("status does not list the parked shard with its error:\n%s", status)
	}
	t.Logf("status:\n%s", status)

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "retry", "--shard", "layer-999"}, 1, `rejected: no shard "layer-999"`},
		{[]string{"run", "retry", "--shard", "layer-001"}, 1, "shard layer-001 is done, not parked"},
		{[]string{"run", "resume"}, 1, "the run is not paused"},
		{[]string{"run", "abort"}, 2, "abort needs --reason"},
		{[]string{"run", "retry"}, 2, "retry needs --shard"},
		{[]string{"run", "stop"}, 2, `unknown action "stop"`},
		{[]string{"run", "pause"}, 0, "phase attention"},
		{[]string{"run", "pause"}, 1, "already paused"},
		{[]string{"run", "resume"}, 0, "phase attention"},
		{[]string{"run", "retry", "--shard", "layer-000"}, 0, "phase quantize"},
	} {
		code, out, stderr := cli(c.args...)
		if code != c.code || !strings.Contains(out+stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), output %q, want %q in it", c.args, code, c.code, out+stderr, c.want)
		}
	}
	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.ShardsRetried != 1 || sum.Export.Tensors != 47 {
		t.Errorf("summary %+v", sum)
	}
	if code, _, stderr := cli("run", "pause"); code != 1 || !strings.Contains(stderr, "pause") {
		t.Errorf("pause of a finished run: exit %d, %s", code, stderr)
	}
}
