//go:build unix

package infer_test

import (
	"syscall"
	"time"
)

// processCPUTime is the user+system CPU time of the test process, used by
// the benchmarks to report throughput that other load on the machine does
// not distort.
func processCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
