package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/shards"
)

// CalibSpec says how to collect an importance matrix: over the windows of
// a calibration text (llama-imatrix's chunks: llama.cpp-protocol windows of
// Ctx tokens, every position counted). The text must not be the
// evaluation text.
type CalibSpec struct {
	Text     string `json:"text"`               // object location of the calibration text
	Ctx      int    `json:"ctx,omitempty"`      // window length (default 512)
	Chunks   int    `json:"chunks,omitempty"`   // use at most this many windows (0: all)
	Chunk    int    `json:"chunk,omitempty"`    // windows per activity (default 8)
	Parallel int    `json:"parallel,omitempty"` // activities in flight (default 4)
	Head     bool   `json:"head,omitempty"`     // also collect lm_head's input
}

// Phases of a calibration, as its progress query reports them.
const (
	CalibPhaseTokenize  = "tokenize"
	CalibPhaseCollect   = "collect"
	CalibPhaseAggregate = "aggregate"
)

// CalibProgress is what CalibrateModel's progress query returns.
type CalibProgress struct {
	Phase       string `json:"phase"`
	Windows     int    `json:"windows"` // windows to collect (0 until tokenized)
	WindowsDone int    `json:"windows_done"`
	Chunks      int    `json:"chunks"`
	ChunksDone  int    `json:"chunks_done"`
}

// CalibrateInput is CalibrateModel's input.
type CalibrateInput struct {
	Model    string          `json:"model"`  // checkpoint location
	Output   string          `json:"output"` // receives the ids, the sums and imatrix.gguf
	Rotation shards.Rotation `json:"rotation"`
	Spec     CalibSpec       `json:"spec"`
}

// withDefaults fills the spec's defaults.
func (s CalibSpec) withDefaults() CalibSpec {
	if s.Ctx <= 0 {
		s.Ctx = 512
	}
	if s.Chunk <= 0 {
		s.Chunk = 8
	}
	if s.Parallel <= 0 {
		s.Parallel = 4
	}
	return s
}

// CalibrateModel collects an importance matrix on the evaluation task
// queue: it tokenizes the calibration text once, runs chunks of windows
// through the model the recipe quantizes (rotated when the recipe rotates)
// in parallel, and merges the stored sums into imatrix.gguf under the
// output. The matrix equals a single-process collection bit for bit.
func CalibrateModel(ctx workflow.Context, in CalibrateInput) (*activities.CalibResult, error) {
	var a *activities.Activities
	spec := in.Spec.withDefaults()
	prog := CalibProgress{Phase: CalibPhaseTokenize}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (CalibProgress, error) { return prog, nil }); err != nil {
		return nil, err
	}
	queue := workflow.GetInfo(ctx).TaskQueueName + EvalQueueSuffix
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: 6 * time.Hour,
		HeartbeatTimeout:    10 * time.Minute,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 20, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeBadInput}},
	})
	var prep activities.EvalPrep
	if err := workflow.ExecuteActivity(actx, a.PrepareEval, activities.EvalPrepInput{Reference: in.Model, Text: spec.Text,
		Output: in.Output, Ctx: spec.Ctx, Protocol: string(infer.ProtocolLlamaCpp)}).Get(ctx, &prep); err != nil {
		return nil, err
	}
	windows := prep.Windows
	if spec.Chunks > 0 {
		windows = min(windows, spec.Chunks)
	}
	if windows == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: the calibration text has %d tokens: less than one window of %d", spec.Text, prep.Tokens, spec.Ctx), activities.ErrTypeBadInput, nil)
	}
	n := (windows + spec.Chunk - 1) / spec.Chunk
	prog = CalibProgress{Phase: CalibPhaseCollect, Windows: windows, Chunks: n}
	keys := make([]string, n)
	err := fanOut(ctx, n, spec.Parallel, func(i int) workflow.Future {
		first := i * spec.Chunk
		return workflow.ExecuteActivity(actx, a.CalibrateWindows, activities.CalibChunkInput{Model: in.Model, Rotation: in.Rotation,
			Output: in.Output, IDsKey: prep.IDsKey, Ctx: spec.Ctx, BOS: prep.BOS, First: first,
			Count: min(spec.Chunk, windows-first), Head: spec.Head})
	}, func(i int, f workflow.Future) error {
		var c activities.CalibChunk
		if err := f.Get(ctx, &c); err != nil {
			return err
		}
		keys[i] = c.SumsKey
		prog.ChunksDone++
		prog.WindowsDone += c.Windows
		return nil
	})
	if err != nil {
		return nil, err
	}
	prog.Phase = CalibPhaseAggregate
	var res activities.CalibResult
	if err := workflow.ExecuteActivity(actx, a.AggregateCalib, activities.CalibAggregateInput{Output: in.Output, SumsKeys: keys,
		Dataset: spec.Text, Ctx: spec.Ctx, Rotation: in.Rotation}).Get(ctx, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
