package quant

// Q8_0 and Q4_0: 32-element blocks with one fp16 scale.
//
//	Q8_0 block (34 bytes): d fp16 | qs [32]int8        x = d·q
//	Q4_0 block (18 bytes): d fp16 | qs [16]byte        x = d·(nibble − 8)
//	Q4_0 nibbles: qs[j] low = element j, high = element j+16.

const (
	qk80        = 32
	blockQ80    = 34
	qk40        = 32
	blockQ40    = 18
	halfQK40    = qk40 / 2
	q40Offset   = 8.5
	q80MaxQuant = 127
)

// quantizeRowQ80Ref is quantize_row_q8_0_ref: d = max|x|/127, q = roundf(x/d).
func quantizeRowQ80Ref(dst []byte, src []float32) {
	nb := len(src) / qk80
	for i := 0; i < nb; i++ {
		x := src[i*qk80 : (i+1)*qk80]
		y := dst[i*blockQ80 : (i+1)*blockQ80]
		var amax float32
		for _, v := range x {
			amax = maxf(amax, abs32(v))
		}
		d := amax / q80MaxQuant
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y, d)
		qs := y[2:blockQ80]
		for j, v := range x {
			qs[j] = byte(int8(int32(roundf(v * id))))
		}
	}
}

// dequantizeRowQ80 is dequantize_row_q8_0.
func dequantizeRowQ80(dst []float32, src []byte) {
	nb := len(dst) / qk80
	for i := 0; i < nb; i++ {
		b := src[i*blockQ80 : (i+1)*blockQ80]
		y := dst[i*qk80 : (i+1)*qk80]
		d := getF16(b)
		qs := b[2:blockQ80]
		for j := range y {
			y[j] = float32(int8(qs[j])) * d
		}
	}
}

// quantizeRowQ40Ref is quantize_row_q4_0_ref: d = (value of largest
// magnitude)/−8, q = min(15, trunc(x/d + 8.5)).
func quantizeRowQ40Ref(dst []byte, src []float32) {
	nb := len(src) / qk40
	for i := 0; i < nb; i++ {
		x := src[i*qk40 : (i+1)*qk40]
		y := dst[i*blockQ40 : (i+1)*blockQ40]
		d := signedMax32(x) / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		putF16(y, d)
		qs := y[2:blockQ40]
		for j := 0; j < halfQK40; j++ {
			x0 := float32(x[j] * id)
			x1 := float32(x[halfQK40+j] * id)
			qs[j] = q40Level(x0) | q40Level(x1)<<4
		}
	}
}

// q40Level is MIN(15, (int8_t)(v + 8.5f)) as a byte.
func q40Level(v float32) uint8 {
	l := int8(int32(v + q40Offset))
	if l > 15 {
		l = 15
	}
	return uint8(l)
}

// dequantizeRowQ40 is dequantize_row_q4_0.
func dequantizeRowQ40(dst []float32, src []byte) {
	nb := len(dst) / qk40
	for i := 0; i < nb; i++ {
		b := src[i*blockQ40 : (i+1)*blockQ40]
		y := dst[i*qk40 : (i+1)*qk40]
		d := getF16(b)
		qs := b[2:blockQ40]
		for j := 0; j < halfQK40; j++ {
			y[j] = float32(int32(qs[j]&0x0F)-8) * d
			y[j+halfQK40] = float32(int32(qs[j]>>4)-8) * d
		}
	}
}
