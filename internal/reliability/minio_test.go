package reliability

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/workflows"
)

// TestMinIORestartMidRun kills MinIO (its own instance) while shards are
// being quantized, keeps it down for a few seconds and restarts it on the
// same port and data directory: the store faults are retried by Temporal,
// the run completes, and the GGUF, the manifest and the object keys equal
// the uninterrupted run's.
func TestMinIORestartMidRun(t *testing.T) {
	s := env(t)
	in := slowInput(s, t)
	ref := s.reference(t, slowModel+"-q4_k", in, 2)

	m, err := testenv.StartMinIO()
	if err != nil {
		t.Fatalf("a second MinIO: %v", err)
	}
	t.Cleanup(m.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := testenv.UploadDir(ctx, s.modelDir(slowModel), bucket(t, m, "models", ""), slowModel); err != nil {
		t.Fatal(err)
	}
	queue := uniqueName(t, "q")
	id := uniqueName(t, "wf")
	prefix := "restart/" + id
	out := bucket(t, m, "out", prefix)
	in.Output = "s3://out/" + prefix
	w := s.startWorker(t, workerOpts{Name: "restart-w", Queue: queue, MaxConcurrent: 2, MinIO: m})
	start := time.Now()
	run := s.startRun(t, ctx, id, queue, in)

	s.waitMidShard(t, ctx, id, w.Name, 2, 500*time.Millisecond)
	m.Kill()
	down := time.Now()
	const outage = 6 * time.Second
	time.Sleep(outage)
	// What the workers saw meanwhile: the pending shards' last failures.
	var failures []string
	if d, err := s.client.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		for _, pa := range d.GetPendingActivities() {
			if f := pa.GetLastFailure(); f != nil {
				failures = append(failures, pa.GetActivityType().GetName()+" attempt "+strconv.Itoa(int(pa.GetAttempt()))+": "+f.GetMessage())
			}
		}
	}
	if err := m.Restart(); err != nil {
		t.Fatalf("restart MinIO: %v", err)
	}
	t.Logf("MinIO down for %.1fs at %.1fs into the run; pending activities' last failures: %q",
		time.Since(down).Seconds(), down.Sub(start).Seconds(), failures)

	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatalf("run across the MinIO restart: %v", err)
	}
	total := time.Since(start)
	t.Logf("faulted run %.1fs, uninterrupted %.1fs: the outage of %.0fs cost %.1fs in all",
		total.Seconds(), ref.Duration.Seconds(), outage.Seconds(), (total - ref.Duration).Seconds())
	t.Logf("QuantizeShard attempts: %v", s.shardAttempts(t, ctx, id))

	if sum.Export.GGUFSHA256 != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("GGUF sha256 %s across the restart, %s uninterrupted", sum.Export.GGUFSHA256, ref.Summary.Export.GGUFSHA256)
	}
	if got := objectSHA256(t, out, export.GGUFKey); got != ref.Summary.Export.GGUFSHA256 {
		t.Errorf("model.gguf in MinIO has sha256 %s, want %s", got, ref.Summary.Export.GGUFSHA256)
	}
	checkGGUF(t, out)
	mb, err := store.ReadAll(ctx, out, export.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	man, err := manifest.Read(ctx, mb)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	refMB, err := store.ReadAll(ctx, bucket(t, s.minio, "ref", slowModel+"-q4_k"), export.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	refMan, err := manifest.Read(ctx, refMB)
	if err != nil {
		t.Fatal(err)
	}
	if man.Meta["gguf_sha256"] != ref.Summary.Export.GGUFSHA256 || len(man.Rows) != len(refMan.Rows) || len(man.Rows) == 0 {
		t.Errorf("manifest: gguf_sha256 %s, %d rows; uninterrupted run: %d rows", man.Meta["gguf_sha256"], len(man.Rows), len(refMan.Rows))
	}
	shardObjects(t, out, countShards(ref.Keys), export.GGUFKey, export.ManifestKey, "tokenizer.json")
	if got, want := strings.Join(keysOf(objects(t, out)), " "), strings.Join(ref.Keys, " "); got != want {
		t.Errorf("keys after the restart:\n%s\nuninterrupted run:\n%s", got, want)
	}
}
