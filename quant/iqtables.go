package quant

import (
	"slices"
	"sync"
)

// The i-quant quantizers search their grids through tables that ggml builds
// at first use (iq2xs_init_impl, iq3xs_init_impl) from the grids: each grid
// coordinate is a level l (0…3 for the IQ2 grids, 0…7 for IQ3, 0…2 for
// IQ1: the rank of its value among the grid's distinct values) stored as the
// odd number 2l+1; a point is keyed by its levels packed at 2 bits (8
// coordinates) or 3 bits (4 coordinates) each; and every key that is not a
// grid point gets the list of grid points at its nwant smallest squared
// distances, in order of distance and then index. Here the same tables are
// computed once per process on first use (sync.OnceValue) and never written
// again.

// iqTable is one grid's search table.
type iqTable struct {
	// pos holds each grid point's coordinates as 2l+1, dim per point.
	pos []int8
	dim int
	// kmap maps a key to its grid index, or to −(offset+1) for a key off
	// the grid: neighbours[offset] is then the number of neighbours and
	// the next that many entries their grid indices.
	kmap       []int32
	neighbours []uint16
}

// point returns the 2l+1 coordinates of grid point k.
func (t *iqTable) point(k int) []int8 { return t.pos[k*t.dim : (k+1)*t.dim] }

// near returns the neighbour list of an off-grid key (kmap[key] < 0).
func (t *iqTable) near(key int) []uint16 {
	off := -int(t.kmap[key]) - 1
	n := int(t.neighbours[off])
	return t.neighbours[off+1 : off+1+n]
}

// newIQTable builds the table of a grid given as its points' coordinate
// bytes (dim bytes per point, little-endian in each word); bitsPer is the
// key's bits per coordinate and nwant the number of distinct distances whose
// grid points become a key's neighbours.
func newIQTable(coords []byte, dim, bitsPer, nwant int) *iqTable {
	// The coordinates compare as int8: the IQ1 grid holds −1, 0 and 1.
	levels := make([]int8, len(coords))
	for i, v := range coords {
		levels[i] = int8(v)
	}
	slices.Sort(levels)
	levels = slices.Compact(levels)
	rank := map[byte]int8{}
	for i, v := range levels {
		rank[byte(v)] = int8(i)
	}
	n := len(coords) / dim
	t := &iqTable{pos: make([]int8, len(coords)), dim: dim}
	for i, v := range coords {
		t.pos[i] = 2*rank[v] + 1
	}
	// ggml's map size: one past the largest key whose levels are all 2
	// (the IQ1 maximum; no IQ2 search produces a level above 2 either).
	mapSize := 43692
	if bitsPer == 3 {
		mapSize = 4096
	}
	t.kmap = make([]int32, mapSize)
	for i := range t.kmap {
		t.kmap[i] = -1
	}
	for k := range n {
		key := 0
		for i, p := range t.point(k) {
			key |= int(p-1) / 2 << (bitsPer * i)
		}
		t.kmap[key] = int32(k)
	}
	mask := 1<<bitsPer - 1
	maxD2 := dim * (2 * mask) * (2 * mask)
	buckets := make([][]uint16, maxD2+1)
	pos := make([]int8, dim)
	for key := range t.kmap {
		if t.kmap[key] >= 0 {
			continue
		}
		for i := range pos {
			pos[i] = int8(2*(key>>(bitsPer*i)&mask) + 1)
		}
		for d := range buckets {
			buckets[d] = buckets[d][:0]
		}
		// Bucketing by distance with indices in increasing order gives
		// ggml's qsort order on (distance, index).
		for k := range n {
			d2 := 0
			for i, p := range t.point(k) {
				e := int(p) - int(pos[i])
				d2 += e * e
			}
			buckets[d2] = append(buckets[d2], uint16(k))
		}
		t.kmap[key] = -int32(len(t.neighbours)) - 1
		at := len(t.neighbours)
		t.neighbours = append(t.neighbours, 0)
		have := 0
		for _, b := range buckets {
			if len(b) == 0 {
				continue
			}
			t.neighbours = append(t.neighbours, b...)
			if have++; have == nwant {
				break
			}
		}
		t.neighbours[at] = uint16(len(t.neighbours) - at - 1)
	}
	return t
}

func gridBytes64(g []uint64) []byte {
	b := make([]byte, 8*len(g))
	for k, v := range g {
		for i := range 8 {
			b[8*k+i] = byte(v >> (8 * i))
		}
	}
	return b
}

func gridBytes32(g []uint32) []byte {
	b := make([]byte, 4*len(g))
	for k, v := range g {
		for i := range 4 {
			b[4*k+i] = byte(v >> (8 * i))
		}
	}
	return b
}

// The tables, built on first use. nwant is ggml's: 2 for IQ2_XXS, IQ2_XS
// and IQ3_XXS, 1 for IQ2_S, 3 for IQ1_S, IQ1_M and IQ3_S.
var (
	iq2xxsTable = sync.OnceValue(func() *iqTable { return newIQTable(gridBytes64(iq2xxsGrid[:]), 8, 2, 2) })
	iq2xsTable  = sync.OnceValue(func() *iqTable { return newIQTable(gridBytes64(iq2xsGrid[:]), 8, 2, 2) })
	iq2sTable   = sync.OnceValue(func() *iqTable { return newIQTable(gridBytes64(iq2sGrid[:]), 8, 2, 1) })
	iq1sTable   = sync.OnceValue(func() *iqTable { return newIQTable(gridBytes64(iq1sGrid[:]), 8, 2, 3) })
	iq3xxsTable = sync.OnceValue(func() *iqTable { return newIQTable(gridBytes32(iq3xxsGrid[:]), 4, 3, 2) })
	iq3sTable   = sync.OnceValue(func() *iqTable { return newIQTable(gridBytes32(iq3sGrid[:]), 4, 3, 3) })
)
