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
	// vals are the distinct coordinate values of the grid, ascending: level
	// l stands for vals[l].
	vals []float32
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
	for _, v := range levels {
		t.vals = append(t.vals, float32(v))
	}
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
	// The squared distance of a key to a grid point is the sum of two
	// halves (the first and the last dim/2 coordinates), each looked up in a
	// table indexed by the half key: half[h][v*n+k] for half value v.
	mask := 1<<bitsPer - 1
	hbits := bitsPer * dim / 2
	nh := 1 << hbits
	var half [2][]uint16
	for h := range half {
		half[h] = make([]uint16, nh*n)
		for v := range nh {
			for k := range n {
				p := t.point(k)[h*dim/2 : (h+1)*dim/2]
				d2 := 0
				for i, c := range p {
					e := int(c) - (2*(v>>(bitsPer*i)&mask) + 1)
					d2 += e * e
				}
				half[h][v*n+k] = uint16(d2)
			}
		}
	}
	dist := make([]uint16, n)
	var cand []uint16
	for key := range t.kmap {
		if t.kmap[key] >= 0 {
			continue
		}
		lo := half[0][(key&(nh-1))*n : (key&(nh-1)+1)*n]
		hi := half[1][(key>>hbits)*n : (key>>hbits+1)*n]
		// The nwant smallest distinct distances, ascending.
		var near [4]uint16
		have := 0
		cand = cand[:0] // the grid points that were within reach when met
		for k := range dist {
			d := lo[k] + hi[k]
			dist[k] = d
			if have == nwant && d > near[have-1] {
				continue
			}
			cand = append(cand, uint16(k))
			at := have
			for at > 0 && near[at-1] > d {
				at--
			}
			if at > 0 && near[at-1] == d {
				continue
			}
			copy(near[at+1:min(have+1, nwant)], near[at:])
			near[at] = d
			have = min(have+1, nwant)
		}
		// ggml's qsort order: by distance, then by index.
		t.kmap[key] = -int32(len(t.neighbours)) - 1
		at := len(t.neighbours)
		t.neighbours = append(t.neighbours, 0)
		for _, d := range near[:have] {
			for _, k := range cand {
				if dist[k] == d {
					t.neighbours = append(t.neighbours, k)
				}
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
