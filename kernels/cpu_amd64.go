package kernels

// cpuid executes the CPUID instruction.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// hasF16C reports CPUID.1:ECX.F16C[bit 29] (x/sys/cpu does not).
func hasF16C() bool {
	_, _, c, _ := cpuid(1, 0)
	return c&(1<<29) != 0
}
