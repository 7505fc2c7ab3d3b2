//go:build !purego

#include "textflag.h"

// func tanhAVX2(dst, src *float32, n int, tab *[13][8]float32, scale, mul, add float32)
//
// tab rows: 0 clamp high, 1 clamp low, 2..8 the numerator's coefficients
// α13 α11 α9 α7 α5 α3 α1, 9..12 the denominator's β6 β4 β2 β0 (see tanh32).
TEXT ·tanhAVX2(SB), NOSPLIT, $0-44
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ tab+24(FP), R8
	VBROADCASTSS scale+32(FP), Y0
	VBROADCASTSS mul+36(FP), Y1
	VBROADCASTSS add+40(FP), Y2
	VMOVUPS 0(R8), Y8
	VMOVUPS 32(R8), Y9
	SHRQ $3, CX
	JZ done

loop:
	VMOVUPS (SI), Y3
	VMULPS Y0, Y3, Y3
	// Clamp with x as the second source, so a NaN passes through.
	VMINPS Y3, Y8, Y3
	VMAXPS Y3, Y9, Y3
	VMULPS Y3, Y3, Y4
	VMOVUPS 64(R8), Y5
	VFMADD213PS 96(R8), Y4, Y5
	VFMADD213PS 128(R8), Y4, Y5
	VFMADD213PS 160(R8), Y4, Y5
	VFMADD213PS 192(R8), Y4, Y5
	VFMADD213PS 224(R8), Y4, Y5
	VFMADD213PS 256(R8), Y4, Y5
	VMULPS Y3, Y5, Y5
	VMOVUPS 288(R8), Y6
	VFMADD213PS 320(R8), Y4, Y6
	VFMADD213PS 352(R8), Y4, Y6
	VFMADD213PS 384(R8), Y4, Y6
	VDIVPS Y6, Y5, Y5
	VFMADD213PS Y2, Y1, Y5
	VMOVUPS Y5, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET
