package workflows

import (
	"encoding/json"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/activities"
)

// TestValidateInput: misspelt fields (at the top level and in the nested
// objects) and numbers out of range are refused, each named; a valid input
// passes.
func TestValidateInput(t *testing.T) {
	for _, tc := range []struct {
		json string
		want []string // "" = valid
	}{
		{`{"model":"m","output":"o","recipe":"q4_k_m","concurrency":4,"evaluation":{"text":"t","ctx":256}}`, nil},
		{`{"model":"m","output":"o","recpie":"q4_k_m"}`, []string{"unknown field recpie"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","evaluation":{"text":"t","ctxx":256},"rotation":{"kind":"hadamard","sead":1}}`,
			[]string{"unknown field evaluation.ctxx, rotation.sead"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","concurrency":-1}`, []string{"concurrency -1 is out of range (want 1 to 1000"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","concurrency":5000,"shard_attempts":-2}`,
			[]string{"concurrency 5000 is out of range", "shard_attempts -2 is out of range"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","max_shards_per_run":3000}`, []string{"max_shards_per_run 3000"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","heartbeat_seconds":100000}`, []string{"heartbeat_seconds 100000"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","evaluation":{"text":"t","parallel":-1}}`, []string{"evaluation.parallel -1"}},
		{`{"model":"m","output":"o","recipe":"q4_k_m","calibration":{"text":"t","chunks":-5}}`, []string{"calibration.chunks -5"}},
	} {
		var in QuantizeInput
		if err := json.Unmarshal([]byte(tc.json), &in); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		err := in.Validate()
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.json, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.json)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want %q", tc.json, err, w)
			}
		}
	}
}

// TestUnknownFieldFailsRun: a workflow input with a misspelt field (as
// `temporal workflow start --input-file` gives it) fails the run at once
// with a non-retryable BadInput error naming the field, before any
// activity.
func TestUnknownFieldFailsRun(t *testing.T) {
	env, _ := newEnv(t)
	env.ExecuteWorkflow("QuantizeModel", json.RawMessage(`{"model":"`+fixture+`","output":"`+t.TempDir()+`","recipe":"q8_0","concurency":3}`))
	err := env.GetWorkflowError()
	var app *temporal.ApplicationError
	if err == nil || !strings.Contains(err.Error(), "unknown field concurency") || !asApp(err, &app) || app.Type() != activities.ErrTypeBadInput {
		t.Fatalf("workflow error %v", err)
	}
}

func asApp(err error, app **temporal.ApplicationError) bool {
	for e := err; e != nil; {
		if a, ok := e.(*temporal.ApplicationError); ok {
			*app = a
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}
