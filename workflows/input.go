package workflows

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Ranges of QuantizeInput's numbers (0 always means the default).
const (
	MaxConcurrency      = 1000  // shards in flight; a run holds at most 2,000 pending activities
	MaxShardsPerRunCap  = 2000  // max_shards_per_run
	MaxHeartbeatSeconds = 86400 // heartbeat_seconds: a day
	MaxShardAttempts    = 1000  // shard_attempts
	MaxParallel         = 1000  // evaluation.parallel, calibration.parallel
)

// versionValidate marks the runs that check their input (Validate) first.
const versionValidate = "validate-input"

// UnmarshalJSON decodes a QuantizeInput and remembers the names of the
// fields it does not know (top level, evaluation, calibration, rotation),
// so that Validate refuses a misspelt field instead of ignoring it.
func (in *QuantizeInput) UnmarshalJSON(b []byte) error {
	type plain QuantizeInput // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	p.unknown = unknownKeys(b, reflect.TypeOf(p), "")
	*in = QuantizeInput(p)
	return nil
}

// unknownKeys lists the keys of the JSON object b that are not fields of
// the struct type t, and those of its nested evaluation, calibration and
// rotation objects, as "prefix.key".
func unknownKeys(b []byte, t reflect.Type, prefix string) []string {
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		fields[name] = ft
	}
	var out []string
	for k, v := range raw {
		ft, ok := fields[k]
		switch {
		case !ok:
			out = append(out, prefix+k)
		case prefix == "" && (k == "evaluation" || k == "calibration" || k == "rotation") && ft.Kind() == reflect.Struct:
			out = append(out, unknownKeys(v, ft, k+".")...)
		}
	}
	sort.Strings(out)
	return out
}

// Validate checks a QuantizeInput before anything runs: no unknown field,
// every number in its range. (The files it names are PlanModel's to
// check.)
func (in *QuantizeInput) Validate() error {
	var errs []string
	if len(in.unknown) > 0 {
		errs = append(errs, fmt.Sprintf("unknown field %s", strings.Join(in.unknown, ", ")))
	}
	check := func(name string, v, hi int) {
		if v < 0 || v > hi {
			errs = append(errs, fmt.Sprintf("%s %d is out of range (want 1 to %d, or 0 for the default)", name, v, hi))
		}
	}
	check("concurrency", in.Concurrency, MaxConcurrency)
	check("max_shards_per_run", in.MaxShardsPerRun, MaxShardsPerRunCap)
	check("heartbeat_seconds", in.HeartbeatSeconds, MaxHeartbeatSeconds)
	check("shard_attempts", in.ShardAttempts, MaxShardAttempts)
	if ev := in.Evaluation; ev != nil {
		check("evaluation.chunk", ev.Chunk, 1<<20)
		check("evaluation.parallel", ev.Parallel, MaxParallel)
	}
	if c := in.Calibration; c != nil {
		check("calibration.chunks", c.Chunks, 1<<30)
		check("calibration.chunk", c.Chunk, 1<<20)
		check("calibration.parallel", c.Parallel, MaxParallel)
	}
	if len(errs) > 0 {
		return fmt.Errorf("QuantizeModel input: %s; correct the workflow input (README \"On a real Temporal cluster\" lists the fields)", strings.Join(errs, "; "))
	}
	return nil
}
