package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ohms-project/adaptq/budget"
	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/infer"
	"github.com/ohms-project/adaptq/internal/progress"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/probe"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// BudgetKey is the budget's plan beside the other outputs.
const budgetKey = "budget.json"

// budgetFlags choose a budget: --target-bpw or --max-kld, and the text the
// tensors are probed on.
type budgetFlags struct {
	targetBPW, maxKLD *float64
	text              *string
	ctx, windows      *int
	alphaEvery        *int
	evalText          *string
	evalCtx, evalWin  *int
	types             *string
}

func addBudgetFlags(fs *flag.FlagSet) *budgetFlags {
	return &budgetFlags{
		targetBPW:  fs.Float64("target-bpw", 0, "budget: the least predicted KL divergence within this many bits per weight over the whole file"),
		maxKLD:     fs.Float64("max-kld", 0, "budget: the smallest file whose mean KL divergence (measured on --eval-text) is at most this"),
		text:       fs.String("budget-text", "", "text the tensors are probed on (a calibration text, not the evaluation text)"),
		ctx:        fs.Int("budget-ctx", 128, "context length of a probe window"),
		windows:    fs.Int("budget-windows", 1, "probe windows (each tensor's probe runs the model over all of them)"),
		alphaEvery: fs.Int("budget-alpha-every", 8, "also probe every n-th tensor at Q2_K/Q5_0 to fit the exponent α (0: α = 1)"),
		evalText:   fs.String("eval-text", "", "text on which the budgeted file's KL divergence is measured (needed by --max-kld)"),
		evalCtx:    fs.Int("eval-ctx", 128, "context length of an evaluation window"),
		evalWin:    fs.Int("eval-windows", 4, "evaluation windows (0: all)"),
		types:      fs.String("budget-types", "", "comma-separated candidate types the plan may choose (default: every measured type: Q2_K … Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q8_0, F16)"),
	}
}

// goal returns the budget asked for, and false when none is.
func (b *budgetFlags) goal() (budget.Goal, bool, error) {
	g := budget.Goal{TargetBPW: *b.targetBPW, MaxKLD: *b.maxKLD}
	if g.TargetBPW == 0 && g.MaxKLD == 0 {
		if *b.text != "" || *b.evalText != "" {
			return g, false, &failure{code: exitBadInput, line: "--budget-text and --eval-text go with a budget: add --target-bpw or --max-kld"}
		}
		return g, false, nil
	}
	if err := g.Validate(); err != nil {
		return g, false, &failure{code: exitBadInput, line: "--target-bpw/--max-kld: " + err.Error()}
	}
	switch {
	case *b.text == "":
		return g, false, &failure{code: exitBadInput, line: "a budget needs --budget-text <file>: the text each tensor's sensitivity is measured on"}
	case g.MaxKLD > 0 && *b.evalText == "":
		return g, false, &failure{code: exitBadInput, line: "--max-kld needs --eval-text <file>: the text the result's KL divergence is measured on"}
	case *b.evalText != "" && *b.evalText == *b.text:
		return g, false, &failure{code: exitBadInput, line: "--eval-text is the --budget-text: measure on text held out from the probes"}
	case *b.ctx < 4 || *b.windows < 1 || *b.evalCtx < 4 || *b.evalWin < 0 || *b.alphaEvery < 0:
		return g, false, &failure{code: exitBadInput, line: "--budget-ctx/--eval-ctx want at least 4, --budget-windows at least 1, --eval-windows and --budget-alpha-every 0 or more"}
	}
	return g, true, nil
}

// budgetRun holds what a budget needs across its passes: the original
// model, its probes and the evaluation.
type budgetRun struct {
	ck      *model.Checkpoint
	f       *budgetFlags
	orig    *infer.Model
	report  *probe.Report
	fixed   int64
	weights int64
	evalW   []infer.Window
	evalRef infer.Reference
	seconds float64 // of the measurement
	reused  bool    // the measurement was read from the store
	key     string  // of the measurement
}

// measureRecord is a stored measurement.
type measureRecord struct {
	Report  *probe.Report `json:"report"`
	Seconds float64       `json:"seconds"`
}

// windowsOf tokenizes a text file with the checkpoint's tokenizer into at
// most n windows (0: all) of the full protocol.
func windowsOf(ctx context.Context, ck *model.Checkpoint, path string, ctxLen, n int) ([]infer.Window, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return windowsOfText(ctx, ck, path, text, ctxLen, n)
}

// windowsOfText is windowsOf of a file's bytes.
func windowsOfText(ctx context.Context, ck *model.Checkpoint, path string, text []byte, ctxLen, n int) ([]infer.Window, error) {
	tok, err := loadTokenizer(ctx, &loadedModel{Location: ck.Store.Location(), Config: ck.Config, Tokens: ck.Store})
	if err != nil {
		return nil, err
	}
	ids := toInt32(tok.Encode(string(text), false))
	bos, err := bosID(ck.Config, tok)
	if err != nil {
		return nil, err
	}
	w, err := infer.Windows(ids, infer.ProtocolFull, ctxLen, bos)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n > 0 && n < len(w) {
		w = w[:n]
	}
	return w, nil
}

// measureKey is the object key of a measurement: derived from everything
// that determines it (the checkpoint's fingerprint, the probe text's
// bytes, the probe settings, the importance matrix's SHA-256, the codec
// version), so a second budget on the
// same model and text reuses it.
func measureKey(ck *model.Checkpoint, text []byte, f *budgetFlags, o probe.Options, imatrixSHA string) string {
	h := sha256.New()
	oj, _ := json.Marshal(struct {
		Types        []quant.Type
		Probe, Alpha quant.Type
		AlphaEvery   int
		Optimized    bool
		Ctx, Windows int
	}{probe.DefaultTypes, o.ProbeType, o.AlphaType, o.AlphaEvery, o.Optimized, *f.ctx, *f.windows})
	fmt.Fprintf(h, "adaptq-budget-1\n%s\n%s\n%x\n%s\n", shards.CodecVersion, shards.MakePlan(ck).SourceID, sha256.Sum256(text), oj)
	return fmt.Sprintf("budget/measure-%s.json", hex.EncodeToString(h.Sum(nil))[:24])
}

// measureBudget loads the original model and measures every tensor, or
// reads the measurement a previous run stored in out under the same key.
func measureBudget(ctx context.Context, ck *model.Checkpoint, out store.Store, r shards.Recipe, imp shards.Importance, f *budgetFlags, stderr io.Writer) (*budgetRun, error) {
	if r.Rotation.Enabled() {
		return nil, &failure{code: exitBadInput, line: "a budget is measured on the unrotated weights: drop --rotate or the budget"}
	}
	text, err := os.ReadFile(*f.text)
	if err != nil {
		return nil, fmt.Errorf("--budget-text: %w", err)
	}
	opts := probe.Options{Optimized: r.Optimized, ProbeType: quant.Q4_0, AlphaType: quant.Q5_0, AlphaEvery: *f.alphaEvery}
	imSHA := ""
	if imp != nil {
		opts.Importance = func(name string) []float32 { return imp[name] }
		imSHA = r.Imatrix.SHA256
	}
	key := measureKey(ck, text, f, opts, imSHA)
	start := time.Now()
	orig, err := infer.LoadModel(ctx, ck)
	if err != nil {
		return nil, err
	}
	windows, err := windowsOfText(ctx, ck, *f.text, text, *f.ctx, *f.windows)
	if err != nil {
		return nil, fmt.Errorf("--budget-text: %w", err)
	}
	targets, err := probe.Targets(orig.Weights())
	if err != nil {
		return nil, err
	}
	br := &budgetRun{ck: ck, f: f, orig: orig, key: key}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	if br.fixed, br.weights, err = probe.Accounting(ck, names); err != nil {
		return nil, err
	}
	var cached measureRecord
	if b, err := store.ReadAll(ctx, out, key); err == nil && json.Unmarshal(b, &cached) == nil && cached.Report != nil {
		br.report, br.seconds, br.reused = cached.Report, cached.Seconds, true
	} else {
		p, err := probe.NewProber(ctx, orig, windows)
		if err != nil {
			return nil, err
		}
		bar := progress.New(stderr, "probe", int64(len(targets)), false)
		opts.Progress = func(_ string, done, _ int) { bar.Set(int64(done)) }
		if br.report, err = probe.Measure(ctx, p, targets, opts); err != nil {
			return nil, err
		}
		bar.Done()
		br.seconds = time.Since(start).Seconds()
		b, err := json.Marshal(measureRecord{Report: br.report, Seconds: br.seconds})
		if err != nil {
			return nil, err
		}
		if _, err := out.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			return nil, fmt.Errorf("write %s: %w", key, err)
		}
	}
	if *f.evalText != "" {
		if br.evalW, err = windowsOf(ctx, ck, *f.evalText, *f.evalCtx, *f.evalWin); err != nil {
			return nil, fmt.Errorf("--eval-text: %w", err)
		}
		br.evalRef = infer.ModelReference{Model: orig}
	}
	return br, nil
}

// candidates are the measured tensors with only the types --budget-types
// allows.
func (br *budgetRun) candidates() ([]budget.Measured, error) {
	if *br.f.types == "" {
		return br.report.Tensors, nil
	}
	allow := map[string]bool{}
	for _, n := range strings.Split(*br.f.types, ",") {
		t, err := quant.ParseType(strings.TrimSpace(n))
		if err != nil {
			return nil, &failure{code: exitBadInput, line: "--budget-types: " + err.Error()}
		}
		allow[t.String()] = true
	}
	out := make([]budget.Measured, len(br.report.Tensors))
	for i, m := range br.report.Tensors {
		out[i] = m
		out[i].Points = nil
		for _, p := range m.Points {
			if allow[p.Type] {
				out[i].Points = append(out[i].Points, p)
			}
		}
		if len(out[i].Points) == 0 {
			return nil, &failure{code: exitBadInput, line: fmt.Sprintf("--budget-types %s: none of them holds the rows of %s; add F16 or a 32-block type", *br.f.types, m.Name)}
		}
	}
	return out, nil
}

// plan allocates under g and returns the recipe that quantizes with it.
func (br *budgetRun) plan(r shards.Recipe, g budget.Goal) (shards.Recipe, *budget.Plan, error) {
	ms, err := br.candidates()
	if err != nil {
		return r, nil, err
	}
	pl, err := budget.MakePlan(ms, br.report.Sensitivity, br.fixed, br.weights, g)
	if err != nil {
		return r, nil, &failure{code: exitBadInput, line: err.Error(), err: err}
	}
	r.Tensors = map[string]quant.Type{}
	for _, t := range pl.Tensors {
		typ, err := quant.ParseType(t.Type)
		if err != nil {
			return r, nil, err
		}
		r.Tensors[t.Name] = typ
	}
	return r, pl, nil
}

// evaluate measures the exported file's mean KL divergence and PPL on the
// evaluation windows against the original model.
func (br *budgetRun) evaluate(ctx context.Context, out store.Store, key string) (infer.Result, error) {
	m, err := infer.LoadGGUF(ctx, out, key, infer.Options{})
	if err != nil {
		return infer.Result{}, err
	}
	s, err := infer.Evaluate(ctx, m, br.evalW, infer.EvalOptions{Reference: br.evalRef})
	if err != nil {
		return infer.Result{}, err
	}
	return s.Result(), nil
}

// budgetRecord is budget.json: the plan, the measurements it came from and
// what the result measured.
type budgetRecord struct {
	Plan    *budget.Plan  `json:"plan"`
	Report  *probe.Report `json:"measurements"`
	Seconds float64       `json:"measure_seconds"`
	// MeasureKey is the stored measurement; Reused says it was read, not
	// measured, by this run.
	MeasureKey string `json:"measure_key"`
	Reused     bool   `json:"reused"`
	// Measured is the result's evaluation on the evaluation text, when one
	// was given; Passes counts the plans tried (a --max-kld run re-plans
	// when its first file misses the bound).
	Measured *infer.Result `json:"measured,omitempty"`
	EvalText string        `json:"eval_text,omitempty"`
	Passes   int           `json:"passes"`
}

func writeBudget(ctx context.Context, out store.Store, rec *budgetRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if _, err := out.Put(ctx, budgetKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write %s: %w", budgetKey, err)
	}
	return nil
}

func printBudget(w io.Writer, rec *budgetRecord, measuredBPW float64) {
	g := rec.Plan.Goal
	if g.TargetBPW > 0 {
		fmt.Fprintf(w, "budget       %.3f bits/weight (whole file)\n", g.TargetBPW)
	} else {
		fmt.Fprintf(w, "budget       mean KLD ≤ %.5g on %s\n", g.MaxKLD, rec.EvalText)
	}
	s := rec.Plan.Sensitivity
	reused := ""
	if rec.Reused {
		reused = " (reused from " + rec.MeasureKey + ")"
	}
	fmt.Fprintf(w, "sensitivity  KLD_t = S_t·err_t^α, α %.3f; %d probes on %d tokens in %.1fs%s; held-out rank correlation %.3f (%d tensors)\n",
		s.Alpha, len(rec.Report.Probes), rec.Report.ProbeTokens, rec.Seconds, reused, rec.Report.Spearman, rec.Report.HeldOut)
	counts := map[string]int{}
	for _, t := range rec.Plan.Tensors {
		counts[t.Type]++
	}
	fmt.Fprintf(w, "plan         %v\n", counts)
	fmt.Fprintf(w, "predicted    %.3f bits/weight, mean KLD %.5f (gap ≤ %.3g)\n", rec.Plan.BitsPerWeight, rec.Plan.PredictedKLD, rec.Plan.Gap)
	if rec.Measured != nil {
		fmt.Fprintf(w, "measured     %.3f bits/weight, mean KLD %.5f, PPL %.4f (original %.4f), top-1 %.2f%% on %s (%d tokens), %d pass(es)\n",
			measuredBPW, rec.Measured.KLMean, rec.Measured.PPL, rec.Measured.RefPPL, 100*rec.Measured.Top1, rec.EvalText, rec.Measured.Tokens, rec.Passes)
	} else {
		fmt.Fprintf(w, "measured     %.3f bits/weight (no --eval-text: KL divergence not measured)\n", measuredBPW)
	}
}

// exportBudget measures, plans and exports under the goal; a --max-kld
// run whose file misses the bound on the evaluation text re-plans with the
// bound scaled by predicted/measured (at most maxPasses plans in all).
func exportBudget(ctx context.Context, ck *model.Checkpoint, dst store.Store, r shards.Recipe, imp shards.Importance, f *budgetFlags, g budget.Goal,
	run func(shards.Recipe) (*export.Summary, []export.ShardRecord, error), stderr io.Writer) (shards.Recipe, *export.Summary, []export.ShardRecord, *budgetRecord, error) {
	const maxPasses = 3
	br, err := measureBudget(ctx, ck, dst, r, imp, f, stderr)
	if err != nil {
		return r, nil, nil, nil, err
	}
	goal := g
	for pass := 1; ; pass++ {
		rb, pl, err := br.plan(r, goal)
		if err != nil {
			return r, nil, nil, nil, err
		}
		pl.Goal = g
		sum, recs, err := run(rb)
		if err != nil {
			return r, nil, nil, nil, err
		}
		rec := &budgetRecord{Plan: pl, Report: br.report, Seconds: br.seconds, Reused: br.reused, MeasureKey: br.key, Passes: pass}
		if br.evalW != nil {
			res, err := br.evaluate(ctx, dst, sum.GGUFKey)
			if err != nil {
				return r, nil, nil, nil, err
			}
			rec.Measured, rec.EvalText = &res, *f.evalText
		}
		if err := writeBudget(ctx, dst, rec); err != nil {
			return r, nil, nil, nil, err
		}
		if g.MaxKLD == 0 || rec.Measured.KLMean <= g.MaxKLD || pass == maxPasses || pl.PredictedKLD <= 0 {
			if g.MaxKLD > 0 && rec.Measured.KLMean > g.MaxKLD {
				fmt.Fprintf(stderr, "budget: after %d passes the file's mean KLD %.5f is still above %.5g\n", pass, rec.Measured.KLMean, g.MaxKLD)
			}
			return rb, sum, recs, rec, nil
		}
		fmt.Fprintf(stderr, "budget: pass %d measured mean KLD %.5f > %.5g (predicted %.5f); re-planning\n", pass, rec.Measured.KLMean, g.MaxKLD, pl.PredictedKLD)
		goal.MaxKLD = g.MaxKLD * pl.PredictedKLD / rec.Measured.KLMean * 0.95
	}
}
