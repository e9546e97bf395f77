package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/store"
)

const (
	budgetText = "../../testdata/text/tinystories-valid-sample.txt"
	budgetEval = "../../testdata/text/go-eval.txt"
)

// export --target-bpw writes a file within the budget whose tensors have
// the plan's types, and budget.json with the plan, the measurements and
// the measured result; --max-kld's file meets its bound on the evaluation
// text.
func TestExportBudget(t *testing.T) {
	out := t.TempDir()
	code, stdout, errs := runCLI("export", "--model", "../../testdata/models/stories260k", "--type", "q8_0", "--target-bpw", "7.5",
		"--budget-text", budgetText, "--budget-windows", "2", "--eval-text", budgetEval, "--eval-windows", "2", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rec := readBudget(t, out)
	if rec.Plan.BitsPerWeight > 7.5 || rec.Measured == nil || rec.Measured.KLMean <= 0 || len(rec.Report.Probes) == 0 {
		t.Fatalf("plan %.3f bpw, measured %+v, %d probes", rec.Plan.BitsPerWeight, rec.Measured, len(rec.Report.Probes))
	}
	if !strings.Contains(stdout, "budget       7.500 bits/weight") || !strings.Contains(stdout, "predicted    ") || !strings.Contains(stdout, "measured     ") {
		t.Fatalf("summary lacks the budget lines:\n%s", stdout)
	}
	// Every tensor of the GGUF has the plan's type; more than one type is used.
	f, err := os.Open(filepath.Join(out, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	g, err := gguf.Read(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	want := rec.Plan.Types()
	used := map[string]bool{}
	var bytes int64
	for _, ti := range g.Tensors {
		bytes += int64(ti.Size)
		if w, ok := want[ti.Name]; ok {
			if got := quant.Type(ti.Type).String(); got != w {
				t.Errorf("%s: %s in the file, %s in the plan", ti.Name, got, w)
			}
			used[w] = true
		}
	}
	if len(used) < 2 {
		t.Errorf("plan uses one type only: %v", used)
	}
	if bytes != rec.Plan.Bytes {
		t.Errorf("file holds %d bytes of tensors, the plan predicted %d", bytes, rec.Plan.Bytes)
	}

	bound := rec.Measured.KLMean * 1.5
	out2 := t.TempDir()
	code, _, errs = runCLI("export", "--model", "../../testdata/models/stories260k", "--type", "q8_0", "--max-kld", jsonNum(bound),
		"--budget-text", budgetText, "--budget-windows", "2", "--eval-text", budgetEval, "--eval-windows", "2", "--out", out2)
	if code != 0 {
		t.Fatalf("--max-kld: exit %d: %s", code, errs)
	}
	rec2 := readBudget(t, out2)
	if rec2.Measured.KLMean > bound {
		t.Fatalf("--max-kld %g: measured %g after %d passes", bound, rec2.Measured.KLMean, rec2.Passes)
	}
	t.Logf("target 7.5 bpw: predicted KLD %.5f, measured %.5f; --max-kld %.5f: %.3f bpw, measured %.5f, %d pass(es)",
		rec.Plan.PredictedKLD, rec.Measured.KLMean, bound, rec2.Plan.BitsPerWeight, rec2.Measured.KLMean, rec2.Passes)
}

func jsonNum(v float64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func readBudget(t *testing.T, out string) *budgetRecord {
	t.Helper()
	s, _ := store.NewLocal(out)
	b, err := store.ReadAll(context.Background(), s, budgetKey)
	if err != nil {
		t.Fatal(err)
	}
	var rec budgetRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return &rec
}

// Budget flags that do not go together fail in one line before any work.
func TestExportBudgetErrors(t *testing.T) {
	fixture := "../../testdata/models/stories260k"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-bpw", "4"}, "a budget needs --budget-text"},
		{[]string{"--target-bpw", "4", "--max-kld", "0.1", "--budget-text", budgetText}, "not both"},
		{[]string{"--max-kld", "0.1", "--budget-text", budgetText}, "--max-kld needs --eval-text"},
		{[]string{"--target-bpw", "4", "--budget-text", budgetText, "--eval-text", budgetText}, "held out"},
		{[]string{"--budget-text", budgetText}, "add --target-bpw or --max-kld"},
		{[]string{"--target-bpw", "-2", "--budget-text", budgetText}, "positive"},
		{[]string{"--target-bpw", "4", "--budget-text", budgetText, "--rotate", "hadamard"}, "unrotated"},
		{[]string{"--target-bpw", "2", "--budget-text", budgetText}, "no allocation meets the budget"},
	} {
		args := append([]string{"export", "--model", fixture, "--type", "q8_0", "--out", t.TempDir()}, tc.args...)
		code, _, errs := runCLI(args...)
		if code != exitBadInput || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(lastLines(errs)), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", tc.args, code, errs, exitBadInput, tc.want)
		}
	}
}

// quantize refuses the same in one line, before any server starts.
func TestQuantizeBudgetErrors(t *testing.T) {
	fixture := "../../testdata/models/stories260k"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-bpw", "4"}, "a budget needs --budget-text"},
		{[]string{"--max-kld", "0.1", "--target-bpw", "4", "--budget-text", budgetText}, "not both"},
		{[]string{"--target-bpw", "4", "--budget-text", budgetText, "--text", budgetText}, "held out"},
		{[]string{"--target-bpw", "4", "--budget-text", budgetText, "--rotate", "hadamard"}, "unrotated"},
	} {
		args := append([]string{"quantize", "--model", fixture, "--recipe", "q8_0", "--out", t.TempDir()}, tc.args...)
		code, _, errs := runCLI(args...)
		if code != exitBadInput || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errs, exitBadInput, tc.want)
		}
	}
}

// lastLines drops progress-bar lines (carriage-return redraws).
func lastLines(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "\r") || strings.HasPrefix(l, "probe ") || strings.TrimSpace(l) == "" {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
