package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/workflows"
)

// TestBadInputCorpus feeds every broken checkpoint of testdata/bad through
// MinIO to the whole pipeline (a worker process): each run fails fast with
// a non-retryable BadInput error naming the file and the tensor, PlanModel
// ran once (from the history, `temporal workflow show -o json`), and the
// output holds the INCOMPLETE marker but no model.gguf or manifest.parquet.
func TestBadInputCorpus(t *testing.T) {
	s := env(t)
	root, _ := testenv.RepoRoot()
	corpus := filepath.Join(root, "testdata", "bad")
	dirs, err := os.ReadDir(corpus)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	models := bucket(t, s.minio, "models", "")
	queue := uniqueName(t, "q")
	s.startWorker(t, workerOpts{Name: "bad-w", Queue: queue})
	type started struct {
		name, id string
		out      store.Store
		run      client.WorkflowRun
		at       time.Time
	}
	var runs []started
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		name := d.Name()
		if err := testenv.UploadDir(ctx, filepath.Join(corpus, name), models, "bad/"+name); err != nil {
			t.Fatal(err)
		}
		id := uniqueName(t, name)
		prefix := "bad/" + id
		in := workflows.QuantizeInput{Model: "s3://models/bad/" + name, Output: "s3://out/" + prefix, Recipe: "q4_k", HeartbeatSeconds: 5}
		runs = append(runs, started{name: name, id: id, out: bucket(t, s.minio, "out", prefix), at: time.Now(),
			run: s.startRun(t, ctx, id, queue, in)})
	}
	if len(runs) < 5 {
		t.Fatalf("only %d cases in %s", len(runs), corpus)
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			err := r.run.Get(ctx, nil)
			took := time.Since(r.at)
			ae, ok := errorsAs[*temporal.ApplicationError](err)
			if err == nil || !ok || !ae.NonRetryable() || ae.Type() != activities.ErrTypeBadInput {
				t.Fatalf("want a non-retryable %s error, got %v", activities.ErrTypeBadInput, err)
			}
			want, _ := os.ReadFile(filepath.Join(corpus, r.name, "want-error.txt"))
			for _, w := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if w = strings.TrimSpace(w); w != "" && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			hist, err2 := s.temporalCLI(t, ctx, "workflow", "show", "--workflow-id", r.id, "-o", "json")
			if err2 != nil {
				t.Fatal(err2)
			}
			scheduled, attempts := activityAttempts(t, hist, "PlanModel")
			if scheduled != 1 || len(attempts) != 1 || attempts[0] != 1 {
				t.Errorf("PlanModel scheduled %d times, started attempts %v: want one attempt", scheduled, attempts)
			}
			if shards, _ := activityAttempts(t, hist, "QuantizeShard"); shards != 0 {
				t.Errorf("%d QuantizeShard activities were scheduled", shards)
			}
			for _, k := range []string{export.GGUFKey, export.ManifestKey} {
				if _, err := r.out.Stat(ctx, k); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s: %v, want not found", store.Describe(r.out, k), err)
				}
			}
			marker, err2 := store.ReadAll(ctx, r.out, activities.IncompleteKey)
			if err2 != nil {
				t.Errorf("no INCOMPLETE marker: %v", err2)
			}
			t.Logf("failed after %.2fs, PlanModel attempts %v; INCOMPLETE says %.160q", took.Seconds(), attempts, strings.TrimSpace(string(marker)))
		})
	}
}

// activityAttempts reads a `temporal workflow show -o json` history and
// returns how often an activity type was scheduled and the attempt numbers
// of its ActivityTaskStarted events.
func activityAttempts(t *testing.T, history []byte, activityType string) (scheduled int, attempts []int) {
	t.Helper()
	var h struct {
		Events []struct {
			EventID   json.Number `json:"eventId"`
			Scheduled *struct {
				ActivityType struct {
					Name string `json:"name"`
				} `json:"activityType"`
			} `json:"activityTaskScheduledEventAttributes"`
			Started *struct {
				ScheduledEventID json.Number `json:"scheduledEventId"`
				Attempt          int         `json:"attempt"`
			} `json:"activityTaskStartedEventAttributes"`
		} `json:"events"`
	}
	if err := json.Unmarshal(history, &h); err != nil {
		t.Fatalf("decode `temporal workflow show -o json`: %v\n%.2000s", err, history)
	}
	if len(h.Events) == 0 {
		t.Fatalf("empty history: %.2000s", history)
	}
	ids := map[string]bool{}
	for _, e := range h.Events {
		if e.Scheduled != nil && e.Scheduled.ActivityType.Name == activityType {
			scheduled++
			ids[e.EventID.String()] = true
		}
		if e.Started != nil && ids[e.Started.ScheduledEventID.String()] {
			attempts = append(attempts, e.Started.Attempt)
		}
	}
	return scheduled, attempts
}
