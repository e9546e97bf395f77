// Package activities holds adaptq's Temporal activities: thin adapters that
// open the stores named in their input, call the pipeline (packages model,
// shards, export, infer), write results under idempotent keys and return
// small summaries — object keys, sizes, checksums and measured figures,
// never tensor bytes. Bad input is a non-retryable application error that
// names the file and tensor; store faults are returned as they are, so
// Temporal retries them with backoff.
package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// ErrTypeBadInput is the application error type of non-retryable bad input.
const ErrTypeBadInput = "BadInput"

// ErrTypeTestFault is the application error type of the test-only fault
// of Activities.FailShard.
const ErrTypeTestFault = "TestFault"

// TestFaultEnv names the environment variable from which workers set
// Activities.FailShard (tests only; unset in production).
const TestFaultEnv = "ADAPTQ_TEST_FAIL_SHARD"

// Activities holds what the activities share on one worker. Credentials
// never pass through here: stores read them from the environment.
type Activities struct {
	// Open opens a store location; nil means store.Open.
	Open func(location string) (store.Store, error)
	// ShardDone, if set, is told how long every shard quantized here took
	// and how many bytes it read and wrote (for the worker's metrics).
	ShardDone func(ctx context.Context, seconds float64, bytesIn, bytesOut int64)
	// MaxModels bounds the models an evaluation worker keeps loaded
	// (default 2: the quantized model and its reference).
	MaxModels int
	// FailShard is a test-only fault, off when empty (the default):
	// QuantizeShard fails, non-retryably, for the shard of this name until
	// an operator has retried it (ShardInput.Retries > 0), so that the
	// reliability suite can park a shard. Workers set it from the
	// environment variable ADAPTQ_TEST_FAIL_SHARD (TestFaultEnv).
	FailShard string

	once  sync.Once
	cache *modelCache
}

// models returns the worker's model cache.
func (a *Activities) models() *modelCache {
	a.once.Do(func() {
		n := a.MaxModels
		if n <= 0 {
			n = 2
		}
		a.cache = &modelCache{max: n}
	})
	return a.cache
}

func (a *Activities) open(loc string) (store.Store, error) {
	if a.Open != nil {
		return a.Open(loc)
	}
	return store.Open(loc)
}

// badInput turns errors caused by the input into non-retryable errors.
func badInput(err error) error {
	if err == nil {
		return nil
	}
	var ie *shards.InputError
	var p *Problem
	if errors.Is(err, model.ErrInvalid) || errors.As(err, &ie) || errors.As(err, &p) {
		return BadInputError(err)
	}
	return err
}

// Recipe builds the recipe of a run from its name and options; an unknown
// name or options that do not go together are a *Problem.
func Recipe(name string, rot shards.Rotation, optimized, compress bool) (shards.Recipe, error) {
	r, err := shards.NamedRecipe(name)
	if err != nil {
		return shards.Recipe{}, problem(FieldRecipe, "", err.Error(), "choose a recipe adaptq knows (`adaptq quantize -h` lists them)", err)
	}
	r.Rotation, r.Optimized, r.Compress = rot, optimized, compress
	return r, checkRecipe(r)
}

// PlanInput is the input of PlanModel: the run's inputs, which it checks
// (Check) before it plans.
type PlanInput struct {
	Model  string        `json:"model"`
	Output string        `json:"output"`
	Recipe shards.Recipe `json:"recipe"`
	// Evaluation is the text the run will be evaluated on, if any.
	Evaluation *TextInput `json:"evaluation,omitempty"`
	// Imatrix is the location of an importance-matrix file, if any: it is
	// read and checked against the model and the recipe's rotation.
	Imatrix string `json:"imatrix,omitempty"`
	// Calibration is the text an importance matrix will be collected on
	// (CalibrateModel), if any: it is checked like the evaluation text,
	// with llama.cpp-protocol windows of its Ctx (default 512).
	Calibration *TextInput `json:"calibration,omitempty"`
}

// PlanOutput is what PlanModel returns: the plan's key and shape.
type PlanOutput struct {
	PlanKey     string   `json:"plan_key"`
	Shards      []string `json:"shards"`
	SourceID    string   `json:"source_id"`
	ModelType   string   `json:"model_type"`
	Layers      int      `json:"layers"`
	Parameters  int64    `json:"parameters"`
	SourceBytes int64    `json:"source_bytes"`
	// ImatrixSHA256 is the SHA-256 of the importance matrix's bytes when
	// the input names one: the shards' recipe carries it (and their keys).
	ImatrixSHA256 string `json:"imatrix_sha256,omitempty"`
}

// PlanModel checks every input of the run (Check: bad input is a
// non-retryable BadInput error carrying the Problem; a store fault is
// retried), splits the model into shards and writes the plan object.
func (a *Activities) PlanModel(ctx context.Context, in PlanInput) (PlanOutput, error) {
	ck, sha, err := a.check(ctx, in)
	if err != nil {
		return PlanOutput{}, badInput(err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return PlanOutput{}, badInput(err)
	}
	p := shards.MakePlan(ck)
	key, err := export.WritePlan(ctx, out, p)
	if err != nil {
		return PlanOutput{}, err
	}
	po := PlanOutput{PlanKey: key, SourceID: p.SourceID, ModelType: ck.Config.ModelType, Layers: ck.Config.NumLayers,
		Parameters: ck.NumParams(), SourceBytes: ck.SizeOnDisk(), ImatrixSHA256: sha}
	for _, s := range p.Shards {
		po.Shards = append(po.Shards, s.Name)
	}
	return po, nil
}

// ShardInput is the input of QuantizeShard.
type ShardInput struct {
	Model   string        `json:"model"`
	Output  string        `json:"output"`
	PlanKey string        `json:"plan_key"`
	Index   int           `json:"index"`
	Recipe  shards.Recipe `json:"recipe"`
	// Retries counts the operators' retry-shard updates of this shard so
	// far (logged; not part of the shard's key).
	Retries int `json:"retries,omitempty"`
}

// ShardProgress is QuantizeShard's heartbeat detail.
type ShardProgress struct {
	Shard       string `json:"shard"`
	TensorsDone int    `json:"tensors_done"`
	Tensors     int    `json:"tensors"`
}

// QuantizeShard quantizes one shard and writes its object under a key
// derived from its inputs (create-once). It heartbeats after every tensor.
// A retry first looks for the finished shard and reuses it; an attempt cut
// short redoes the shard from its start (the heartbeat detail says how far
// the last attempt came, which the log reports).
func (a *Activities) QuantizeShard(ctx context.Context, in ShardInput) (export.ShardRecord, error) {
	start := time.Now()
	logger := activity.GetLogger(ctx)
	if activity.HasHeartbeatDetails(ctx) {
		var prev ShardProgress
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil {
			logger.Info("retrying a shard", "shard", prev.Shard, "tensors_done", prev.TensorsDone, "tensors", prev.Tensors)
		}
	}
	src, err := a.open(in.Model)
	if err != nil {
		return export.ShardRecord{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return export.ShardRecord{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	p, err := export.ReadPlan(ctx, out, in.PlanKey)
	if err != nil {
		return export.ShardRecord{}, err
	}
	if in.Index < 0 || in.Index >= len(p.Shards) {
		err := fmt.Errorf("shard index %d outside a plan of %d shards", in.Index, len(p.Shards))
		return export.ShardRecord{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		return export.ShardRecord{}, badInput(err)
	}
	if shards.MakePlan(ck).SourceID != p.SourceID {
		err := fmt.Errorf("%s changed since it was planned (source fingerprint differs)", in.Model)
		return export.ShardRecord{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	s := p.Shards[in.Index]
	if a.FailShard != "" && a.FailShard == s.Name && in.Retries == 0 {
		msg := fmt.Sprintf("test fault (%s=%s): shard %s fails until an operator retries it", TestFaultEnv, a.FailShard, s.Name)
		return export.ShardRecord{}, temporal.NewNonRetryableApplicationError(msg, ErrTypeTestFault, nil)
	}
	imp, err := a.importance(ctx, in.Recipe.Imatrix)
	if err != nil {
		return export.ShardRecord{}, badInput(err)
	}
	activity.RecordHeartbeat(ctx, ShardProgress{Shard: s.Name, Tensors: len(s.Tensors)})
	rec, err := export.WriteShardWeighted(ctx, ck, out, p, s, in.Recipe, imp, func(tensor string, done, total int) {
		activity.RecordHeartbeat(ctx, ShardProgress{Shard: s.Name, TensorsDone: done, Tensors: total})
	})
	if err != nil {
		return export.ShardRecord{}, badInput(err)
	}
	rec.Seconds = time.Since(start).Seconds()
	rec.Started = start.UTC()
	rec.Worker = a.identity()
	if a.ShardDone != nil && !rec.Reused {
		var in int64
		for _, name := range s.Tensors {
			if t, ok := ck.Tensor(name); ok {
				in += t.Size
			}
		}
		a.ShardDone(ctx, time.Since(start).Seconds(), in, rec.Size)
	}
	return rec, nil
}

// StitchInput is the input of StitchModel.
type StitchInput struct {
	Model   string               `json:"model"`
	Output  string               `json:"output"`
	PlanKey string               `json:"plan_key"`
	Recipe  shards.Recipe        `json:"recipe"`
	Records []export.ShardRecord `json:"records"`
}

// StitchModel writes the GGUF file and the manifest from the shard objects.
func (a *Activities) StitchModel(ctx context.Context, in StitchInput) (export.Summary, error) {
	src, err := a.open(in.Model)
	if err != nil {
		return export.Summary{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return export.Summary{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	p, err := export.ReadPlan(ctx, out, in.PlanKey)
	if err != nil {
		return export.Summary{}, err
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		return export.Summary{}, badInput(err)
	}
	activity.RecordHeartbeat(ctx, "stitching")
	sum, err := export.Stitch(ctx, ck, out, p, in.Recipe, in.Records)
	if err != nil {
		return export.Summary{}, badInput(err)
	}
	return *sum, nil
}

// MarkIncomplete writes a marker object in the output saying the run did
// not finish (cancelled or failed) and why.
func (a *Activities) MarkIncomplete(ctx context.Context, output, reason string) error {
	out, err := a.open(output)
	if err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	body := []byte(reason + "\n")
	_, err = out.Put(ctx, IncompleteKey, bytes.NewReader(body), int64(len(body)))
	return err
}

// IncompleteKey marks an output whose run did not finish.
const IncompleteKey = "INCOMPLETE"

// importance reads the importance matrix a shard's recipe names (nil for
// none) and makes sure it is the one that was planned: its bytes have the
// recipe's SHA-256, which PlanModel computed when it checked the file.
func (a *Activities) importance(ctx context.Context, ref *shards.IMatrixRef) (shards.Importance, error) {
	if ref == nil {
		return nil, nil
	}
	dir, key, err := store.SplitObject(ref.Location)
	if err != nil {
		return nil, problem(FieldImatrix, ref.Location, err.Error(), "give {imatrix} "+imatrixKind, err)
	}
	s, err := a.open(dir)
	if err != nil {
		return nil, problem(FieldImatrix, ref.Location, err.Error(), "give {imatrix} "+imatrixKind, err)
	}
	im, sha, err := export.ReadIMatrix(ctx, s, key)
	if err != nil {
		var bad *export.IMatrixError
		if errors.As(err, &bad) {
			return nil, problem(FieldImatrix, ref.Location, "not a usable importance matrix: "+bad.Err.Error(), "give {imatrix} "+imatrixKind, err)
		}
		return nil, err
	}
	if sha != ref.SHA256 {
		return nil, problem(FieldImatrix, ref.Location, fmt.Sprintf("changed since the run was planned (SHA-256 %s, planned %s)", sha, ref.SHA256),
			"leave the importance matrix alone while a run uses it, or start a new run", nil)
	}
	imp, err := shards.ImportanceOf(im)
	if err != nil {
		return nil, problem(FieldImatrix, ref.Location, err.Error(), "give {imatrix} "+imatrixKind, err)
	}
	return imp, nil
}

// identity names this worker process as Temporal's default identity does
// (pid@host), for the report's timeline.
func (a *Activities) identity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s", os.Getpid(), host)
}
