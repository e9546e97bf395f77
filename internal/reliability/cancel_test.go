package reliability

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/store"
)

// TestCancelFromCLI cancels a run with `temporal workflow cancel` while a
// worker process is inside its shards: the run ends cancelled, the output
// is marked INCOMPLETE and has no model.gguf or manifest, the running
// activities notice the cancellation at their next heartbeat (the worker
// logs them cancelled), and no shard object is written after the cancel
// plus the heartbeat timeout.
func TestCancelFromCLI(t *testing.T) {
	s := env(t)
	in := slowInput(s, t)
	// The SDK sends heartbeats at most every 0.8 × the heartbeat timeout,
	// so a shard learns of a cancellation within that interval; 2 s keeps
	// it shorter than a shard here.
	in.HeartbeatSeconds = 2
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	queue := uniqueName(t, "q")
	id := uniqueName(t, "wf")
	prefix := "cancel/" + id
	out := bucket(t, s.minio, "out", prefix)
	in.Output = "s3://out/" + prefix
	// One core for two shards: each takes a few seconds, longer than the
	// SDK's heartbeat interval (0.8 × the heartbeat timeout).
	w := s.startWorker(t, workerOpts{Name: "cancel-w", Queue: queue, MaxConcurrent: 2, GOMAXPROCS: 1})
	run := s.startRun(t, ctx, id, queue, in)
	running := s.waitMidShard(t, ctx, id, w.Name, 2, 300*time.Millisecond)

	if _, err := s.temporalCLI(t, ctx, "workflow", "cancel", "--workflow-id", id); err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	err := run.Get(ctx, nil)
	var ce *temporal.CanceledError
	if !errors.As(err, &ce) {
		t.Errorf("run after cancel: %v, want a cancelled workflow", err)
	}
	t.Logf("cancelled while %d shards ran; the workflow closed %.2fs after `temporal workflow cancel`: %v",
		len(running), time.Since(cancelled).Seconds(), err)

	marker, err := store.ReadAll(ctx, out, activities.IncompleteKey)
	if err != nil {
		t.Errorf("no INCOMPLETE marker after cancel: %v", err)
	} else if !strings.Contains(string(marker), "cancelled") {
		t.Errorf("INCOMPLETE says %q, want it to say the run was cancelled", marker)
	}
	for _, k := range []string{export.GGUFKey, export.ManifestKey} {
		if _, err := out.Stat(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after cancel: %v, want not found", k, err)
		}
	}

	// The running activities acknowledged the cancellation within the
	// heartbeat timeout (the workflow waits for them), and nothing is
	// written to the output afterwards.
	hb := time.Duration(in.HeartbeatSeconds) * time.Second
	ends := s.cancelledShards(t, ctx, id)
	wasRunning := map[string]bool{}
	for _, p := range running {
		wasRunning[p.ActivityID] = true
	}
	acked := 0
	for _, e := range ends {
		t.Logf("shard activity %s (running at the cancel: %v): cancel requested, then %s %.2fs later", e.ActivityID, wasRunning[e.ActivityID], e.Outcome, e.After.Seconds())
		if e.After > hb+time.Second {
			t.Errorf("activity %s took %.1fs to end after the cancel request, heartbeat timeout %v", e.ActivityID, e.After.Seconds(), hb)
		}
		switch {
		case e.Outcome == "cancelled" && wasRunning[e.ActivityID]:
			acked++
		case e.Outcome != "cancelled" && e.Outcome != "completed":
			t.Errorf("activity %s ended %s after the cancel request, want cancelled (or completed before its next heartbeat)", e.ActivityID, e.Outcome)
		}
	}
	// A shard that finishes before its next heartbeat completes instead of
	// acknowledging (the CLI takes up to a second to send the cancel); the
	// bound above still holds for it.
	if acked == 0 {
		t.Logf("every shard running at the cancel finished before its next heartbeat (of %+v): %+v", running, ends)
	}
	snap := objects(t, out)
	time.Sleep(2 * hb)
	later := objects(t, out)
	if strings.Join(keysOf(later), " ") != strings.Join(keysOf(snap), " ") {
		t.Errorf("objects written after the run closed:\nthen: %v\nlater: %v", keysOf(snap), keysOf(later))
	}
	t.Logf("%d objects in the output after the cancel (shards finished before it stay for a rerun); none written after the run closed", len(later))
}

// shardEnd is how a QuantizeShard activity ended after its cancellation
// was requested.
type shardEnd struct {
	ActivityID string
	Outcome    string        // cancelled, completed, failed, timed out
	After      time.Duration // from the cancel request
}

// cancelledShards reads the run's history and returns, for every
// QuantizeShard whose cancellation was requested, how and how soon after
// the request it ended.
func (s *services) cancelledShards(t *testing.T, ctx context.Context, id string) []shardEnd {
	t.Helper()
	it := s.client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	actID := map[int64]string{}        // scheduled event id → activity id
	requested := map[int64]time.Time{} // scheduled event id → cancel requested
	var out []shardEnd
	end := func(sched int64, outcome string, at time.Time) {
		if r, ok := requested[sched]; ok {
			out = append(out, shardEnd{ActivityID: actID[sched], Outcome: outcome, After: at.Sub(r)})
		}
	}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		at := e.GetEventTime().AsTime()
		switch {
		case e.GetActivityTaskScheduledEventAttributes() != nil:
			if a := e.GetActivityTaskScheduledEventAttributes(); a.GetActivityType().GetName() == "QuantizeShard" {
				actID[e.GetEventId()] = a.GetActivityId()
			}
		case e.GetActivityTaskCancelRequestedEventAttributes() != nil:
			if sched := e.GetActivityTaskCancelRequestedEventAttributes().GetScheduledEventId(); actID[sched] != "" {
				requested[sched] = at
			}
		case e.GetActivityTaskCanceledEventAttributes() != nil:
			end(e.GetActivityTaskCanceledEventAttributes().GetScheduledEventId(), "cancelled", at)
		case e.GetActivityTaskCompletedEventAttributes() != nil:
			end(e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId(), "completed", at)
		case e.GetActivityTaskFailedEventAttributes() != nil:
			end(e.GetActivityTaskFailedEventAttributes().GetScheduledEventId(), "failed", at)
		case e.GetActivityTaskTimedOutEventAttributes() != nil:
			end(e.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId(), "timed out", at)
		}
	}
	return out
}
