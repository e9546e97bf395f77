package quant

import (
	"slices"
	"sort"
	"testing"
)

// refQuantize is QuantizeRef, or for the types that need an importance
// QuantizeRefWeighted with every column weighing 1.
func refQuantize(typ Type, dst []byte, src []float32, rowLen int) error {
	if typ.NeedsImportance() {
		return QuantizeRefWeighted(typ, dst, src, rowLen, onesImportance(rowLen))
	}
	return QuantizeRef(typ, dst, src, rowLen)
}

// iqTableSimple builds a grid's search table the way ggml's init does: for
// every key off the grid, all grid points sorted by (distance, index), cut
// after nwant distinct distances.
func iqTableSimple(coords []byte, dim, bitsPer, nwant int) *iqTable {
	fast := newIQTable(coords, dim, bitsPer, nwant) // for pos and the on-grid keys
	t := &iqTable{pos: fast.pos, dim: dim, kmap: make([]int32, len(fast.kmap))}
	n := len(coords) / dim
	type pair struct{ d2, k int }
	ps := make([]pair, n)
	for key := range t.kmap {
		if gi := fast.kmap[key]; gi >= 0 {
			t.kmap[key] = gi
			continue
		}
		for k := range n {
			d2 := 0
			for i, p := range t.point(k) {
				e := int(p) - (2*(key>>(bitsPer*i)&(1<<bitsPer-1)) + 1)
				d2 += e * e
			}
			ps[k] = pair{d2, k}
		}
		sort.Slice(ps, func(a, b int) bool {
			return ps[a].d2 < ps[b].d2 || ps[a].d2 == ps[b].d2 && ps[a].k < ps[b].k
		})
		t.kmap[key] = -int32(len(t.neighbours)) - 1
		at := len(t.neighbours)
		t.neighbours = append(t.neighbours, 0)
		have, d := 1, ps[0].d2
		for _, p := range ps {
			if p.d2 > d {
				if have == nwant {
					break
				}
				have, d = have+1, p.d2
			}
			t.neighbours = append(t.neighbours, uint16(p.k))
		}
		t.neighbours[at] = uint16(len(t.neighbours) - at - 1)
	}
	return t
}

// TestIQTablesSimple checks the fast table construction against the simple
// one for the grids small enough to sort quickly.
func TestIQTablesSimple(t *testing.T) {
	for _, tc := range []struct {
		name                string
		fast                *iqTable
		coords              []byte
		dim, bitsPer, nwant int
	}{
		{"iq2xxs", iq2xxsTable(), gridBytes64(iq2xxsGrid[:]), 8, 2, 2},
		{"iq3xxs", iq3xxsTable(), gridBytes32(iq3xxsGrid[:]), 4, 3, 2},
		{"iq3s", iq3sTable(), gridBytes32(iq3sGrid[:]), 4, 3, 3},
	} {
		want := iqTableSimple(tc.coords, tc.dim, tc.bitsPer, tc.nwant)
		if !slices.Equal(tc.fast.kmap, want.kmap) || !slices.Equal(tc.fast.neighbours, want.neighbours) {
			t.Errorf("%s: the fast table (%d neighbour entries) differs from the simple one (%d)",
				tc.name, len(tc.fast.neighbours), len(want.neighbours))
		}
	}
}
