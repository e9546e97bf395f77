#include "textflag.h"

// func gridStats8(x, w *float32, n int, c *gridParams, s *gridSums, L *int32)
//
// gridStatsGo eight elements at a time: lane k holds the elements i with
// i mod 8 = k; no fused multiply-add (every product rounded, as in Go).
// n is a positive multiple of 8.
TEXT ·gridStats8(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ w+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ c+24(FP), AX
	MOVQ s+32(FP), DX
	MOVQ L+40(FP), BX
	VBROADCASTSS 0(AX), Y8   // off
	VBROADCASTSS 4(AX), Y9   // ie
	VBROADCASTSS 8(AX), Y10  // bias
	VBROADCASTSS 12(AX), Y11 // qmax
	VBROADCASTSS 16(AX), Y12 // e
	VBROADCASTSS 20(AX), Y13 // qoff
	VXORPS Y14, Y14, Y14
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

loopgrid:
	VMOVUPS (SI), Y4          // x
	VMOVUPS (DI), Y5          // w
	VADDPS  Y8, Y4, Y6        // x + off
	VMULPS  Y9, Y6, Y6        // · ie
	VADDPS  Y10, Y6, Y6       // + bias
	VROUNDPS $1, Y6, Y6       // floor
	VMAXPS  Y14, Y6, Y6       // max(·, 0)
	VMINPS  Y11, Y6, Y6       // min(·, qmax)
	VCVTTPS2DQ Y6, Y7
	VMOVDQU Y7, (BX)          // u
	VSUBPS  Y13, Y6, Y6       // l = u − qoff
	VMULPS  Y12, Y6, Y7       // e·l
	VSUBPS  Y8, Y7, Y7        // − off
	VSUBPS  Y4, Y7, Y7        // d = x̂ − x
	VMULPS  Y5, Y7, Y15       // w·d
	VMULPS  Y7, Y15, Y15      // ·d
	VADDPS  Y15, Y0, Y0
	VMULPS  Y5, Y6, Y7        // w·l
	VADDPS  Y7, Y1, Y1
	VMULPS  Y6, Y7, Y15       // ·l
	VADDPS  Y15, Y2, Y2
	VMULPS  Y4, Y7, Y15       // w·l·x
	VADDPS  Y15, Y3, Y3
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, BX
	SUBQ $8, CX
	JNZ  loopgrid

	// Each accumulator: (l0+l4, l1+l5, l2+l6, l3+l7), then
	// (s0+s2) + (s1+s3).
	VEXTRACTF128 $1, Y0, X4
	VADDPS  X4, X0, X0
	VMOVHLPS X0, X0, X4
	VADDPS  X4, X0, X0
	VMOVSHDUP X0, X4
	VADDSS  X4, X0, X0
	MOVSS   X0, 0(DX)

	VEXTRACTF128 $1, Y1, X4
	VADDPS  X4, X1, X1
	VMOVHLPS X1, X1, X4
	VADDPS  X4, X1, X1
	VMOVSHDUP X1, X4
	VADDSS  X4, X1, X1
	MOVSS   X1, 4(DX)

	VEXTRACTF128 $1, Y2, X4
	VADDPS  X4, X2, X2
	VMOVHLPS X2, X2, X4
	VADDPS  X4, X2, X2
	VMOVSHDUP X2, X4
	VADDSS  X4, X2, X2
	MOVSS   X2, 8(DX)

	VEXTRACTF128 $1, Y3, X4
	VADDPS  X4, X3, X3
	VMOVHLPS X3, X3, X4
	VADDPS  X4, X3, X3
	VMOVSHDUP X3, X4
	VADDSS  X4, X3, X3
	MOVSS   X3, 12(DX)
	VZEROUPPER
	RET

// func gridErr8(x, w *float32, n int, c *gridParams) float32
//
// gridStats8's error alone (the same operations in the same order).
TEXT ·gridErr8(SB), NOSPLIT, $0-36
	MOVQ x+0(FP), SI
	MOVQ w+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ c+24(FP), AX
	VBROADCASTSS 0(AX), Y8   // off
	VBROADCASTSS 4(AX), Y9   // ie
	VBROADCASTSS 8(AX), Y10  // bias
	VBROADCASTSS 12(AX), Y11 // qmax
	VBROADCASTSS 16(AX), Y12 // e
	VBROADCASTSS 20(AX), Y13 // qoff
	VXORPS Y14, Y14, Y14
	VXORPS Y0, Y0, Y0

looperr:
	VMOVUPS (SI), Y4
	VADDPS  Y8, Y4, Y6
	VMULPS  Y9, Y6, Y6
	VADDPS  Y10, Y6, Y6
	VROUNDPS $1, Y6, Y6
	VMAXPS  Y14, Y6, Y6
	VMINPS  Y11, Y6, Y6
	VSUBPS  Y13, Y6, Y6
	VMULPS  Y12, Y6, Y7
	VSUBPS  Y8, Y7, Y7
	VSUBPS  Y4, Y7, Y7
	VMULPS  (DI), Y7, Y15
	VMULPS  Y7, Y15, Y15
	VADDPS  Y15, Y0, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  looperr

	VEXTRACTF128 $1, Y0, X4
	VADDPS  X4, X0, X0
	VMOVHLPS X0, X0, X4
	VADDPS  X4, X0, X0
	VMOVSHDUP X0, X4
	VADDSS  X4, X0, X0
	MOVSS   X0, ret+32(FP)
	VZEROUPPER
	RET
