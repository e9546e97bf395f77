package rotate

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func tRandMatrix(r *rand.Rand, rows, cols int) *Matrix {
	m := NewMatrix(rows, cols)
	for i := range m.Data {
		m.Data[i] = float32(r.NormFloat64())
	}
	return m
}

func tRandVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(1 + 0.3*r.NormFloat64())
	}
	return v
}

// TestRotateTensorMatchesLayer: rotating tensor by tensor gives the same
// bits as RotateLayer, RotateEmbedding and RotateHead.
func TestRotateTensorMatchesLayer(t *testing.T) {
	for _, tc := range []struct {
		d, f, heads, kv, hd int
		headRot, bias       bool
	}{
		{64, 172, 8, 4, 8, false, false},
		{64, 172, 8, 4, 8, true, true},
		{96, 128, 4, 1, 24, true, false},
	} {
		r := rand.New(rand.NewPCG(uint64(tc.d), uint64(tc.f)))
		l := &Layer{
			AttnNorm: tRandVec(r, tc.d), MLPNorm: tRandVec(r, tc.d),
			Q: tRandMatrix(r, tc.heads*tc.hd, tc.d), K: tRandMatrix(r, tc.kv*tc.hd, tc.d), V: tRandMatrix(r, tc.kv*tc.hd, tc.d),
			O: tRandMatrix(r, tc.d, tc.heads*tc.hd), Gate: tRandMatrix(r, tc.f, tc.d), Up: tRandMatrix(r, tc.f, tc.d), Down: tRandMatrix(r, tc.d, tc.f),
		}
		if tc.bias {
			l.VBias = tRandVec(r, tc.kv*tc.hd)
		}
		opts := Options{HeadRotation: tc.headRot, NumHeads: tc.heads, NumKVHeads: tc.kv}
		orig := &Layer{AttnNorm: slices.Clone(l.AttnNorm), MLPNorm: slices.Clone(l.MLPNorm), Q: l.Q.Clone(), K: l.K.Clone(), V: l.V.Clone(),
			O: l.O.Clone(), Gate: l.Gate.Clone(), Up: l.Up.Clone(), Down: l.Down.Clone(), VBias: slices.Clone(l.VBias)}
		if err := RotateLayer(l, 42, opts); err != nil {
			t.Fatal(err)
		}
		check := func(kind Kind, m, want *Matrix, norm, bias []float32) {
			t.Helper()
			if err := RotateTensor(kind, m, norm, bias, 42, opts); err != nil {
				t.Fatal(err)
			}
			for i := range m.Data {
				if math.Float32bits(m.Data[i]) != math.Float32bits(want.Data[i]) {
					t.Fatalf("%v d=%d: element %d differs: %g vs %g", kind, tc.d, i, m.Data[i], want.Data[i])
				}
			}
		}
		check(KindQ, orig.Q, l.Q, orig.AttnNorm, nil)
		check(KindK, orig.K, l.K, orig.AttnNorm, nil)
		vb := slices.Clone(orig.VBias)
		check(KindV, orig.V, l.V, orig.AttnNorm, orig.VBias)
		if tc.bias {
			if err := RotateVBias(vb, 42, opts); err != nil || !slices.Equal(vb, l.VBias) {
				t.Fatalf("RotateVBias differs: %v", err)
			}
		}
		check(KindO, orig.O, l.O, nil, nil)
		check(KindGate, orig.Gate, l.Gate, orig.MLPNorm, nil)
		check(KindUp, orig.Up, l.Up, orig.MLPNorm, nil)
		check(KindDown, orig.Down, l.Down, nil, nil)
		if tc.bias && !slices.Equal(orig.VBias, l.VBias) {
			t.Fatal("v bias differs")
		}
		e := tRandMatrix(r, 50, tc.d)
		e2 := e.Clone()
		if err := RotateEmbedding(e, 42); err != nil {
			t.Fatal(err)
		}
		check(KindEmbed, e2, e, nil, nil)
		head := tRandMatrix(r, 50, tc.d)
		head2 := head.Clone()
		fn := tRandVec(r, tc.d)
		if err := RotateHead(head, slices.Clone(fn), 42); err != nil {
			t.Fatal(err)
		}
		check(KindLMHead, head2, head, fn, nil)
	}
	if err := RotateTensor(KindO, NewMatrix(4, 4), []float32{1, 1, 1, 1}, nil, 1, Options{}); err == nil {
		t.Fatal("o_proj with a norm accepted")
	}
	if err := RotateTensor(KindQ, NewMatrix(4, 4), []float32{1, 1}, nil, 1, Options{}); err == nil {
		t.Fatal("norm of the wrong length accepted")
	}
}
