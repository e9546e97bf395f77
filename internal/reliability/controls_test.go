package reliability

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/workflows"
)

// waitProgress polls the progress query until ok says so.
func (s *services) waitProgress(t *testing.T, ctx context.Context, id, what string, ok func(workflows.Progress) bool) workflows.Progress {
	t.Helper()
	var p workflows.Progress
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if p, err = s.progress(ctx, id); err == nil && ok(p) {
			return p
		}
	}
	t.Fatalf("%s: %s did not happen; last progress %+v", id, what, p)
	return p
}

// update sends a Temporal Update with the Temporal CLI, as an operator
// would, and returns the Progress it answered.
func (s *services) update(t *testing.T, ctx context.Context, id, name, input string) (workflows.Progress, error) {
	t.Helper()
	args := []string{"workflow", "update", "execute", "--workflow-id", id, "--name", name, "-o", "json"}
	if input != "" {
		args = append(args, "--input", input)
	}
	out, err := s.temporalCLI(t, ctx, args...)
	if err != nil {
		return workflows.Progress{}, err
	}
	var res struct {
		Result workflows.Progress `json:"result"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("temporal workflow update execute --name %s printed %q: %v", name, out, err)
	}
	return res.Result, nil
}

// TestParkedShardRetry: a worker made to fail layer-002 (the test fault
// ADAPTQ_TEST_FAIL_SHARD) parks it; the run quantizes the other shards and
// waits in phase attention (the progress query and AdaptqPhase say so);
// the worker is killed and replaced while the run waits; retry-shard of an
// unknown shard is rejected through the Temporal CLI; retry-shard of
// layer-002 through the Temporal CLI finishes the run with a GGUF
// bit-identical to an undisturbed run.
func TestParkedShardRetry(t *testing.T) {
	s := env(t)
	in := workflows.QuantizeInput{Model: s.model(t, fixtureModel, nil), Recipe: "q4_k", Concurrency: 2, HeartbeatSeconds: 5}
	ref := s.reference(t, fixtureModel+"-q4_k", in, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	queue := uniqueName(t, "q")
	id := uniqueName(t, "wf")
	prefix := "park/" + id
	out := bucket(t, s.minio, "out", prefix)
	in.Output = "s3://out/" + prefix
	fault := []string{activities.TestFaultEnv + "=layer-002"}
	w1 := s.startWorker(t, workerOpts{Name: "park-w1", Queue: queue, MaxConcurrent: 2, Env: fault})
	run := s.startRun(t, ctx, id, queue, in)

	p := s.waitProgress(t, ctx, id, "layer-002 parks and the rest finish", func(p workflows.Progress) bool {
		return p.Phase == workflows.PhaseAttention && p.ShardsTotal > 0 && p.ShardsDone == p.ShardsTotal-1 && p.ShardsRunning == 0
	})
	if len(p.Parked) != 1 || p.Parked[0].Shard != "layer-002" || !strings.Contains(p.Parked[0].Error, "test fault") {
		t.Fatalf("parked: %+v", p.Parked)
	}
	t.Logf("parked: %s: %s", p.Parked[0].Shard, p.Parked[0].Error)
	list, err := s.temporalCLI(t, ctx, "workflow", "list", "--query", `WorkflowId="`+id+`" AND AdaptqPhase="attention"`)
	if err != nil || !strings.Contains(string(list), id) {
		t.Errorf("AdaptqPhase=\"attention\" does not list the run: %v\n%s", err, list)
	}

	// The waiting run survives its worker.
	w1.Kill()
	s.startWorker(t, workerOpts{Name: "park-w2", Queue: queue, MaxConcurrent: 2, Env: fault})

	if _, err := s.update(t, ctx, id, workflows.UpdateRetryShard, `{"shard": "layer-999"}`); err == nil || !strings.Contains(err.Error(), `no shard \"layer-999\"`) && !strings.Contains(err.Error(), `no shard "layer-999"`) {
		t.Errorf("retry-shard of an unknown shard: %v", err)
	} else {
		t.Logf("retry-shard layer-999 rejected: %.300s", err)
	}
	if _, err := s.update(t, ctx, id, workflows.UpdateRetryShard, `{"shard": "layer-001"}`); err == nil || !strings.Contains(err.Error(), "not parked") {
		t.Errorf("retry-shard of a done shard: %v", err)
	}
	after, err := s.update(t, ctx, id, workflows.UpdateRetryShard, `{"shard": "layer-002"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Parked) != 0 {
		t.Errorf("retry-shard answered %+v", after)
	}
	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatalf("run after retry-shard: %v", err)
	}
	if sum.ShardsRetried != 1 {
		t.Errorf("%d shards retried", sum.ShardsRetried)
	}
	if sum.Export.GGUFSHA256 != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("GGUF sha256 %s after retry-shard, %s undisturbed", sum.Export.GGUFSHA256, ref.Summary.Export.GGUFSHA256)
	}
	if got := objectSHA256(t, out, export.GGUFKey); got != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("model.gguf in MinIO has sha256 %s, the undisturbed run's %s", got, ref.Summary.Export.GGUFSHA256)
	}
	checkGGUF(t, out)
	t.Logf("parked, retried through the Temporal CLI: GGUF sha256 %s, equal to the undisturbed run", sum.Export.GGUFSHA256)
}

// TestPauseResume pauses a run of the slow model through the Temporal CLI
// after its first shard: the running shards finish, none starts for a few
// seconds (phase paused), the worker is replaced while the run is paused,
// and resume finishes it with a GGUF bit-identical to an undisturbed run.
func TestPauseResume(t *testing.T) {
	s := env(t)
	in := slowInput(s, t)
	ref := s.reference(t, slowModel+"-q4_k", in, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	queue := uniqueName(t, "q")
	id := uniqueName(t, "wf")
	prefix := "pause/" + id
	out := bucket(t, s.minio, "out", prefix)
	in.Output = "s3://out/" + prefix
	w1 := s.startWorker(t, workerOpts{Name: "pause-w1", Queue: queue, MaxConcurrent: 2})
	run := s.startRun(t, ctx, id, queue, in)

	s.waitProgress(t, ctx, id, "a first shard", func(p workflows.Progress) bool { return p.ShardsDone >= 1 })
	paused, err := s.update(t, ctx, id, workflows.UpdatePause, "")
	if err != nil {
		t.Fatal(err)
	}
	if !paused.Paused || paused.Phase != workflows.PhasePaused {
		t.Errorf("pause answered %+v", paused)
	}
	if _, err := s.update(t, ctx, id, workflows.UpdatePause, ""); err == nil || !strings.Contains(err.Error(), "already paused") {
		t.Errorf("a second pause: %v", err)
	}
	idle := s.waitProgress(t, ctx, id, "the running shards finish", func(p workflows.Progress) bool { return p.ShardsRunning == 0 })
	if idle.ShardsDone >= idle.ShardsTotal {
		t.Fatalf("every shard finished before the pause took effect: %+v", idle)
	}
	w1.Kill()
	s.startWorker(t, workerOpts{Name: "pause-w2", Queue: queue, MaxConcurrent: 2})
	time.Sleep(3 * time.Second)
	still, err := s.progress(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if still.ShardsDone != idle.ShardsDone || still.ShardsRunning != 0 || still.Phase != workflows.PhasePaused {
		t.Fatalf("while paused: %+v, then %+v", idle, still)
	}
	t.Logf("paused with %d/%d shards done; none started in 3 s", still.ShardsDone, still.ShardsTotal)
	if _, err := s.update(t, ctx, id, workflows.UpdateResume, ""); err != nil {
		t.Fatal(err)
	}
	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatalf("run after resume: %v", err)
	}
	if sum.Export.GGUFSHA256 != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("GGUF sha256 %s after pause and resume, %s undisturbed", sum.Export.GGUFSHA256, ref.Summary.Export.GGUFSHA256)
	}
	if got := objectSHA256(t, out, export.GGUFKey); got != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("model.gguf in MinIO has sha256 %s, the undisturbed run's %s", got, ref.Summary.Export.GGUFSHA256)
	}
	t.Logf("paused and resumed through the Temporal CLI: GGUF sha256 %s, equal to the undisturbed run", sum.Export.GGUFSHA256)
}
