package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/ohms-project/adaptq/quant"
)

// sortedTypes lists the weight types with integer kernels by id.
func sortedTypes() []quant.Type {
	var ts []quant.Type
	for t := range qtypes {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// randomRow returns a row of random blocks of type q for C values: random
// bytes, with every fp16 scale field replaced by a finite scale of random
// sign and size.
func randomRow(rng *rand.Rand, q *qtype, C int) []byte {
	nb := C / q.blockLen
	w := make([]byte, nb*q.blockBytes)
	for i := range w {
		w[i] = byte(rng.Uint32())
	}
	put := func(b []byte) {
		v := float32((0.5 + rng.Float64()) * math.Exp2(float64(rng.IntN(8)-10)))
		if rng.IntN(4) == 0 {
			v = -v
		}
		binary.LittleEndian.PutUint16(b, quant.FloatToHalf(v))
	}
	for b := range nb {
		blk := w[b*q.blockBytes : (b+1)*q.blockBytes]
		switch q.name {
		case "Q8_0", "Q4_0", "Q5_0", "IQ4_NL":
			put(blk)
		case "Q4_1", "Q5_1", "Q4_K", "Q5_K":
			put(blk)
			put(blk[2:])
		case "Q2_K":
			put(blk[80:])
			put(blk[82:])
		case "Q3_K":
			put(blk[108:])
		case "Q6_K":
			put(blk[208:])
		case "TQ2_0":
			put(blk[64:])
			for i := range 64 { // ternary digits are 0, 1 or 2
				v := blk[i]
				for k := range 4 {
					if v>>(2*k)&3 == 3 {
						v &^= 1 << (2 * k)
					}
				}
				blk[i] = v
			}
		}
	}
	return w
}

// decodeRow returns the weight values of a row as the kernels read them:
// for 32-value types d·q (+ m), for super-block types d·sc·q − dmin·mn.
func decodeRow(q *qtype, w []byte, C int) []float64 {
	out := make([]float64, C)
	switch q.blockLen {
	case 32:
		dec := legacyDecoders[q.name]
		var b legacyBlock
		for i := range C / 32 {
			dec(&b, w[i*q.blockBytes:])
			for e := range 32 {
				out[i*32+e] = float64(b.d) * float64(b.q[e])
				if b.hasMin {
					out[i*32+e] += float64(b.m)
				}
			}
		}
	default:
		dec := kDecoders[q.name]
		var b kBlock
		for i := range C / 256 {
			dec(&b, w[i*q.blockBytes:])
			for e := range 256 {
				out[i*256+e] = float64(b.d)*float64(b.sc[e/16])*float64(b.q[e]) - float64(b.dmin)*float64(b.mn[e/16])
			}
		}
	}
	return out
}

var legacyDecoders = map[string]func(*legacyBlock, []byte){
	"Q8_0": decodeQ80, "Q4_0": decodeQ40, "Q4_1": decodeQ41, "Q5_0": decodeQ50, "Q5_1": decodeQ51, "IQ4_NL": decodeIQ4NL,
}

var kDecoders = map[string]func(*kBlock, []byte){
	"Q2_K": decodeQ2K, "Q3_K": decodeQ3K, "Q4_K": decodeQ4K, "Q5_K": decodeQ5K, "Q6_K": decodeQ6K, "TQ2_0": decodeTQ20,
}

// TestDecodeMatchesDequantize checks that the kernels' reading of every
// block format is ggml's: the decoded values equal quant.Dequantize's,
// for every type the quant package defines.
func TestDecodeMatchesDequantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const C = 512
	for _, typ := range sortedTypes() {
		q := qtypes[typ]
		if !typ.Valid() {
			t.Logf("%s: quant has no codec yet; decoding not cross-checked", q.name)
			continue
		}
		for range 20 {
			w := randomRow(rng, q, C)
			got := decodeRow(q, w, C)
			want := make([]float32, C)
			if err := quant.Dequantize(typ, want, w, C); err != nil {
				t.Fatal(err)
			}
			for e := range C {
				if d := math.Abs(got[e] - float64(want[e])); d > 1e-6*math.Abs(float64(want[e]))+1e-9 {
					t.Fatalf("%s value %d: kernels read %g, quant.Dequantize %g", q.name, e, got[e], want[e])
				}
			}
		}
	}
}

// TestQuantizeActs checks the activation quantizers against their
// definition: values within half a step, exact block sums.
func TestQuantizeActs(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const T, C = 3, 512
	x := randFloats(rng, T*C)
	x[5] = 0
	clear(x[256:288]) // an all-zero block
	for _, typ := range []ActType{ActQ8_0, ActQ8_1, ActQ8_K} {
		var a Acts
		if err := a.Quantize(typ, x, T, C); err != nil {
			t.Fatal(err)
		}
		B := typ.blockLen()
		for b := range T * C / B {
			var sum int32
			var amax float32
			for e := b * B; e < (b+1)*B; e++ {
				amax = max(amax, abs32(x[e]))
			}
			for e := b * B; e < (b+1)*B; e++ {
				sum += int32(a.Qs[e])
				if d := math.Abs(float64(a.D[b])*float64(a.Qs[e]) - float64(x[e])); d > 0.57*float64(amax)/127+1e-7 {
					t.Fatalf("%s block %d value %d: %g·%d vs %g", typ, b, e, a.D[b], a.Qs[e], x[e])
				}
			}
			if typ == ActQ8_1 {
				if want := float64(amax) / 127 * float64(sum); math.Abs(float64(a.S[b])-want) > 1e-3*math.Abs(want)+1e-6 {
					t.Fatalf("Q8_1 block %d: s %g, want %g", b, a.S[b], want)
				}
			}
		}
		if typ == ActQ8_K {
			for g := range T * C / 16 {
				var s int16
				for _, v := range a.Qs[16*g : 16*g+16] {
					s += int16(v)
				}
				if a.Bsums[g] != s {
					t.Fatalf("Q8_K group %d: bsum %d, want %d", g, a.Bsums[g], s)
				}
			}
		}
	}
	var a Acts
	if err := a.Quantize(ActQ8_K, x, 1, 100); err == nil {
		t.Fatal("Q8_K of 100 values accepted")
	}
}

// TestDotQ checks every weight type's portable dot product against the
// float64 dot of the decoded weights and dequantized activations, and the
// assembly version against the portable one, bit for bit.
func TestDotQ(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, typ := range sortedTypes() {
		q := qtypes[typ]
		for _, C := range []int{256, 512, 2048} {
			var a Acts
			x := randFloats(rng, 3*C)
			for i := range x {
				x[i] *= float32(1 + 20*rng.Float64()*float64(rng.IntN(50)/49)) // a few outliers
			}
			if err := a.Quantize(q.act, x, 3, C); err != nil {
				t.Fatal(err)
			}
			for range 8 {
				w := randomRow(rng, q, C)
				wv := decodeRow(q, w, C)
				for tok := range 3 {
					got := q.ref(w, &a, tok)
					var want, mag float64
					B := q.act.blockLen()
					for e := range C {
						b := (tok*C + e) / B
						y := float64(a.D[b]) * float64(a.Qs[tok*C+e])
						if q.act == ActQ8_1 {
							// The minimum meets the block's rounded sum s, not Σy.
							var dq float64
							if lb := legacyDecoders[q.name]; lb != nil {
								var blk legacyBlock
								lb(&blk, w[e/32*q.blockBytes:])
								dq = float64(blk.d) * float64(blk.q[e%32])
								want += dq * y
								mag += math.Abs(dq * y)
								if e%32 == 0 {
									want += float64(blk.m) * float64(a.S[b])
									mag += math.Abs(float64(blk.m) * float64(a.S[b]))
								}
							}
							continue
						}
						want += wv[e] * y
						mag += math.Abs(wv[e] * y)
					}
					if d := math.Abs(float64(got) - want); d > 2e-6*mag+1e-12 {
						t.Fatalf("%s C=%d tok %d: dot %g, float64 %g (Σ|wy| %g)", q.name, C, tok, got, want, mag)
					}
					if q.asm != nil && HasAVX2 {
						if g := q.asm(w, &a, tok); math.Float32bits(g) != math.Float32bits(got) {
							t.Fatalf("%s C=%d tok %d: assembly %g (%08x), portable %g (%08x)", q.name, C, tok, g, math.Float32bits(g), got, math.Float32bits(got))
						}
					}
				}
			}
		}
	}
}

// TestMatQ checks the row-block matmul against DotQ for every type, in
// both modes.
func TestMatQ(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const C, rows, T = 512, 5, 4
	x := randFloats(rng, T*C)
	for _, typ := range sortedTypes() {
		q := qtypes[typ]
		var a Acts
		if err := a.Quantize(q.act, x, T, C); err != nil {
			t.Fatal(err)
		}
		rb := C / q.blockLen * q.blockBytes
		var w []byte
		for range rows {
			w = append(w, randomRow(rng, q, C)...)
		}
		for _, asm := range []bool{false, true} {
			dst := make([]float32, T*(rows+1))
			if err := matQ(typ, dst, rows+1, w, rb, rows, &a, asm); err != nil {
				t.Fatal(err)
			}
			for tok := range T {
				for r := range rows {
					want := q.ref(w[r*rb:(r+1)*rb], &a, tok)
					if got := dst[tok*(rows+1)+r]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%s asm=%v: out[%d][%d] = %g, want %g", q.name, asm, tok, r, got, want)
					}
				}
			}
		}
		if err := matQ(typ, make([]float32, 1), 1, w, rb, rows, &a, false); err == nil {
			t.Fatalf("%s: short dst accepted", q.name)
		}
		if err := matQ(typ, make([]float32, T*rows), rows, w[:rb-1], rb-1, 1, &a, false); err == nil {
			t.Fatalf("%s: short row accepted", q.name)
		}
	}
}

// BenchmarkDotQ reports each weight type's dot products in G
// multiply-adds per second (one 4096-value row against one token, the
// shape of a 7B model's q/k/v/o/gate/up rows).
func BenchmarkDotQ(b *testing.B) {
	rng := rand.New(rand.NewPCG(19, 20))
	const C, rows = 4096, 64
	for _, typ := range sortedTypes() {
		q := qtypes[typ]
		var a Acts
		if err := a.Quantize(q.act, randFloats(rng, C), 1, C); err != nil {
			b.Fatal(err)
		}
		rb := C / q.blockLen * q.blockBytes
		var w []byte
		for range rows {
			w = append(w, randomRow(rng, q, C)...)
		}
		dst := make([]float32, rows)
		for _, asm := range []bool{true, false} {
			name := q.name + "/go"
			if asm {
				if q.asm == nil || !HasAVX2 {
					continue
				}
				name = q.name + "/asm"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(w)))
				for b.Loop() {
					if err := matQ(typ, dst, rows, w, rb, rows, &a, asm); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(rows*C)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
			})
		}
	}
}

// BenchmarkQuantizeActs reports the activation quantizers' speed.
func BenchmarkQuantizeActs(b *testing.B) {
	rng := rand.New(rand.NewPCG(21, 22))
	const T, C = 16, 4096
	x := randFloats(rng, T*C)
	for _, typ := range []ActType{ActQ8_0, ActQ8_1, ActQ8_K} {
		b.Run(typ.String(), func(b *testing.B) {
			var a Acts
			b.SetBytes(int64(4 * T * C))
			for b.Loop() {
				if err := a.Quantize(typ, x, T, C); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAsmPresent fails on an amd64 CPU that claims AVX2 and FMA when the
// assembly kernels are not chosen (so that their tests cannot pass
// vacuously).
func TestAsmPresent(t *testing.T) {
	t.Logf("HasAVX2 = %v", HasAVX2)
	if asmAvailable && !HasAVX2 {
		t.Skip("this CPU lacks AVX2, FMA or F16C: the assembly kernels are not tested")
	}
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q4_0, quant.Q4_K, quant.Q6_K} {
		if asmAvailable && !HasAsm(typ) {
			t.Errorf("%s has no assembly kernel", typ)
		}
	}
}

// BenchmarkMatQ reports the row-block matmul of each weight type in G
// multiply-adds per second: 64 rows of 4096 values against 16 tokens
// (the four-token kernels where a type has one).
func BenchmarkMatQ(b *testing.B) {
	rng := rand.New(rand.NewPCG(27, 28))
	const C, rows, T = 4096, 64, 16
	for _, typ := range sortedTypes() {
		q := qtypes[typ]
		if q.asm == nil || !HasAVX2 {
			continue
		}
		var a Acts
		if err := a.Quantize(q.act, randFloats(rng, T*C), T, C); err != nil {
			b.Fatal(err)
		}
		rb := C / q.blockLen * q.blockBytes
		var w []byte
		for range rows {
			w = append(w, randomRow(rng, q, C)...)
		}
		dst := make([]float32, T*rows)
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if err := matQ(typ, dst, rows, w, rb, rows, &a, true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*C*T)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
}
