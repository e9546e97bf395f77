package quant

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"go/format"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The i-quant codebooks in iqgrids.go are derived here from llama.cpp's own
// library: each grid point is read back by dequantizing crafted blocks with a
// unit super-block scale through the type's dequantize_row_* (to_float)
// trait. TestIQGridsFromOracle compares the committed tables with the
// library's; with -update-iq-grids it rewrites iqgrids.go instead:
//
//	go test ./quant/ -run TestIQGridsFromOracle -update-iq-grids
var updateIQGrids = flag.Bool("update-iq-grids", false, "rewrite quant/iqgrids.go from the ggml oracle library")

// iqGridSet is every codebook, as derived or as committed.
type iqGridSet struct {
	iq2xxs [256]uint64
	iq2xs  [512]uint64
	iq2s   [1024]uint64
	iq3xxs [256]uint32
	iq3s   [512]uint32
	iq1s   [2048]uint64
	ksigns [128]uint8
}

// oneFP16 is 1.0 as an fp16 bit pattern.
const oneFP16 = 0x3C00

// gridBytes turns dequantized values v·unit back into the grid's bytes: each
// value must be an exact multiple of unit (the signs are all positive).
func gridBytes(t *testing.T, what string, vals []float32, unit, offset float32) []byte {
	t.Helper()
	out := make([]byte, len(vals))
	for i, v := range vals {
		g := v/unit - offset
		if g != float32(int8(g)) && g != float32(uint8(g)) {
			t.Fatalf("%s: value %d is %g, not an integer multiple of %g", what, i, v, unit)
		}
		out[i] = byte(int(g))
	}
	return out
}

// deriveIQGrids reads every codebook from the oracle.
func deriveIQGrids(t *testing.T, o *oracle) *iqGridSet {
	var g iqGridSet
	le := binary.LittleEndian

	// IQ2_XXS: 8 groups of 32 per block, each 4 grid indices (bytes) and a
	// word of 4×7 sign bits and a 4-bit scale; scale 0 gives db = 1/8.
	{
		const nb = 256 / 32
		src := make([]byte, nb*blockIQ2XXS)
		for b := range nb {
			blk := src[b*blockIQ2XXS:]
			le.PutUint16(blk, oneFP16)
			for ib := range 8 {
				for l := range 4 {
					blk[2+8*ib+l] = byte(32*b + 4*ib + l)
				}
			}
		}
		y := o.dequantize(t, IQ2_XXS, src, 1, nb*256)
		bs := gridBytes(t, "iq2xxs", y, 0.125, 0)
		for k := range g.iq2xxs {
			g.iq2xxs[k] = le.Uint64(bs[8*k:])
		}
		// The sign table: grid point 0 under each of the 128 sign indices.
		src = make([]byte, 4*blockIQ2XXS)
		for b := range 4 {
			blk := src[b*blockIQ2XXS:]
			le.PutUint16(blk, oneFP16)
			for ib := range 8 {
				var w uint32
				for l := range 4 {
					w |= uint32(32*b+4*ib+l) << (7 * l)
				}
				le.PutUint32(blk[2+8*ib+4:], w)
			}
		}
		y = o.dequantize(t, IQ2_XXS, src, 1, 4*256)
		for k := range g.ksigns {
			var s uint8
			for j := range 8 {
				if math.Signbit(float64(y[8*k+j])) {
					s |= 1 << j
				}
			}
			g.ksigns[k] = s
		}
	}
	// IQ2_XS: 32 uint16 per block, 9-bit index and 7-bit sign index.
	{
		const nb = 512 / 32
		src := make([]byte, nb*blockIQ2XS)
		for b := range nb {
			blk := src[b*blockIQ2XS:]
			le.PutUint16(blk, oneFP16)
			for l := range 32 {
				le.PutUint16(blk[2+2*l:], uint16(32*b+l))
			}
		}
		bs := gridBytes(t, "iq2xs", o.dequantize(t, IQ2_XS, src, 1, nb*256), 0.125, 0)
		for k := range g.iq2xs {
			g.iq2xs[k] = le.Uint64(bs[8*k:])
		}
	}
	// IQ2_S: 32 low index bytes, 32 sign bytes, 8 bytes of 4×2 high bits.
	{
		const nb = 1024 / 32
		src := make([]byte, nb*blockIQ2S)
		for b := range nb {
			blk := src[b*blockIQ2S:]
			le.PutUint16(blk, oneFP16)
			for l := range 32 {
				k := 32*b + l
				blk[2+l] = byte(k)
				blk[2+64+l/4] |= byte(k>>8) << (2 * (l % 4))
			}
		}
		bs := gridBytes(t, "iq2s", o.dequantize(t, IQ2_S, src, 1, nb*256), 0.125, 0)
		for k := range g.iq2s {
			g.iq2s[k] = le.Uint64(bs[8*k:])
		}
	}
	// IQ3_XXS: 64 index bytes of 4-value points; scale 0 gives db = 1/4.
	{
		const nb = 256 / 64
		src := make([]byte, nb*blockIQ3XXS)
		for b := range nb {
			blk := src[b*blockIQ3XXS:]
			le.PutUint16(blk, oneFP16)
			for l := range 64 {
				blk[2+l] = byte(64*b + l)
			}
		}
		bs := gridBytes(t, "iq3xxs", o.dequantize(t, IQ3_XXS, src, 1, nb*256), 0.25, 0)
		for k := range g.iq3xxs {
			g.iq3xxs[k] = le.Uint32(bs[4*k:])
		}
	}
	// IQ3_S: 64 low index bytes, 8 bytes of high bits; scale 0 gives db = 1.
	{
		const nb = 512 / 64
		src := make([]byte, nb*blockIQ3S)
		for b := range nb {
			blk := src[b*blockIQ3S:]
			le.PutUint16(blk, oneFP16)
			for l := range 64 {
				k := 64*b + l
				blk[2+l] = byte(k)
				blk[2+64+l/8] |= byte(k>>8) << (l % 8)
			}
		}
		bs := gridBytes(t, "iq3s", o.dequantize(t, IQ3_S, src, 1, nb*256), 1, 0)
		for k := range g.iq3s {
			g.iq3s[k] = le.Uint32(bs[4*k:])
		}
	}
	// IQ1_S: 32 low index bytes and 8 uint16 of 4×3 high bits, a 3-bit
	// scale (0: dl = 1) and the shift sign (0: +1/8).
	{
		const nb = 2048 / 32
		src := make([]byte, nb*blockIQ1S)
		for b := range nb {
			blk := src[b*blockIQ1S:]
			le.PutUint16(blk, oneFP16)
			for ib := range 8 {
				var h uint16
				for l := range 4 {
					k := 32*b + 4*ib + l
					blk[2+4*ib+l] = byte(k)
					h |= uint16(k>>8) << (3 * l)
				}
				le.PutUint16(blk[2+32+2*ib:], h)
			}
		}
		bs := gridBytes(t, "iq1s", o.dequantize(t, IQ1_S, src, 1, nb*256), 1, 0.125)
		for k := range g.iq1s {
			g.iq1s[k] = le.Uint64(bs[8*k:])
		}
	}
	return &g
}

func committedIQGrids() *iqGridSet {
	g := &iqGridSet{iq2xxs: iq2xxsGrid, iq2xs: iq2xsGrid, iq2s: iq2sGrid, iq3xxs: iq3xxsGrid, iq3s: iq3sGrid, iq1s: iq1sGrid}
	for k := range g.ksigns {
		g.ksigns[k] = iqSigns(uint8(k))
	}
	return g
}

func TestIQGridsFromOracle(t *testing.T) {
	o := startOracle(t)
	lib := deriveIQGrids(t, o)
	if *updateIQGrids {
		path := filepath.Join(repoRoot(t), "quant", "iqgrids.go")
		if err := os.WriteFile(path, formatIQGrids(t, lib), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
	got := committedIQGrids()
	check := func(name string, n int, eq func(k int) bool, show func(k int) string) {
		for k := range n {
			if !eq(k) {
				t.Errorf("%s[%d]: committed %s (run with -update-iq-grids)", name, k, show(k))
				return
			}
		}
	}
	check("iq2xxsGrid", 256, func(k int) bool { return got.iq2xxs[k] == lib.iq2xxs[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.iq2xxs[k], lib.iq2xxs[k]) })
	check("iq2xsGrid", 512, func(k int) bool { return got.iq2xs[k] == lib.iq2xs[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.iq2xs[k], lib.iq2xs[k]) })
	check("iq2sGrid", 1024, func(k int) bool { return got.iq2s[k] == lib.iq2s[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.iq2s[k], lib.iq2s[k]) })
	check("iq3xxsGrid", 256, func(k int) bool { return got.iq3xxs[k] == lib.iq3xxs[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.iq3xxs[k], lib.iq3xxs[k]) })
	check("iq3sGrid", 512, func(k int) bool { return got.iq3s[k] == lib.iq3s[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.iq3s[k], lib.iq3s[k]) })
	check("iq1sGrid", 2048, func(k int) bool { return got.iq1s[k] == lib.iq1s[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.iq1s[k], lib.iq1s[k]) })
	check("iqSigns", 128, func(k int) bool { return got.ksigns[k] == lib.ksigns[k] },
		func(k int) string { return fmt.Sprintf("%#x, ggml %#x", got.ksigns[k], lib.ksigns[k]) })
}

// formatIQGrids writes iqgrids.go.
func formatIQGrids(t *testing.T, g *iqGridSet) []byte {
	var b bytes.Buffer
	b.WriteString(`// Code generated by TestIQGridsFromOracle (go test ./quant/ -run TestIQGridsFromOracle -update-iq-grids); DO NOT EDIT.

package quant

// The i-quant codebooks: the definition of the IQ2_XXS, IQ2_XS, IQ2_S,
// IQ3_XXS, IQ3_S, IQ1_S and IQ1_M formats. Each entry is one grid point, its
// 8 (or 4) coordinates as bytes in little-endian order: the unsigned
// magnitudes of the IQ2 and IQ3 grids, the int8 values −1, 0, 1 of the IQ1
// grid. They were read back from llama.cpp's libggml-base.so (node-llama-cpp
// 3.21.1) by dequantizing crafted blocks with a unit scale through its
// dequantize_row_* functions; TestIQGridsFromOracle checks them against the
// library.
`)
	u64 := func(doc, name string, v []uint64) {
		fmt.Fprintf(&b, "\n// %s\nvar %s = [%d]uint64{\n", doc, name, len(v))
		for i, x := range v {
			if i%4 == 0 {
				b.WriteString("\t")
			}
			fmt.Fprintf(&b, "%#016x,", x)
			if i%4 == 3 {
				b.WriteString("\n")
			} else {
				b.WriteString(" ")
			}
		}
		b.WriteString("}\n")
	}
	u32 := func(doc, name string, v []uint32) {
		fmt.Fprintf(&b, "\n// %s\nvar %s = [%d]uint32{\n", doc, name, len(v))
		for i, x := range v {
			if i%8 == 0 {
				b.WriteString("\t")
			}
			fmt.Fprintf(&b, "%#08x,", x)
			if i%8 == 7 {
				b.WriteString("\n")
			} else {
				b.WriteString(" ")
			}
		}
		b.WriteString("}\n")
	}
	u64("iq2xxsGrid is IQ2_XXS's grid: 256 points of 8 magnitudes.", "iq2xxsGrid", g.iq2xxs[:])
	u64("iq2xsGrid is IQ2_XS's grid: 512 points of 8 magnitudes.", "iq2xsGrid", g.iq2xs[:])
	u64("iq2sGrid is IQ2_S's grid: 1024 points of 8 magnitudes.", "iq2sGrid", g.iq2s[:])
	u32("iq3xxsGrid is IQ3_XXS's grid: 256 points of 4 magnitudes.", "iq3xxsGrid", g.iq3xxs[:])
	u32("iq3sGrid is IQ3_S's grid: 512 points of 4 magnitudes.", "iq3sGrid", g.iq3s[:])
	u64("iq1sGrid is IQ1_S's and IQ1_M's grid: 2048 points of 8 values in {−1, 0, 1}.", "iq1sGrid", g.iq1s[:])
	src, err := format.Source(b.Bytes())
	if err != nil {
		t.Fatalf("formatting iqgrids.go: %v", err)
	}
	return src
}
