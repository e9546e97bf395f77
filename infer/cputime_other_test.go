//go:build !unix

package infer_test

import "time"

// processCPUTime is unavailable here: the benchmarks report wall time only.
func processCPUTime() (time.Duration, bool) { return 0, false }
