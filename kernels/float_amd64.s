#include "textflag.h"

// func f32Tile3x4(w *float32, ws int, x *float32, xs int, n int, acc *float32)
//
// Continues the eight lanes of row i, token k, held in acc[(i*4+k)*8 : +8]:
// for each step of eight values in increasing order, lane ← fma(w, x,
// lane) (VFMADD231PS rounds once, as fma32 does). n is a positive multiple
// of 8; strides are in bytes.
TEXT ·f32Tile3x4(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), SI
	MOVQ ws+8(FP), R8
	MOVQ x+16(FP), DI
	MOVQ xs+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ acc+40(FP), AX
	LEAQ (R9)(R9*2), R10
	VMOVUPS 0(AX), Y0
	VMOVUPS 128(AX), Y1
	VMOVUPS 256(AX), Y2
	VMOVUPS 32(AX), Y3
	VMOVUPS 160(AX), Y4
	VMOVUPS 288(AX), Y5
	VMOVUPS 64(AX), Y6
	VMOVUPS 192(AX), Y7
	VMOVUPS 320(AX), Y8
	VMOVUPS 96(AX), Y9
	VMOVUPS 224(AX), Y10
	VMOVUPS 352(AX), Y11

loop3x4:
	VMOVUPS (SI), Y12
	VMOVUPS (SI)(R8*1), Y13
	VMOVUPS (SI)(R8*2), Y14
	VMOVUPS (DI), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y1
	VFMADD231PS Y15, Y14, Y2
	VMOVUPS (DI)(R9*1), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y4
	VFMADD231PS Y15, Y14, Y5
	VMOVUPS (DI)(R9*2), Y15
	VFMADD231PS Y15, Y12, Y6
	VFMADD231PS Y15, Y13, Y7
	VFMADD231PS Y15, Y14, Y8
	VMOVUPS (DI)(R10*1), Y15
	VFMADD231PS Y15, Y12, Y9
	VFMADD231PS Y15, Y13, Y10
	VFMADD231PS Y15, Y14, Y11
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loop3x4

	VMOVUPS Y0, 0(AX)
	VMOVUPS Y1, 128(AX)
	VMOVUPS Y2, 256(AX)
	VMOVUPS Y3, 32(AX)
	VMOVUPS Y4, 160(AX)
	VMOVUPS Y5, 288(AX)
	VMOVUPS Y6, 64(AX)
	VMOVUPS Y7, 192(AX)
	VMOVUPS Y8, 320(AX)
	VMOVUPS Y9, 96(AX)
	VMOVUPS Y10, 224(AX)
	VMOVUPS Y11, 352(AX)
	VZEROUPPER
	RET

// func f32Tile1x4(w *float32, ws int, x *float32, xs int, n int, acc *float32)
//
// Continues the eight lanes of row i, token k, held in acc[(i*4+k)*8 : +8]:
// for each step of eight values in increasing order, lane ← fma(w, x,
// lane) (VFMADD231PS rounds once, as fma32 does). n is a positive multiple
// of 8; strides are in bytes.
TEXT ·f32Tile1x4(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), SI
	MOVQ ws+8(FP), R8
	MOVQ x+16(FP), DI
	MOVQ xs+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ acc+40(FP), AX
	LEAQ (R9)(R9*2), R10
	VMOVUPS 0(AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS 64(AX), Y2
	VMOVUPS 96(AX), Y3

loop1x4:
	VMOVUPS (SI), Y12
	VMOVUPS (DI), Y15
	VFMADD231PS Y15, Y12, Y0
	VMOVUPS (DI)(R9*1), Y15
	VFMADD231PS Y15, Y12, Y1
	VMOVUPS (DI)(R9*2), Y15
	VFMADD231PS Y15, Y12, Y2
	VMOVUPS (DI)(R10*1), Y15
	VFMADD231PS Y15, Y12, Y3
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loop1x4

	VMOVUPS Y0, 0(AX)
	VMOVUPS Y1, 32(AX)
	VMOVUPS Y2, 64(AX)
	VMOVUPS Y3, 96(AX)
	VZEROUPPER
	RET

// func f32Tile3x1(w *float32, ws int, x *float32, xs int, n int, acc *float32)
//
// Continues the eight lanes of row i, token k, held in acc[(i*4+k)*8 : +8]:
// for each step of eight values in increasing order, lane ← fma(w, x,
// lane) (VFMADD231PS rounds once, as fma32 does). n is a positive multiple
// of 8; strides are in bytes.
TEXT ·f32Tile3x1(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), SI
	MOVQ ws+8(FP), R8
	MOVQ x+16(FP), DI
	MOVQ xs+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ acc+40(FP), AX
	LEAQ (R9)(R9*2), R10
	VMOVUPS 0(AX), Y0
	VMOVUPS 128(AX), Y1
	VMOVUPS 256(AX), Y2

loop3x1:
	VMOVUPS (SI), Y12
	VMOVUPS (SI)(R8*1), Y13
	VMOVUPS (SI)(R8*2), Y14
	VMOVUPS (DI), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y1
	VFMADD231PS Y15, Y14, Y2
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loop3x1

	VMOVUPS Y0, 0(AX)
	VMOVUPS Y1, 128(AX)
	VMOVUPS Y2, 256(AX)
	VZEROUPPER
	RET

// func f32Tile1x1(w *float32, x *float32, n int, acc *float32)
//
// Continues the eight lanes of row i, token k, held in acc[(i*4+k)*8 : +8]:
// for each step of eight values in increasing order, lane ← fma(w, x,
// lane) (VFMADD231PS rounds once, as fma32 does). n is a positive multiple
// of 8; strides are in bytes.
TEXT ·f32Tile1x1(SB), NOSPLIT, $0-32
	MOVQ w+0(FP), SI
	MOVQ x+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ acc+24(FP), AX
	VMOVUPS 0(AX), Y0

loop1x1:
	VMOVUPS (SI), Y12
	VMOVUPS (DI), Y15
	VFMADD231PS Y15, Y12, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loop1x1

	VMOVUPS Y0, 0(AX)
	VZEROUPPER
	RET

// func axpy8(dst *float32, a float32, x *float32, n int)
//
// dst[i] ← fma(a, x[i], dst[i]) for i < n, eight at a time; n is a
// positive multiple of 8.
TEXT ·axpy8(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	VBROADCASTSS a+8(FP), Y1
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX

loopaxpy:
	VMOVUPS (DI), Y0
	VFMADD231PS (SI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loopaxpy
	VZEROUPPER
	RET

// func halfToFloat8(dst *float32, src *uint16, n int)
//
// dst[i] ← the float32 value of the IEEE half src[i] (VCVTPH2PS, exact),
// eight at a time; n is a positive multiple of 8.
TEXT ·halfToFloat8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

loophalf:
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loophalf
	VZEROUPPER
	RET

// func roundHalf8(x *float32, n int)
//
// x[i] ← x[i] rounded to the nearest IEEE half (VCVTPS2PH with
// round-to-nearest-even, then back), eight at a time; n is a positive
// multiple of 8.
TEXT ·roundHalf8(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX

loopround:
	VMOVUPS (DI), Y0
	VCVTPS2PH $0, Y0, X1
	VCVTPH2PS X1, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ  loopround
	VZEROUPPER
	RET
