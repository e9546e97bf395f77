package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/probe"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// BudgetKey is where PlanBudget writes the budget's plan in the output.
const BudgetKey = "budget.json"

// BudgetProbe are the probe settings of a budget, the same for every
// shard's measurement.
type BudgetProbe struct {
	IDsKey  string `json:"ids_key"` // the probe text's ids (PrepareEval)
	Ctx     int    `json:"ctx"`
	BOS     int32  `json:"bos"`
	Windows int    `json:"windows"` // the first Windows windows of the full protocol
	// AlphaEvery: every AlphaEvery-th tensor of a shard is probed at Q5_0
	// as well as Q4_0 (0: none).
	AlphaEvery int  `json:"alpha_every"`
	Optimized  bool `json:"optimized,omitempty"`
	// Imatrix weights the errors (and the probes' quantizers) as the
	// shards are weighted; its SHA-256 is part of the measurement's key.
	Imatrix *shards.IMatrixRef `json:"imatrix,omitempty"`
}

// MeasureInput is the input of MeasureBudget: one shard's tensors.
type MeasureInput struct {
	Model   string      `json:"model"`
	Output  string      `json:"output"`
	PlanKey string      `json:"plan_key"`
	Index   int         `json:"index"` // shard index in the plan
	Probe   BudgetProbe `json:"probe"`
}

// MeasureOutput is what MeasureBudget returns.
type MeasureOutput struct {
	Key     string  `json:"key"` // the measurement object (JSON probe.Report)
	Tensors int     `json:"tensors"`
	Reused  bool    `json:"reused"`
	Seconds float64 `json:"seconds"`
}

// MeasureBudget measures the quantizable tensors of one shard at every
// candidate type and probes each end to end (package probe), and writes
// the result under a key derived from its inputs (the checkpoint's
// fingerprint, the shard, the probe text's ids and settings, the codec
// version): written once, reused by a retry or a rerun. It runs on the
// evaluation queue (it needs the whole model, which a worker loads once).
func (a *Activities) MeasureBudget(ctx context.Context, in MeasureInput) (MeasureOutput, error) {
	start := time.Now()
	bad := func(err error) (MeasureOutput, error) {
		return MeasureOutput{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return bad(err)
	}
	plan, err := export.ReadPlan(ctx, out, in.PlanKey)
	if err != nil {
		return MeasureOutput{}, err
	}
	if in.Index < 0 || in.Index >= len(plan.Shards) {
		return bad(fmt.Errorf("shard %d outside the plan's %d", in.Index, len(plan.Shards)))
	}
	s := plan.Shards[in.Index]
	kp := in.Probe
	if kp.Imatrix != nil {
		kp.Imatrix = &shards.IMatrixRef{SHA256: kp.Imatrix.SHA256} // the checksum, not the location
	}
	pj, _ := json.Marshal(kp)
	key := fmt.Sprintf("budget/measure-%s-%s.json", s.Name, hashOf("adaptq-budget-2", shards.CodecVersion, plan.SourceID, string(pj))[:24])
	if b, err := store.ReadAll(ctx, out, key); err == nil {
		var rep probe.Report
		if json.Unmarshal(b, &rep) == nil {
			return MeasureOutput{Key: key, Tensors: len(rep.Tensors), Reused: true, Seconds: time.Since(start).Seconds()}, nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return MeasureOutput{}, err
	}
	m, err := a.models().getCheckpoint(ctx, a, in.Model, shards.Rotation{})
	if err != nil {
		return MeasureOutput{}, err
	}
	all, err := probe.Targets(m.Weights())
	if err != nil {
		return bad(err)
	}
	var targets []probe.Target
	for _, t := range all {
		if s.Writes(t.Name) {
			targets = append(targets, t)
		}
	}
	imp, err := a.importance(ctx, in.Probe.Imatrix)
	if err != nil {
		return MeasureOutput{}, badInput(err)
	}
	rep := &probe.Report{}
	if len(targets) > 0 {
		wins, err := a.readWindows(ctx, out, in.Probe.IDsKey, infer.ProtocolFull, in.Probe.Ctx, in.Probe.BOS)
		if err != nil {
			return MeasureOutput{}, err
		}
		if in.Probe.Windows > 0 && in.Probe.Windows < len(wins) {
			wins = wins[:in.Probe.Windows]
		}
		p, err := probe.NewProber(ctx, m, wins)
		if err != nil {
			return MeasureOutput{}, err
		}
		rep, err = probe.MeasureTargets(ctx, p, targets, probe.Options{
			ProbeType: quant.Q4_0, AlphaType: quant.Q5_0, AlphaEvery: in.Probe.AlphaEvery, Optimized: in.Probe.Optimized,
			Importance: func(name string) []float32 { return imp[name] },
			Progress:   func(_ string, done, _ int) { activity.RecordHeartbeat(ctx, done) },
		})
		if err != nil {
			return MeasureOutput{}, err
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return MeasureOutput{}, err
	}
	if _, err := out.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return MeasureOutput{}, err
	}
	return MeasureOutput{Key: key, Tensors: len(rep.Tensors), Seconds: time.Since(start).Seconds()}, nil
}

// PlanBudgetInput is the input of PlanBudget.
type PlanBudgetInput struct {
	Model        string      `json:"model"`
	Output       string      `json:"output"`
	Goal         budget.Goal `json:"goal"`
	Measurements []string    `json:"measurements"` // MeasureBudget's keys
}

// PlanBudgetOutput is a budget's plan in brief: its types, what it
// predicts and how well the sensitivity model ranks held-out probes.
type PlanBudgetOutput struct {
	Key string `json:"key"` // budget.json in the output
	// Types is the type of every quantizable tensor by llama.cpp name.
	Types         map[string]quant.Type `json:"types"`
	BitsPerWeight float64               `json:"bits_per_weight"`
	Bytes         int64                 `json:"bytes"`
	PredictedKLD  float64               `json:"predicted_kld"`
	Gap           float64               `json:"gap"`
	Alpha         float64               `json:"alpha"`
	Spearman      float64               `json:"spearman"`
	HeldOut       int                   `json:"held_out"`
	Probes        int                   `json:"probes"`
	ProbeTokens   int                   `json:"probe_tokens"`
}

// budgetObject is budget.json: the plan and the measurements it came from.
type budgetObject struct {
	Plan         *budget.Plan  `json:"plan"`
	Measurements *probe.Report `json:"measurements"`
}

// PlanBudget merges the shards' measurements, fits the sensitivity model,
// allocates one type per tensor under the goal (budget.MakePlan) and
// writes budget.json.
func (a *Activities) PlanBudget(ctx context.Context, in PlanBudgetInput) (PlanBudgetOutput, error) {
	bad := func(err error) (PlanBudgetOutput, error) {
		return PlanBudgetOutput{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	out, err := a.open(in.Output)
	if err != nil {
		return bad(err)
	}
	src, err := a.open(in.Model)
	if err != nil {
		return bad(err)
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		return PlanBudgetOutput{}, badInput(err)
	}
	var parts []*probe.Report
	for _, k := range in.Measurements {
		b, err := store.ReadAll(ctx, out, k)
		if err != nil {
			return PlanBudgetOutput{}, err
		}
		var rep probe.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return bad(fmt.Errorf("%s: %w", store.Describe(out, k), err))
		}
		if len(rep.Tensors) > 0 {
			parts = append(parts, &rep)
		}
	}
	rep, err := probe.Merge(parts...)
	if err != nil {
		return bad(err)
	}
	if err := rep.Fit(quant.Q4_0); err != nil {
		return bad(err)
	}
	names := make([]string, len(rep.Tensors))
	for i, t := range rep.Tensors {
		names[i] = t.Name
	}
	fixed, weights, err := probe.Accounting(ck, names)
	if err != nil {
		return bad(err)
	}
	pl, err := budget.MakePlan(rep.Tensors, rep.Sensitivity, fixed, weights, in.Goal)
	if err != nil {
		return bad(err)
	}
	b, err := json.MarshalIndent(budgetObject{Plan: pl, Measurements: rep}, "", "  ")
	if err != nil {
		return PlanBudgetOutput{}, err
	}
	if _, err := out.Put(ctx, BudgetKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return PlanBudgetOutput{}, err
	}
	po := PlanBudgetOutput{Key: BudgetKey, Types: map[string]quant.Type{}, BitsPerWeight: pl.BitsPerWeight, Bytes: pl.Bytes,
		PredictedKLD: pl.PredictedKLD, Gap: pl.Gap, Alpha: rep.Sensitivity.Alpha, Spearman: rep.Spearman, HeldOut: rep.HeldOut,
		Probes: len(rep.Probes), ProbeTokens: rep.ProbeTokens}
	for _, t := range pl.Tensors {
		typ, err := quant.ParseType(t.Type)
		if err != nil {
			return bad(fmt.Errorf("tensor %s: %w", t.Name, err))
		}
		po.Types[t.Name] = typ
	}
	return po, nil
}
