package reliability

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/workflows"
)

// TestTwoRunsOneBucket runs two models into two prefixes of one bucket at
// the same time on two shared worker processes: afterwards each prefix
// holds exactly the keys of its model's standalone run, both GGUFs load
// and both equal their standalone runs byte for byte.
func TestTwoRunsOneBucket(t *testing.T) {
	s := env(t)
	slow := slowInput(s, t)
	fix := workflows.QuantizeInput{Model: s.model(t, fixtureModel, nil), Recipe: "q4_k", Concurrency: 2, HeartbeatSeconds: 5}
	refs := []*refRun{s.reference(t, slowModel+"-q4_k", slow, 2), s.reference(t, fixtureModel+"-q4_k", fix, 2)}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	queue := uniqueName(t, "q")
	s.startWorker(t, workerOpts{Name: "two-w1", Queue: queue, MaxConcurrent: 2})
	s.startWorker(t, workerOpts{Name: "two-w2", Queue: queue, MaxConcurrent: 2})
	base := uniqueName(t, "run")
	ins := []workflows.QuantizeInput{slow, fix}
	var runs []client.WorkflowRun
	for i := range ins {
		ins[i].Output = "s3://shared/" + base + "/" + []string{"a", "b"}[i]
		bucket(t, s.minio, "shared", "")
		runs = append(runs, s.startRun(t, ctx, base+"-"+[]string{"a", "b"}[i], queue, ins[i]))
	}
	for i, run := range runs {
		var sum workflows.Summary
		if err := run.Get(ctx, &sum); err != nil {
			t.Fatalf("run %s: %v", ins[i].Model, err)
		}
		st := bucket(t, s.minio, "shared", base+"/"+[]string{"a", "b"}[i])
		if sum.Export.GGUFSHA256 != refs[i].Summary.Export.GGUFSHA256 {
			t.Errorf("%s: GGUF sha256 %s, standalone %s", ins[i].Model, sum.Export.GGUFSHA256, refs[i].Summary.Export.GGUFSHA256)
		}
		if got := objectSHA256(t, st, export.GGUFKey); got != refs[i].Summary.Export.GGUFSHA256 {
			t.Errorf("%s: model.gguf in MinIO has sha256 %s, standalone %s", ins[i].Model, got, refs[i].Summary.Export.GGUFSHA256)
		}
		f := checkGGUF(t, st)
		if got, want := strings.Join(keysOf(objects(t, st)), " "), strings.Join(refs[i].Keys, " "); got != want {
			t.Errorf("%s holds\n%s\nits standalone run\n%s", st.Location(), got, want)
		}
		t.Logf("%s → %s: %d GGUF tensors, %d objects, the standalone run's keys and bytes", ins[i].Model, st.Location(), len(f.Tensors), len(refs[i].Keys))
	}
	if n := len(objects(t, bucket(t, s.minio, "shared", base))); n != len(refs[0].Keys)+len(refs[1].Keys) {
		t.Errorf("%d objects under s3://shared/%s, want %d + %d", n, base, len(refs[0].Keys), len(refs[1].Keys))
	}
}
