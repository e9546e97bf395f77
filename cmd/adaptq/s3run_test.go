package main

import (
	"context"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/workflows"
)

// TestS3RunsAndSecrets quantizes the fixture from MinIO to MinIO through
// the embedded Temporal server twice: the second run reuses every shard
// and gives a bit-identical GGUF, and the S3 secret key (which the worker
// reads from its environment) appears nowhere in either workflow history.
func TestS3RunsAndSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m, err := testenv.StartMinIO()
	if err != nil {
		testenv.Missing(t, "MinIO: "+err.Error())
	}
	defer m.Stop()
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	models, err := m.Store(ctx, "models", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.UploadDir(ctx, fixtureF32, models, "stories260k"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Store(ctx, "out", ""); err != nil {
		t.Fatal(err)
	}
	c := startEmbedded(t, ctx)

	in := workflows.QuantizeInput{Model: "s3://models/stories260k", Output: "s3://out/stories260k-q8", Recipe: "q8_0"}
	var sums [2]workflows.Summary
	for i := range sums {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "s3run-" + string(rune('a'+i)), TaskQueue: workflows.TaskQueue}, workflows.QuantizeModel, in)
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, &sums[i]); err != nil {
			t.Fatal(err)
		}
		it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		events := 0
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			events++
			b, _ := protojson.Marshal(ev)
			if strings.Contains(string(b), m.SecretKey) {
				t.Fatalf("the S3 secret appears in event %d (%s) of %s", ev.GetEventId(), ev.GetEventType(), run.GetID())
			}
		}
		if events < 10 {
			t.Fatalf("history of %d events: not read", events)
		}
	}
	if sums[0].Export.GGUFSHA256 == "" || sums[1].Export.GGUFSHA256 != sums[0].Export.GGUFSHA256 {
		t.Fatalf("two runs of one input: %s vs %s", sums[0].Export.GGUFSHA256, sums[1].Export.GGUFSHA256)
	}
	if sums[0].ShardsReused != 0 || sums[1].ShardsReused != 7 {
		t.Fatalf("shards reused: first run %d (want 0), second %d (want 7)", sums[0].ShardsReused, sums[1].ShardsReused)
	}
	out, _ := store.Open("s3://out/stories260k-q8")
	if _, err := out.Stat(ctx, "model.gguf"); err != nil {
		t.Fatal(err)
	}
}
