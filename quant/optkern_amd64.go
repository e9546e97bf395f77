package quant

import "golang.org/x/sys/cpu"

// gridAsmAvailable reports whether the CPU runs gridStats8 (AVX and AVX2;
// the kernel uses AVX instructions only, AVX2 is required as the kernels
// package does, for one rule across the project).
func gridAsmAvailable() bool { return cpu.X86.HasAVX && cpu.X86.HasAVX2 }

// gridStats8 is gridStatsGo for n a positive multiple of 8, eight lanes at
// a time (optkern_amd64.s).
//
//go:noescape
func gridStats8(x, w *float32, n int, c *gridParams, s *gridSums, L *int32)

// gridErr8 is gridErrGo for n a positive multiple of 8 (optkern_amd64.s).
//
//go:noescape
func gridErr8(x, w *float32, n int, c *gridParams) float32
