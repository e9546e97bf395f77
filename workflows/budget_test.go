package workflows

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/store"
)

// A budget measures every shard on the evaluation queue, plans, and the
// shards are quantized with the plan: the file's bytes are the plan's,
// within the budget, and the manifest's types are the plan's. A second run
// reuses every measurement.
func TestQuantizeBudget(t *testing.T) {
	out := t.TempDir()
	text, _ := filepath.Abs("../testdata/text/tinystories-valid-sample.txt")
	eval, _ := filepath.Abs("../testdata/text/go-eval.txt")
	in := QuantizeInput{Model: fixture, Output: out, Recipe: "q8_0", Concurrency: 3,
		Budget:     &BudgetSpec{TargetBPW: 7.5, Text: text, Ctx: 64, Windows: 2, AlphaEvery: 2},
		Evaluation: &EvalSpec{Text: eval, Ctx: 128, Protocol: "full", Chunk: 4, Parallel: 2}}
	var sums []Summary
	for range 2 {
		env, _ := newEnv(t)
		env.ExecuteWorkflow(QuantizeModel, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var sum Summary
		if err := env.GetWorkflowResult(&sum); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
	}
	sum := sums[0]
	b := sum.Budget
	if b == nil || b.Plan.BitsPerWeight > 7.5 || sum.Export.BitsPerWeight > 7.5 || b.Plan.Bytes != sum.Export.Bytes || b.Plan.Probes == 0 || b.WorkerSeconds <= 0 {
		t.Fatalf("budget %+v, export %.4f bpw, %d bytes", b, sum.Export.BitsPerWeight, sum.Export.Bytes)
	}
	if sum.Evaluation == nil || sum.Evaluation.KLMean <= 0 {
		t.Fatalf("evaluation %+v", sum.Evaluation)
	}
	if sums[1].Budget.Reused != 7 || sums[1].Export.GGUFSHA256 != sum.Export.GGUFSHA256 {
		t.Fatalf("second run: %d of 7 measurements reused, GGUF %s vs %s", sums[1].Budget.Reused, sums[1].Export.GGUFSHA256, sum.Export.GGUFSHA256)
	}
	s, _ := store.NewLocal(out)
	ctx := context.Background()
	if _, err := s.Stat(ctx, activities.BudgetKey); err != nil {
		t.Fatal(err)
	}
	mb, err := store.ReadAll(ctx, s, export.ManifestKey)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Read(ctx, mb)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	n := 0
	for _, row := range m.Rows {
		if want, ok := b.Plan.Types[row.GGUFName]; ok {
			n++
			types[row.OutputType] = true
			if row.OutputType != want.String() {
				t.Errorf("%s: manifest says %s, plan %s", row.GGUFName, row.OutputType, want)
			}
		}
	}
	if n != len(b.Plan.Types) || len(types) < 2 {
		t.Fatalf("%d of %d planned tensors in the manifest, types %v", n, len(b.Plan.Types), types)
	}
	t.Logf("plan %.3f bpw, predicted KLD %.5f, measured %.5f; α %.3f, held-out Spearman %.3f (%d); %d probes, %.1f worker-s",
		b.Plan.BitsPerWeight, b.Plan.PredictedKLD, sum.Evaluation.KLMean, b.Plan.Alpha, b.Plan.Spearman, b.Plan.HeldOut, b.Plan.Probes, b.WorkerSeconds)
}
