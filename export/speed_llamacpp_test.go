//go:build unix

package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/internal/llamaquant"
	"github.com/ohms-project/adaptq/synth"
)

// TestSpeedVsLlamaQuantize is the whole-process A/B of the quantizers'
// cost: one layer of llama-2-7b's shape (hidden 4096, intermediate 11008,
// vocabulary cut to 512; 206.6 M parameters, F16 — the values both sides
// read), quantized with an importance matrix (spreadIMatrix) on one core,
// by `adaptq export --type P --imatrix F` (GOMAXPROCS=1) with and without
// --optimized, and by libllama's llama_model_quantize (the harness,
// nthread 1) from the F16 GGUF of the same values, for the presets of
// ADAPTQ_SPEED_PRESETS (default q4_k_m,q3_k_m,q2_k,q6_k), the three runs
// alternating, ADAPTQ_SPEED_REPS times (default 3); it logs the medians
// and their ratios. It measures, it checks nothing but that every run
// succeeds, so it runs only when ADAPTQ_SPEED_AB=1:
//
//	ADAPTQ_SPEED_AB=1 go test ./export -run SpeedVsLlamaQuantize -v -timeout 2h
func TestSpeedVsLlamaQuantize(t *testing.T) {
	if os.Getenv("ADAPTQ_SPEED_AB") != "1" {
		t.Skip("a measurement of minutes: set ADAPTQ_SPEED_AB=1")
	}
	lq := llamaquant.Require(t)
	ctx := context.Background()
	raw, _, err := synth.ShapeConfig("llama-2-7b", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw["vocab_size"] = 512
	cfg, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	ck, f16 := f16Checkpoint(t, string(cfg))
	im, imBytes := spreadIMatrix(t, ck)
	tmp := t.TempDir()
	imPath := filepath.Join(tmp, "imatrix.gguf")
	if err := os.WriteFile(imPath, imBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	imp := map[string][]float32{}
	for name, e := range im.Entries {
		imp[name] = e.Importance()
	}
	bin := filepath.Join(tmp, "adaptq")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/adaptq").CombinedOutput(); err != nil {
		t.Fatalf("building adaptq: %v\n%s", err, out)
	}
	presets := strings.Split(envOr("ADAPTQ_SPEED_PRESETS", "q4_k_m,q3_k_m,q2_k,q6_k"), ",")
	reps, err := strconv.Atoi(envOr("ADAPTQ_SPEED_REPS", "3"))
	if err != nil || reps < 1 {
		t.Fatalf("ADAPTQ_SPEED_REPS=%q", os.Getenv("ADAPTQ_SPEED_REPS"))
	}
	// The machine may be shared: every run is timed by wall clock and by
	// the CPU time (user + system) of the child processes it waited for.
	type cost struct{ wall, cpu float64 }
	timed := func(run func()) cost {
		before := childCPU(t)
		start := time.Now()
		run()
		return cost{time.Since(start).Seconds(), (childCPU(t) - before).Seconds()}
	}
	ours := func(preset string, optimized bool) {
		out := filepath.Join(tmp, "out")
		os.RemoveAll(out)
		args := []string{"export", "--model", ck.Store.Location(), "--type", preset, "--imatrix", imPath, "--out", out}
		if optimized {
			args = append(args, "--optimized")
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Run(); err != nil {
			t.Fatalf("adaptq %s: %v\n%s", strings.Join(args, " "), err, log.String())
		}
	}
	theirs := func(preset string) {
		dst := filepath.Join(tmp, "llama.gguf")
		if err := lq.Quantize(ctx, f16, dst, preset, llamaquant.Options{Threads: 1, Imatrix: imp}); err != nil {
			t.Fatal(err)
		}
		os.Remove(dst)
	}
	t.Logf("%d parameters; median of %d alternating runs, one core, with the importance matrix; CPU seconds (wall seconds)", ck.NumParams(), reps)
	t.Logf("| preset | llama_model_quantize | adaptq export | export --optimized | export / llama (CPU) | --optimized / llama (CPU) |")
	t.Logf("|---|---:|---:|---:|---:|---:|")
	for _, p := range presets {
		var lw, lc, ew, ec, ow, oc []float64
		for range reps {
			c := timed(func() { theirs(p) })
			lw, lc = append(lw, c.wall), append(lc, c.cpu)
			c = timed(func() { ours(p, false) })
			ew, ec = append(ew, c.wall), append(ec, c.cpu)
			c = timed(func() { ours(p, true) })
			ow, oc = append(ow, c.wall), append(oc, c.cpu)
			fmt.Fprintf(os.Stderr, "%s CPU s: llama %.1f export %.1f optimized %.1f\n", p, lc[len(lc)-1], ec[len(ec)-1], oc[len(oc)-1])
		}
		t.Logf("| %s | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %.2f | %.2f |", p,
			median(lc), median(lw), median(ec), median(ew), median(oc), median(ow), median(ec)/median(lc), median(oc)/median(lc))
	}
}

// childCPU is the user + system CPU time of the waited-for children.
func childCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
