package reliability

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/workflows"
)

// evalModel is a synthetic llama large enough that evaluating two dozen
// windows of 256 tokens takes over 20 seconds on one core; its vocabulary
// is the fixture's, so the fixture's tokenizer tokenizes the text.
const evalModel = "synth-eval"

var evalShape = &modelShape{Hidden: 512, Intermediate: 1536, Layers: 8, Heads: 8, KVHeads: 8, Seed: 11}

// evalConfig is one fleet of evaluation workers.
type evalConfig struct {
	Name          string
	Processes     int
	GOMAXPROCS    int
	MaxConcurrent int
}

// TestEvalThroughput evaluates the same quantized model on the same text
// (26 windows, one window per EvalWindows chunk, 4 chunks in flight) with
// one worker process (GOMAXPROCS=1), two worker processes (GOMAXPROCS=1
// each) and one process with GOMAXPROCS=2, measures the wall times and
// checks that two processes are at least 1.3× faster than one (the issue's
// goal is 1.7×; docs/RELIABILITY.md has the measured figures) and that
// every fleet gives the same result.
func TestEvalThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a minute and a half")
	}
	s := env(t)
	modelLoc := s.model(t, evalModel, evalShape)
	ref := s.reference(t, evalModel+"-q4_k", workflows.QuantizeInput{Model: modelLoc, Recipe: "q4_k", Concurrency: 2}, 2)
	gguf := "s3://ref/" + evalModel + "-q4_k/" + ref.Summary.Export.GGUFKey

	// The first 26 windows' worth of the fixture text (ctx 256, full
	// protocol: 255 tokens a window; about 2 characters a token).
	root, _ := testenv.RepoRoot()
	text, err := os.ReadFile(filepath.Join(root, "testdata", "text", "tinystories-valid-sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cut := string(text[:13200])
	texts := bucket(t, s.minio, "texts", "")
	if _, err := texts.Put(ctx, "eval-26.txt", strings.NewReader(cut), int64(len(cut))); err != nil {
		t.Fatal(err)
	}
	spec := workflows.EvalSpec{Text: "s3://texts/eval-26.txt", Ctx: 256, Protocol: "full", Chunk: 1, Parallel: 4}

	configs := []evalConfig{
		{Name: "1 process, GOMAXPROCS=1", Processes: 1, GOMAXPROCS: 1, MaxConcurrent: 1},
		{Name: "2 processes, GOMAXPROCS=1 each", Processes: 2, GOMAXPROCS: 1, MaxConcurrent: 1},
		{Name: "1 process, GOMAXPROCS=2", Processes: 1, GOMAXPROCS: 2, MaxConcurrent: 2},
	}
	walls := make([]time.Duration, len(configs))
	foreign := make([]float64, len(configs)) // share of the cores other processes used
	var first *infer.Result
	for i, c := range configs {
		queue := uniqueName(t, "q")
		var ws []*workerProc
		for p := range c.Processes {
			ws = append(ws, s.startWorker(t, workerOpts{Name: "eval-" + string(rune('a'+i)) + string(rune('0'+p)), Queue: queue,
				GOMAXPROCS: c.GOMAXPROCS, MaxConcurrent: c.MaxConcurrent}))
		}
		id := uniqueName(t, "wf")
		in := workflows.EvalInput{Model: gguf, Reference: modelLoc, Output: "s3://ref/eval-runs/" + id, Spec: spec}
		busy0 := machineBusy(t)
		start := time.Now()
		run, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, workflows.EvaluateModel, in)
		if err != nil {
			t.Fatal(err)
		}
		var res infer.Result
		if err := run.Get(ctx, &res); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		walls[i] = time.Since(start)
		var ours float64
		for _, w := range ws {
			ours += w.CPUSeconds(t)
		}
		others := machineBusy(t) - busy0 - ours
		foreign[i] = others / (2 * walls[i].Seconds())
		t.Logf("%s: %.1fs wall for %d tokens scored (%.0f forward tokens/s incl. the reference's passes); PPL %.6f; workers used %.1f CPU-s, other processes %.1f CPU-s (%.0f%% of the 2 cores)",
			c.Name, walls[i].Seconds(), res.Tokens, float64(2*res.Tokens)/walls[i].Seconds(), res.PPL, ours, others, 100*foreign[i])
		if res.Tokens < 8*255 {
			t.Fatalf("only %d tokens: fewer than 8 windows", res.Tokens)
		}
		if first == nil {
			first = &res
		} else if res.PPL != first.PPL || res.KLMean != first.KLMean || res.Tokens != first.Tokens {
			t.Errorf("%s: PPL %v KL %v over %d tokens, %s: PPL %v KL %v over %d", c.Name, res.PPL, res.KLMean, res.Tokens,
				configs[0].Name, first.PPL, first.KLMean, first.Tokens)
		}
		for _, w := range ws {
			w.Kill() // free the cores for the next fleet
		}
	}
	speedup := walls[0].Seconds() / walls[1].Seconds()
	t.Logf("speedup of 2 processes over 1 (GOMAXPROCS=1 each): %.2fx; 1 process with GOMAXPROCS=2: %.2fx", speedup, walls[0].Seconds()/walls[2].Seconds())
	switch {
	case foreign[0] > 0.25 || foreign[1] > 0.25:
		// Two workers can only be faster than one when the second core is
		// free; on a machine shared with other jobs the bound says nothing.
		t.Logf("other processes used %.0f%% / %.0f%% of the cores during the measurements: the 1.3x bound is not checked", 100*foreign[0], 100*foreign[1])
	case speedup < 1.3:
		t.Errorf("two evaluation workers are only %.2fx faster than one (want ≥ 1.3x; goal 1.7x)", speedup)
	}
}

// machineBusy returns the CPU seconds all processes of the machine have
// used (/proc/stat: everything but idle and iowait).
func machineBusy(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Skipf("no /proc/stat: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is already in user
			busy += n
		}
	}
	return busy / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100

// CPUSeconds returns the user and system CPU time the worker process has
// used so far (/proc/<pid>/stat).
func (w *workerProc) CPUSeconds(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(w.cmd.Process.Pid) + "/stat")
	if err != nil {
		t.Fatalf("CPU time of worker %s: %v", w.Name, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from the 3rd on
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}
