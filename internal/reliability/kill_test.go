package reliability

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/workflows"
)

// slowModel is a synthetic llama whose layer shards take a second or more
// each on this machine, so a fault lands in the middle of a shard.
const slowModel = "synth-slow"

var slowShape = &modelShape{Hidden: 1024, Intermediate: 3072, Layers: 8, Heads: 16, KVHeads: 4, Seed: 7}

// slowInput is the run every fault test of the slow model starts: two
// shards in flight, a 5 s heartbeat timeout so a dead worker's shard is
// retried quickly.
func slowInput(s *services, t *testing.T) workflows.QuantizeInput {
	return workflows.QuantizeInput{Model: s.model(t, slowModel, slowShape), Recipe: "q4_k", Concurrency: 2, HeartbeatSeconds: 5}
}

// pendingShard is a QuantizeShard activity a worker is running.
type pendingShard struct {
	ActivityID string
	Attempt    int32
	Worker     string
	Running    time.Duration // since the attempt started
	Progress   activities.ShardProgress
}

// pendingShards describes the run and returns its started QuantizeShard
// activities.
func (s *services) pendingShards(t *testing.T, ctx context.Context, id string) []pendingShard {
	t.Helper()
	d, err := s.client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatalf("describe %s: %v", id, err)
	}
	var out []pendingShard
	for _, pa := range d.GetPendingActivities() {
		if pa.GetActivityType().GetName() != "QuantizeShard" || pa.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED {
			continue
		}
		p := pendingShard{ActivityID: pa.GetActivityId(), Attempt: pa.GetAttempt(), Worker: pa.GetLastWorkerIdentity(),
			Running: time.Since(pa.GetLastStartedTime().AsTime())}
		if hd := pa.GetHeartbeatDetails(); hd != nil {
			_ = converter.GetDefaultDataConverter().FromPayloads(hd, &p.Progress)
		}
		out = append(out, p)
	}
	return out
}

// progress returns the run's progress query answer.
func (s *services) progress(ctx context.Context, id string) (workflows.Progress, error) {
	var p workflows.Progress
	v, err := s.client.QueryWorkflow(ctx, id, "", workflows.ProgressQuery)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

// waitMidShard polls until at least doneShards shards are finished and a
// QuantizeShard attempt has been running on worker for at least minRunning,
// and returns the running shards.
func (s *services) waitMidShard(t *testing.T, ctx context.Context, id, worker string, doneShards int, minRunning time.Duration) []pendingShard {
	t.Helper()
	for ctx.Err() == nil {
		p, err := s.progress(ctx, id)
		if err == nil && p.Phase == workflows.PhaseQuantize && p.ShardsDone >= doneShards {
			ps := s.pendingShards(t, ctx, id)
			for _, a := range ps {
				if a.Worker == worker && a.Running >= minRunning {
					return ps
				}
			}
		}
		if err == nil && p.Phase != workflows.PhasePlan && p.Phase != workflows.PhaseQuantize {
			t.Fatalf("the run reached phase %s before a shard could be interrupted", p.Phase)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no shard in progress on %s: %v", worker, ctx.Err())
	return nil
}

// shardObjects checks that an output prefix holds exactly one object and
// one result per shard of the plan (no duplicates, no strays besides the
// run's known outputs) and returns the shard objects by key.
func shardObjects(t *testing.T, st store.Store, shardsN int, extra ...string) map[string]store.ObjectInfo {
	t.Helper()
	list := objects(t, st)
	shardsByName := map[string][]string{}
	out := map[string]store.ObjectInfo{}
	known := map[string]bool{export.PlanKey: true, report.Key: true}
	for _, k := range extra {
		known[k] = true
	}
	for _, o := range list {
		switch {
		case strings.HasPrefix(o.Key, "shards/") && (strings.HasSuffix(o.Key, ".adqs") || strings.HasSuffix(o.Key, ".json")):
			name := strings.TrimPrefix(o.Key, "shards/")
			name = name[:strings.LastIndex(name, "-")]
			shardsByName[name] = append(shardsByName[name], o.Key)
			out[o.Key] = o
		case known[o.Key]:
		default:
			t.Errorf("unexpected object %s in %s", o.Key, st.Location())
		}
	}
	if len(shardsByName) != shardsN {
		t.Errorf("%d shards have objects in %s, want %d: %v", len(shardsByName), st.Location(), shardsN, keysOf(list))
	}
	for name, keys := range shardsByName {
		var adqs, res int
		for _, k := range keys {
			if strings.HasSuffix(k, ".adqs") {
				adqs++
			} else {
				res++
			}
		}
		if adqs != 1 || res != 1 {
			t.Errorf("shard %s has %d objects and %d results, want one of each: %v", name, adqs, res, keys)
		}
	}
	return out
}

// TestKillWorkerMidShard SIGKILLs the only worker while it is inside a
// shard, starts a second worker, and checks that the run completes with a
// GGUF bit-identical to an uninterrupted run, that every shard object was
// written once (objects finished before the kill keep their ETag and
// modification time) and measures the time the fault cost.
func TestKillWorkerMidShard(t *testing.T) {
	s := env(t)
	in := slowInput(s, t)
	ref := s.reference(t, slowModel+"-q4_k", in, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	queue := uniqueName(t, "q")
	id := uniqueName(t, "wf")
	prefix := "kill/" + id
	out := bucket(t, s.minio, "out", prefix)
	in.Output = "s3://out/" + prefix
	w1 := s.startWorker(t, workerOpts{Name: "kill-w1", Queue: queue, MaxConcurrent: 2})
	start := time.Now()
	run := s.startRun(t, ctx, id, queue, in)

	running := s.waitMidShard(t, ctx, id, w1.Name, 2, 700*time.Millisecond)
	before := map[string]store.ObjectInfo{}
	for _, o := range objects(t, out) {
		before[o.Key] = o
	}
	w1.Kill()
	killed := time.Now()
	for _, p := range running {
		t.Logf("killed %s at %.1fs while it ran shard %s (activity %s, attempt %d, %.1fs in, heartbeat: %d/%d tensors)",
			w1.Name, killed.Sub(start).Seconds(), p.Progress.Shard, p.ActivityID, p.Attempt, p.Running.Seconds(), p.Progress.TensorsDone, p.Progress.Tensors)
	}
	w2 := s.startWorker(t, workerOpts{Name: "kill-w2", Queue: queue, MaxConcurrent: 2})

	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatalf("run after the kill: %v", err)
	}
	total := time.Since(start)
	recovery := time.Since(killed)
	t.Logf("faulted run %.1fs, uninterrupted %.1fs: the kill cost %.1fs (kill → completion %.1fs; heartbeat timeout %ds)",
		total.Seconds(), ref.Duration.Seconds(), (total - ref.Duration).Seconds(), recovery.Seconds(), in.HeartbeatSeconds)

	if sum.Export.GGUFSHA256 != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("GGUF sha256 %s after the kill, %s uninterrupted", sum.Export.GGUFSHA256, ref.Summary.Export.GGUFSHA256)
	}
	if got := objectSHA256(t, out, export.GGUFKey); got != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("model.gguf in MinIO has sha256 %s, the uninterrupted run's %s", got, ref.Summary.Export.GGUFSHA256)
	}
	checkGGUF(t, out)
	// The retried attempts ran on the second worker.
	retried := s.shardAttempts(t, ctx, id)
	n := 0
	for _, a := range retried {
		if a > 1 {
			n++
		}
	}
	if n == 0 {
		t.Errorf("no QuantizeShard was retried after the kill: attempts %v", retried)
	}
	t.Logf("QuantizeShard attempts by activity: %v; shards reused by the retries: %d", retried, sum.ShardsReused)
	// (A retry logs how far the killed attempt came when that attempt had
	// heartbeated before the kill.)
	t.Logf("worker %s logged a retried shard: %v", w2.Name, strings.Contains(w2.Log(), "retrying a shard"))

	// Create-once: one object and one result per shard, the same keys as
	// the uninterrupted run, and nothing finished before the kill rewritten.
	after := shardObjects(t, out, countShards(ref.Keys), export.GGUFKey, export.ManifestKey, "tokenizer.json")
	if got, want := strings.Join(keysOf(objects(t, out)), " "), strings.Join(ref.Keys, " "); got != want {
		t.Errorf("keys after the kill:\n%s\nuninterrupted run:\n%s", got, want)
	}
	kept := 0
	for k, b := range before {
		if !strings.HasPrefix(k, "shards/") {
			continue
		}
		a := after[k]
		if a.ETag != b.ETag || !a.ModTime.Equal(b.ModTime) {
			t.Errorf("%s was rewritten after the kill: ETag %s → %s, modified %v → %v", k, b.ETag, a.ETag, b.ModTime, a.ModTime)
		}
		kept++
	}
	t.Logf("%d shard objects and results written before the kill are unchanged (ETag and LastModified)", kept)

	// The same input again under a new workflow id (what an operator does
	// after a failed run): every shard is found finished and reused, nothing
	// is rewritten, the GGUF is the same.
	again := s.startRun(t, ctx, id+"-again", queue, in)
	var sum2 workflows.Summary
	if err := again.Get(ctx, &sum2); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if sum2.ShardsReused != countShards(ref.Keys) || sum2.Export.GGUFSHA256 != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("rerun reused %d of %d shards, GGUF sha256 %s", sum2.ShardsReused, countShards(ref.Keys), sum2.Export.GGUFSHA256)
	}
	for k, b := range shardObjects(t, out, countShards(ref.Keys), export.GGUFKey, export.ManifestKey, "tokenizer.json") {
		if a := after[k]; a.ETag != b.ETag || !a.ModTime.Equal(b.ModTime) {
			t.Errorf("%s was rewritten by the rerun", k)
		}
	}
	t.Logf("rerun of the same input: %d shards reused (ShardRecord.Reused), none rewritten", sum2.ShardsReused)
}

// countShards counts the shard objects (.adqs) among keys.
func countShards(keys []string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, "shards/") && strings.HasSuffix(k, ".adqs") {
			n++
		}
	}
	return n
}

// shardAttempts reads the run's history and returns the highest attempt
// number of each QuantizeShard activity (by scheduled event id).
func (s *services) shardAttempts(t *testing.T, ctx context.Context, id string) map[string]int32 {
	t.Helper()
	it := s.client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	sched := map[int64]string{}
	out := map[string]int32{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "QuantizeShard" {
			var in activities.ShardInput
			_ = converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &in)
			sched[e.GetEventId()] = fmt.Sprintf("shard#%d(activity %s)", in.Index, a.GetActivityId())
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
			if name, ok := sched[a.GetScheduledEventId()]; ok {
				out[name] = max(out[name], a.GetAttempt())
			}
		}
	}
	return out
}

// checkGGUF reads the header of the output's model.gguf.
func checkGGUF(t *testing.T, st store.Store) *gguf.File {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := st.Stat(ctx, export.GGUFKey)
	if err != nil {
		t.Fatalf("stat model.gguf: %v", err)
	}
	f, err := gguf.Read(store.NewReaderAt(ctx, st, export.GGUFKey, info.Size, 1<<20), info.Size)
	if err != nil {
		t.Fatalf("%s does not load: %v", store.Describe(st, export.GGUFKey), err)
	}
	return f
}
