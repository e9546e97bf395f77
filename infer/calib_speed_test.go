package infer_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/tokenizer"
)

// BenchmarkCalibrateVsEvaluate measures calibration (Model.Calibrate: the
// forward pass with the activation taps, no lm_head) against a plain
// evaluation pass (Evaluate without a reference: the forward pass, lm_head
// and the log-softmax) over the same llama.cpp-protocol windows of the
// calibration text, in tokens per second, on the fixture and on
// SmolLM2-135M imported into an F16 checkpoint (when scripts/models.sh
// has fetched it), both passes alternating in each iteration; the
// overhead is calibration's process CPU time over the evaluation's, less
// one. The overhead goal is calibrate ≤ 1.15 × the evaluation:
//
//	go test ./infer -run '^$' -bench CalibrateVsEvaluate -benchtime 2x -count 3
func BenchmarkCalibrateVsEvaluate(b *testing.B) {
	ctx := context.Background()
	text, err := os.ReadFile("../testdata/text/go-calib.txt")
	if err != nil {
		b.Fatal(err)
	}
	type bench struct {
		name, dir string
		ctx, wins int
	}
	benches := []bench{{"stories260k", "../testdata/models/stories260k", 256, 8}}
	if gg, err := testenv.FindRealModel("smollm2-135m"); err == nil {
		dir := b.TempDir()
		src, _ := store.NewLocal(filepath.Dir(gg))
		out, _ := store.NewLocal(dir)
		if _, _, err := importer.Import(ctx, src, filepath.Base(gg), out, importer.Options{DType: safetensors.F16}); err != nil {
			b.Fatal(err)
		}
		benches = append(benches, bench{"smollm2-135m", dir, 512, 2})
	} else {
		b.Logf("SmolLM2-135M not fetched (%v): the fixture only", err)
	}
	for _, c := range benches {
		st, _ := store.NewLocal(c.dir)
		ck, err := model.Open(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		m, err := infer.LoadModel(ctx, ck)
		if err != nil {
			b.Fatal(err)
		}
		tok, err := tokenizer.Load(filepath.Join(c.dir, model.TokenizerFile))
		if err != nil {
			b.Fatal(err)
		}
		ids := tok.Encode(string(text), false)
		bos, ok := tok.BOS()
		if !ok && len(ck.Config.BOSTokenID) > 0 { // as activities.BOS: SmolLM2's is in config.json
			bos = ck.Config.BOSTokenID[0]
		}
		id32 := make([]int32, len(ids))
		for i, id := range ids {
			id32[i] = int32(id)
		}
		wins, err := infer.Windows(id32, infer.ProtocolLlamaCpp, c.ctx, int32(bos))
		if err != nil || len(wins) < c.wins {
			b.Fatalf("%s: %d windows of %d (%v)", c.name, len(wins), c.ctx, err)
		}
		wins = wins[:c.wins]
		tokens := float64(c.wins * c.ctx)
		// One pass of each per iteration, alternating, so that both see the
		// same load; wall and process CPU time are kept apart (CPU time is
		// what other load on a shared machine does not distort).
		b.Run(c.name, func(b *testing.B) {
			var wall, cpu [3]time.Duration
			passes := []func() error{
				func() error { _, err := infer.Evaluate(ctx, m, wins, infer.EvalOptions{}); return err },
				func() error { _, err := m.Calibrate(ctx, wins, infer.CalibOptions{}); return err },
				func() error { _, err := m.Calibrate(ctx, wins, infer.CalibOptions{Head: true}); return err },
			}
			for b.Loop() {
				for i, pass := range passes {
					c0, _ := processCPUTime()
					t0 := time.Now()
					if err := pass(); err != nil {
						b.Fatal(err)
					}
					wall[i] += time.Since(t0)
					c1, _ := processCPUTime()
					cpu[i] += c1 - c0
				}
			}
			n := tokens * float64(b.N)
			b.ReportMetric(n/wall[0].Seconds(), "eval-tok/s")
			b.ReportMetric(n/wall[1].Seconds(), "calib-tok/s")
			b.ReportMetric(n/wall[2].Seconds(), "calib+head-tok/s")
			if _, ok := processCPUTime(); ok {
				b.ReportMetric(n/cpu[0].Seconds(), "eval-tok/cpu-s")
				b.ReportMetric(n/cpu[1].Seconds(), "calib-tok/cpu-s")
				b.ReportMetric(n/cpu[2].Seconds(), "calib+head-tok/cpu-s")
				b.ReportMetric(100*(cpu[1].Seconds()/cpu[0].Seconds()-1), "calib-overhead-cpu-%")
				b.ReportMetric(100*(cpu[2].Seconds()/cpu[0].Seconds()-1), "calib+head-overhead-cpu-%")
			}
		})
	}
}
