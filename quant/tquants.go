package quant

// Ternary types (BitNet b1.58, TriLMs): 256 elements in {−1, 0, +1}·d.
//
//	TQ1_0 (54 bytes): qs [48] (5 trits a byte) | qh [4] (4 trits a byte) | d fp16
//	TQ2_0 (66 bytes): qs [64] (2 bits a value, as value+1) | d fp16
//
// TQ1_0 stores a base-3 number of 5 trits t0..t4 (t0 most significant) as
// ceil(n·256/243), so that trit k is read back as the top bits of
// (byte·3^k mod 256)·3. The first 32 bytes hold elements m+32n (n = 0..4)
// of the first 160 elements, the next 16 bytes elements m+16n of the next
// 80, and qh[j] elements j+4m of the last 16 (with a zero fifth trit).

const (
	blockTQ10 = 54
	blockTQ20 = 66
)

// pow3 are the multipliers that bring trit k of a TQ1_0 byte to the top.
var pow3 = [6]uint8{1, 3, 9, 27, 81, 243}

// ternaryScale returns d = max|x| and its inverse (0 for an all-zero block).
func ternaryScale(x []float32) (d, id float32) {
	var amax float32
	for _, v := range x {
		amax = maxf(amax, abs32(v))
	}
	if amax != 0 {
		id = 1 / amax
	}
	return amax, id
}

// trit is lroundf(v·id)+1, the level of v in {0, 1, 2}.
func trit(v, id float32) uint8 { return uint8(lroundf(v*id) + 1) }

// packTrits5 is ceil(q·256/243) for a 5-trit number q, truncated to a byte.
func packTrits5(q uint8) uint8 { return uint8((uint32(q)*256 + (243 - 1)) / 243) }

// quantizeRowTQ10Ref is quantize_row_tq1_0_ref.
func quantizeRowTQ10Ref(dst []byte, src []float32) {
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockTQ10 : (i+1)*blockTQ10]
		d, id := ternaryScale(x)
		putF16(y[52:], d)
		qs, qh := y[0:48], y[48:52]

		for m := 0; m < 32; m++ {
			var q uint8
			for n := 0; n < 5; n++ {
				q = q*3 + trit(x[m+32*n], id)
			}
			qs[m] = packTrits5(q)
		}
		x = x[160:]
		for m := 0; m < 16; m++ {
			var q uint8
			for n := 0; n < 5; n++ {
				q = q*3 + trit(x[m+16*n], id)
			}
			qs[32+m] = packTrits5(q)
		}
		x = x[80:]
		for j := 0; j < 4; j++ {
			var q uint8
			for m := 0; m < 4; m++ {
				q = q*3 + trit(x[j+4*m], id)
			}
			qh[j] = packTrits5(q * 3)
		}
	}
}

// tritAt reads trit n of a TQ1_0 byte as −1, 0 or +1 (as float).
func tritAt(b uint8, n int) float32 {
	q := b * pow3[n]
	return float32(int32((uint16(q)*3)>>8) - 1)
}

// dequantizeRowTQ10 is dequantize_row_tq1_0.
func dequantizeRowTQ10(dst []float32, src []byte) {
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockTQ10 : (i+1)*blockTQ10]
		y := dst[i*qkK : (i+1)*qkK]
		d := getF16(b[52:])
		k := 0
		for n := 0; n < 5; n++ {
			for m := 0; m < 32; m++ {
				y[k] = tritAt(b[m], n) * d
				k++
			}
		}
		for n := 0; n < 5; n++ {
			for m := 0; m < 16; m++ {
				y[k] = tritAt(b[32+m], n) * d
				k++
			}
		}
		for n := 0; n < 4; n++ {
			for j := 0; j < 4; j++ {
				y[k] = tritAt(b[48+j], n) * d
				k++
			}
		}
	}
}

// quantizeRowTQ20Ref is quantize_row_tq2_0_ref.
func quantizeRowTQ20Ref(dst []byte, src []float32) {
	nb := len(src) / qkK
	for i := 0; i < nb; i++ {
		x := src[i*qkK : (i+1)*qkK]
		y := dst[i*blockTQ20 : (i+1)*blockTQ20]
		d, id := ternaryScale(x)
		putF16(y[64:], d)
		for j := 0; j < 64; j += 32 {
			xs := x[4*j : 4*j+128]
			for m := 0; m < 32; m++ {
				var q uint8
				for n := 0; n < 4; n++ {
					q += (trit(xs[m+32*n], id) & 3) << (2 * n)
				}
				y[j+m] = q
			}
		}
	}
}

// dequantizeRowTQ20 is dequantize_row_tq2_0.
func dequantizeRowTQ20(dst []float32, src []byte) {
	nb := len(dst) / qkK
	for i := 0; i < nb; i++ {
		b := src[i*blockTQ20 : (i+1)*blockTQ20]
		y := dst[i*qkK : (i+1)*qkK]
		d := getF16(b[64:])
		for j := 0; j < 64; j += 32 {
			for l := 0; l < 4; l++ {
				out := y[4*j+32*l : 4*j+32*l+32]
				for m := range out {
					q := int32((b[j+m] >> (2 * l)) & 3)
					out[m] = float32(q-1) * d
				}
			}
		}
	}
}
