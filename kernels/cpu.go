package kernels

import "golang.org/x/sys/cpu"

// HasAVX2 reports whether the assembly kernels run on this CPU: amd64 with
// AVX2, FMA and F16C (and an OS that saves the YMM registers). It is fixed
// at start-up.
var HasAVX2 = hasAVX2()

func hasAVX2() bool {
	return asmAvailable && cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasFMA && hasF16C()
}
