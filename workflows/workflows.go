// Package workflows holds adaptq's deterministic Temporal orchestration.
// QuantizeModel plans a checkpoint into shards, runs one QuantizeShard
// activity per shard in a bounded sliding window, continues as new before
// the history grows too long, stitches the GGUF and the manifest and then
// evaluates the result in the EvaluateModel child workflow. Workflows pass
// object keys, sizes and checksums — never tensor bytes, never credentials.
//
// A shard whose retries run out parks instead of failing the run: the
// phase becomes "attention", the progress query lists the shard with its
// last error, the other shards go on, and then the run waits for an
// operator. Operators act through Temporal Updates, each with a validator
// that rejects an unknown shard or a wrong state with a message saying
// why: "retry-shard" (optionally with another type for the shard's
// tensors), "abort", "pause" and "resume" (stop and restart the starting
// of new shards). Parked shards, operators' retries and the pause are part
// of the state that continue-as-new carries, so they survive it and any
// worker restart.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/shards"
)

// Task queues: workflows and quantize activities run on TaskQueue,
// evaluation activities on TaskQueue + EvalQueueSuffix, so each worker role
// polls only work it can do.
const (
	TaskQueue       = "adaptq"
	EvalQueueSuffix = "-eval"
)

// Search attributes shown in the Temporal Web UI (Keyword type).
var (
	AttrModel  = temporal.NewSearchAttributeKeyKeyword("AdaptqModel")
	AttrRecipe = temporal.NewSearchAttributeKeyKeyword("AdaptqRecipe")
	AttrPhase  = temporal.NewSearchAttributeKeyKeyword("AdaptqPhase")
)

// SearchAttributeNames lists the search attributes a cluster must register.
func SearchAttributeNames() []string {
	return []string{AttrModel.GetName(), AttrRecipe.GetName(), AttrPhase.GetName()}
}

// Phases of a run, as AdaptqPhase and the progress query report them.
const (
	PhasePlan = "plan"
	// PhaseCalibrate: the CalibrateModel child collects the importance
	// matrix the shards will use.
	PhaseCalibrate = "calibrate"
	PhaseQuantize  = "quantize"
	// PhaseAttention: a shard is parked; the run needs an operator to
	// retry it (or abort) before it can finish.
	PhaseAttention = "attention"
	// PhasePaused: an operator paused the run; no new shard starts until
	// resume.
	PhasePaused = "paused"
	// PhaseBudget: a budget's tensors are being measured and allocated.
	PhaseBudget   = "budget"
	PhaseStitch   = "stitch"
	PhaseEvaluate = "evaluate"
	PhaseDone     = "done"
	PhaseFailed   = "failed"
	PhaseAborted  = "aborted"
)

// ProgressQuery is the name of the query handler that reports Progress.
const ProgressQuery = "progress"

// Names of QuantizeModel's Temporal Updates (`temporal workflow update
// execute --name …`). Each returns the Progress after it took effect.
const (
	UpdateRetryShard = "retry-shard" // RetryShardRequest: retry a parked shard
	UpdateAbort      = "abort"       // AbortRequest: stop the run, mark the output incomplete
	UpdatePause      = "pause"       // no input: start no new shard
	UpdateResume     = "resume"      // no input: start shards again
)

// ErrTypeAborted is the application error type of a run an operator
// aborted.
const ErrTypeAborted = "Aborted"

// EvalSpec says how to evaluate the quantized model.
type EvalSpec struct {
	Text     string `json:"text"`               // object location of the text
	Ctx      int    `json:"ctx"`                // window length
	Protocol string `json:"protocol"`           // "full" or "llama.cpp"
	Chunk    int    `json:"chunk,omitempty"`    // windows per activity (default 8)
	Parallel int    `json:"parallel,omitempty"` // chunks in flight (default 4)
	Exact    bool   `json:"exact,omitempty"`    // float32 semantics instead of llama.cpp's integer kernels
}

// QuantizeInput is QuantizeModel's JSON input (the file given to
// `temporal workflow start --input-file`).
type QuantizeInput struct {
	Model       string          `json:"model"`  // checkpoint location
	Output      string          `json:"output"` // output location
	Recipe      string          `json:"recipe"` // named recipe (shards.NamedRecipe: q4_k_m, uniform-q4_k, bitnet, ...)
	Rotation    shards.Rotation `json:"rotation"`
	Optimized   bool            `json:"optimized,omitempty"`
	Compress    bool            `json:"compress,omitempty"`
	Evaluation  *EvalSpec       `json:"evaluation,omitempty"`
	Concurrency int             `json:"concurrency,omitempty"` // shards in flight (default 8)
	// MaxShardsPerRun makes the workflow continue as new after starting
	// this many shards in one run (default 500), besides whenever Temporal
	// suggests it; each run keeps its history far from the limits.
	MaxShardsPerRun int `json:"max_shards_per_run,omitempty"`
	// HeartbeatSeconds is QuantizeShard's heartbeat timeout (default 300):
	// a worker that dies mid-shard is noticed this quickly.
	HeartbeatSeconds int `json:"heartbeat_seconds,omitempty"`
	// Imatrix is the location of an importance-matrix file (llama.cpp's
	// GGUF imatrix or legacy .dat): PlanModel checks it against the model
	// and the rotation, and every shard quantizes with its importance.
	Imatrix string `json:"imatrix,omitempty"`
	// Calibration, if set, collects an importance matrix first: the
	// CalibrateModel child workflow (on the evaluation task queue) runs
	// after the plan and before any shard, on the model the recipe
	// quantizes (rotated when it rotates), writes <output>/imatrix.gguf and
	// the shards quantize with it. Not together with Imatrix.
	Calibration *CalibSpec `json:"calibration,omitempty"`
	// ShardAttempts bounds the attempts of one QuantizeShard activity
	// before the shard parks (default 20).
	ShardAttempts int `json:"shard_attempts,omitempty"`
	// Budget, when set, chooses each tensor's type under a size or
	// quality budget from measurements (activities.MeasureBudget per
	// shard on the evaluation queue, then PlanBudget) before any shard;
	// the recipe's types are the fallback of tensors the plan leaves out.
	Budget *BudgetSpec `json:"budget,omitempty"`
	// State is carried from one run to the next by continue-as-new; a new
	// run leaves it empty.
	State *QuantizeState `json:"state,omitempty"`

	unknown []string // JSON fields UnmarshalJSON did not know
}

// BudgetSpec is a budget: TargetBPW (bits per weight over the whole file)
// or MaxKLD (predicted mean KL divergence), and the probe text.
type BudgetSpec struct {
	TargetBPW float64 `json:"target_bpw,omitempty"`
	MaxKLD    float64 `json:"max_kld,omitempty"`
	// Text is the object location of the probe text (a calibration text,
	// not the evaluation text); Ctx and Windows are its probe windows
	// (defaults 128 and 1); AlphaEvery as activities.BudgetProbe (default 8).
	Text       string `json:"text"`
	Ctx        int    `json:"ctx,omitempty"`
	Windows    int    `json:"windows,omitempty"`
	AlphaEvery int    `json:"alpha_every,omitempty"`
}

// BudgetState is a budget's outcome, carried by continue-as-new.
type BudgetState struct {
	Goal budget.Goal                 `json:"goal"`
	Plan activities.PlanBudgetOutput `json:"plan"`
	// WorkerSeconds sums the measurement activities' own times; Seconds
	// is the wall time from the first measurement to the plan.
	WorkerSeconds float64 `json:"worker_seconds"`
	Seconds       float64 `json:"seconds"`
	Reused        int     `json:"reused"` // shard measurements found in the store
}

// QuantizeState is the progress a run hands to the next one.
type QuantizeState struct {
	Plan    activities.PlanOutput `json:"plan"`
	Records []export.ShardRecord  `json:"records"` // by shard index; Key "" = not done
	Started time.Time             `json:"started"`
	Runs    int                   `json:"runs"`
	// Budget is the budget's plan once made.
	Budget *BudgetState `json:"budget,omitempty"`
	// Parked are the shards whose attempts ran out, by index, waiting for
	// an operator's retry-shard.
	Parked []ParkedShard `json:"parked,omitempty"`
	// Retried holds what operators asked of shards with retry-shard, by
	// shard index.
	Retried map[int]ShardRetry `json:"retried,omitempty"`
	// Paused: an operator paused the run and has not resumed it.
	Paused bool `json:"paused,omitempty"`
	// Imatrix is the importance matrix the shards quantize with (the
	// input's, or the one the calibration collected), nil for none.
	Imatrix *shards.IMatrixRef `json:"imatrix,omitempty"`
	// Calibration is what the calibration measured, if the run calibrated,
	// and how long it took.
	Calibration     *activities.CalibResult `json:"calibration,omitempty"`
	CalibrationSecs float64                 `json:"calibration_seconds,omitempty"`
}

// ParkedShard is a shard that failed every attempt and waits for an
// operator.
type ParkedShard struct {
	Index int       `json:"index"`
	Shard string    `json:"shard"`
	Error string    `json:"error"` // the last attempt's error
	At    time.Time `json:"at"`
	Type  string    `json:"type,omitempty"` // the type it was retried with, "" = the recipe's
}

// ShardRetry is what operators asked of one shard.
type ShardRetry struct {
	Count int    `json:"count"`          // retry-shard updates so far
	Type  string `json:"type,omitempty"` // type of its tensors, "" = the recipe's
}

// RetryShardRequest is the input of the retry-shard update.
type RetryShardRequest struct {
	Shard string `json:"shard"` // shard name, as the progress query lists it ("layer-007")
	// Type, if set, quantizes every tensor of the shard (norms and biases
	// stay F32) with this type instead of the recipe's, under a new shard
	// key.
	Type string `json:"type,omitempty"`
}

// AbortRequest is the input of the abort update.
type AbortRequest struct {
	Reason string `json:"reason"`
}

// Progress is what the progress query (and every update) returns.
type Progress struct {
	Phase         string `json:"phase"`
	ShardsDone    int    `json:"shards_done"`
	ShardsTotal   int    `json:"shards_total"`
	ShardsRunning int    `json:"shards_running"`
	BytesOut      int64  `json:"bytes_out"`
	Runs          int    `json:"runs"` // continue-as-new generations so far
	Paused        bool   `json:"paused,omitempty"`
	// Parked lists the shards waiting for retry-shard, with their errors.
	Parked      []ParkedShard `json:"parked,omitempty"`
	AbortReason string        `json:"abort_reason,omitempty"`
}

// Summary is QuantizeModel's result: sizes, measured figures and keys.
type Summary struct {
	Model         string         `json:"model"`
	Output        string         `json:"output"`
	Recipe        string         `json:"recipe"`
	Parameters    int64          `json:"parameters"`
	SourceBytes   int64          `json:"source_bytes"`
	Export        export.Summary `json:"export"`
	ShardsReused  int            `json:"shards_reused"`
	ShardsRetried int            `json:"shards_retried,omitempty"` // shards an operator retried
	MaxRelError   float64        `json:"max_rel_error"`
	Evaluation    *infer.Result  `json:"evaluation,omitempty"`
	Seconds       float64        `json:"seconds"`
	QuantizeSecs  float64        `json:"quantize_seconds"`
	EvaluateSecs  float64        `json:"evaluate_seconds,omitempty"`
	// Imatrix is the importance matrix the shards quantized with, if any.
	Imatrix *shards.IMatrixRef `json:"imatrix,omitempty"`
	// Calibration is what the calibration step measured, if it ran.
	Calibration     *activities.CalibResult `json:"calibration,omitempty"`
	CalibrationSecs float64                 `json:"calibration_seconds,omitempty"`
	ContinuedRuns   int                     `json:"continued_runs"`
	// Budget is the budget's plan and its measurement's cost, with a budget.
	Budget *BudgetState `json:"budget,omitempty"`
}

func (in *QuantizeInput) defaults() {
	if in.Concurrency <= 0 {
		in.Concurrency = 8
	}
	if in.MaxShardsPerRun <= 0 {
		in.MaxShardsPerRun = 500
	}
	if in.HeartbeatSeconds <= 0 {
		in.HeartbeatSeconds = 300
	}
	if in.ShardAttempts <= 0 {
		in.ShardAttempts = 20
	}
	if b := in.Budget; b != nil {
		if b.Ctx <= 0 {
			b.Ctx = 128
		}
		if b.Windows <= 0 {
			b.Windows = 1
		}
		if b.AlphaEvery == 0 {
			b.AlphaEvery = 8
		}
	}
}

// QuantizeModel is the main workflow: plan, quantize every shard in a
// sliding window (parking the ones that fail), stitch, evaluate. Its steps
// are the methods of quantizeRun.
func QuantizeModel(ctx workflow.Context, in QuantizeInput) (*Summary, error) {
	r, err := newQuantizeRun(ctx, in)
	if err != nil {
		return nil, err
	}
	return r.execute(ctx)
}

// joinLoc appends a key to a location.
func joinLoc(loc, key string) string {
	for len(loc) > 0 && loc[len(loc)-1] == '/' {
		loc = loc[:len(loc)-1]
	}
	return loc + "/" + key
}
