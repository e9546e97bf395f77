package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
	"github.com/ohms-project/adaptq/workflows"
)

// TestOrchestrationOverhead runs a 32-layer synthetic model through
// QuantizeModel on the embedded Temporal server with an in-process worker
// and measures, from the workflow history and the activities' own timings,
// the orchestration cost per shard (scheduled → completed minus the time the
// activity itself ran) and the wall time against the sum of activity times
// divided by the concurrency. Goals from the pipeline issue: under 50 ms per
// shard, and within 1.2× of the ideal.
func TestOrchestrationOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 32-layer model through Temporal")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	modelDir := t.TempDir()
	src, _ := store.NewLocal(modelDir)
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":512,"intermediate_size":1536,"num_hidden_layers":32,"num_attention_heads":8,"vocab_size":512}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, src, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(filepath.Join(fixtureF32, "tokenizer.json"))
	os.WriteFile(filepath.Join(modelDir, "tokenizer.json"), tok, 0o644)

	c := startEmbedded(t, ctx)

	const conc = 2
	in := workflows.QuantizeInput{Model: modelDir, Output: t.TempDir(), Recipe: "q8_0", Concurrency: conc}
	start := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "overhead", TaskQueue: workflows.TaskQueue}, workflows.QuantizeModel, in)
	if err != nil {
		t.Fatal(err)
	}
	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)

	// Per shard: scheduled → completed from the history, minus the
	// activity's own running time from its record.
	sched := map[int64]time.Time{}
	var overheads []float64
	var busy float64
	var quantizeStart, quantizeEnd time.Time
	it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			if ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "QuantizeShard" {
				sched[ev.GetEventId()] = ev.GetEventTime().AsTime()
				if quantizeStart.IsZero() {
					quantizeStart = ev.GetEventTime().AsTime()
				}
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			a := ev.GetActivityTaskCompletedEventAttributes()
			s, ok := sched[a.GetScheduledEventId()]
			if !ok {
				continue
			}
			var rec export.ShardRecord
			if err := json.Unmarshal(a.GetResult().GetPayloads()[0].GetData(), &rec); err != nil {
				t.Fatal(err)
			}
			busy += rec.Seconds
			overheads = append(overheads, ev.GetEventTime().AsTime().Sub(s).Seconds()-rec.Seconds)
			quantizeEnd = ev.GetEventTime().AsTime()
		}
	}
	if len(overheads) != 34 {
		t.Fatalf("%d shard completions, want 34", len(overheads))
	}
	sort.Float64s(overheads)
	median, p90 := overheads[len(overheads)/2], overheads[len(overheads)*9/10]
	span := quantizeEnd.Sub(quantizeStart).Seconds()
	ideal := busy / conc
	t.Logf("34 shards, concurrency %d: orchestration per shard median %.1f ms, p90 %.1f ms; quantize phase %.2f s vs ideal %.2f s (%.2fx); whole run %.2f s",
		conc, 1000*median, 1000*p90, span, ideal, span/ideal, wall.Seconds())
	if median > 0.050 {
		t.Errorf("median orchestration overhead %.1f ms per shard, goal < 50 ms", 1000*median)
	}
}
