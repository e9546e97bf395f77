#include "textflag.h"

// func dot4Lanes(w, x0, x1, x2, x3 []float32, n int, acc *[16]float32)
//
// For each token k (x0..x3) and lane j < 4, acc[4k+j] = Σ over i ≡ j
// (mod 4), i < n, in increasing i, of float32(w[i]·xk[i]): MULPS rounds
// each product to float32 and ADDPS adds it to the lane, exactly the
// operations of dot's four partial sums s0..s3. n must be a multiple of 4 and
// at most the length of every slice (the caller checks).
TEXT ·dot4Lanes(SB), NOSPLIT, $0-136
	MOVQ w_base+0(FP), SI
	MOVQ x0_base+24(FP), R8
	MOVQ x1_base+48(FP), R9
	MOVQ x2_base+72(FP), R10
	MOVQ x3_base+96(FP), R11
	MOVQ n+120(FP), CX
	MOVQ acc+128(FP), AX
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	SHRQ $2, CX
	JZ   done

loop:
	MOVUPS (SI), X4
	MOVUPS (R8), X5
	MULPS  X4, X5
	ADDPS  X5, X0
	MOVUPS (R9), X6
	MULPS  X4, X6
	ADDPS  X6, X1
	MOVUPS (R10), X7
	MULPS  X4, X7
	ADDPS  X7, X2
	MOVUPS (R11), X8
	MULPS  X4, X8
	ADDPS  X8, X3
	ADDQ   $16, SI
	ADDQ   $16, R8
	ADDQ   $16, R9
	ADDQ   $16, R10
	ADDQ   $16, R11
	DECQ   CX
	JNZ    loop

done:
	MOVUPS X0, 0(AX)
	MOVUPS X1, 16(AX)
	MOVUPS X2, 32(AX)
	MOVUPS X3, 48(AX)
	RET

// func dot8Lanes(w, x []float32, stride, n int, acc *[32]float32)
//
// The same for eight tokens whose rows start stride values apart in x:
// token k's row is x[k·stride:]. acc[4k+j] is token k's partial sum s_j.
// Eight independent accumulators keep both SSE adders busy. n must be a
// multiple of 4, and len(x) at least 7·stride+n (the caller checks).
TEXT ·dot8Lanes(SB), NOSPLIT, $0-72
	MOVQ w_base+0(FP), SI
	MOVQ x_base+24(FP), DI
	MOVQ stride+48(FP), DX
	MOVQ n+56(FP), CX
	MOVQ acc+64(FP), AX
	SHLQ $2, DX                 // stride in bytes
	LEAQ (DX)(DX*2), BX         // 3·stride
	LEAQ (DI)(DX*4), R8         // row of token 4
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORPS X4, X4
	XORPS X5, X5
	XORPS X6, X6
	XORPS X7, X7
	SHRQ $2, CX
	JZ   done8

loop8:
	MOVUPS (SI), X8
	MOVUPS (DI), X9
	MULPS  X8, X9
	ADDPS  X9, X0
	MOVUPS (DI)(DX*1), X10
	MULPS  X8, X10
	ADDPS  X10, X1
	MOVUPS (DI)(DX*2), X11
	MULPS  X8, X11
	ADDPS  X11, X2
	MOVUPS (DI)(BX*1), X12
	MULPS  X8, X12
	ADDPS  X12, X3
	MOVUPS (R8), X9
	MULPS  X8, X9
	ADDPS  X9, X4
	MOVUPS (R8)(DX*1), X10
	MULPS  X8, X10
	ADDPS  X10, X5
	MOVUPS (R8)(DX*2), X11
	MULPS  X8, X11
	ADDPS  X11, X6
	MOVUPS (R8)(BX*1), X12
	MULPS  X8, X12
	ADDPS  X12, X7
	ADDQ   $16, SI
	ADDQ   $16, DI
	ADDQ   $16, R8
	DECQ   CX
	JNZ    loop8

done8:
	MOVUPS X0, 0(AX)
	MOVUPS X1, 16(AX)
	MOVUPS X2, 32(AX)
	MOVUPS X3, 48(AX)
	MOVUPS X4, 64(AX)
	MOVUPS X5, 80(AX)
	MOVUPS X6, 96(AX)
	MOVUPS X7, 112(AX)
	RET
