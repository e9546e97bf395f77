package shards_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ohms-project/adaptq/shards"
)

func sample() []shards.Tensor {
	r := rand.New(rand.NewPCG(3, 4))
	mk := func(name string, typ uint32, n int, compressible bool) shards.Tensor {
		b := make([]byte, n)
		for i := range b {
			if compressible {
				b[i] = byte(i % 7)
			} else {
				b[i] = byte(r.Uint32())
			}
		}
		return shards.Tensor{TensorEntry: shards.TensorEntry{Name: name, Type: typ, Dims: []uint64{uint64(n), 1}}, Data: b}
	}
	return []shards.Tensor{mk("model.layers.0.self_attn.q_proj.weight", 12, 1000, false), mk("model.layers.0.input_layernorm.weight", 0, 64*4, true), mk("empty", 0, 0, false), mk("model.layers.0.mlp.down_proj.weight", 8, 33, true)}
}

func TestRoundTrip(t *testing.T) {
	for _, compress := range []bool{false, true} {
		in := sample()
		enc, err := shards.Encode(in, compress)
		if err != nil {
			t.Fatal(err)
		}
		out, err := shards.Decode(enc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(in) {
			t.Fatalf("%d tensors back", len(out))
		}
		for i := range in {
			if out[i].Name != in[i].Name || out[i].Type != in[i].Type || !bytes.Equal(out[i].Data, in[i].Data) || out[i].Offset%shards.Alignment != 0 {
				t.Fatalf("tensor %d differs: %+v", i, out[i].TensorEntry)
			}
		}
		if compress && enc.Ratio() <= 1 {
			t.Errorf("compressible payload: ratio %.3f", enc.Ratio())
		}
		if !compress && enc.Ratio() != 1 {
			t.Errorf("uncompressed ratio %.3f", enc.Ratio())
		}
	}
}

// TestCorruption flips every byte of a small object in turn: each change is
// detected, never a panic or wrong data.
func TestCorruption(t *testing.T) {
	for _, compress := range []bool{false, true} {
		in := sample()
		enc, _ := shards.Encode(in, compress)
		for i := range enc.Bytes() {
			b := bytes.Clone(enc.Bytes())
			b[i] ^= 0x5a
			if _, err := shards.Decode(b); !errors.Is(err, shards.ErrCorrupt) {
				t.Fatalf("byte %d flipped: error %v, want ErrCorrupt", i, err)
			}
		}
		for _, n := range []int{0, 7, 20, len(enc.Bytes()) - 1} {
			if _, err := shards.Decode(enc.Bytes()[:n]); err == nil {
				t.Fatalf("truncated to %d accepted", n)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range []bool{false, true} {
		enc, _ := shards.Encode(sample(), c)
		f.Add(enc.Bytes())
	}
	f.Add([]byte("ADQSHARD"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := shards.Decode(b)
		if err != nil {
			return
		}
		for _, x := range out {
			if shards.CRC32C(x.Data) != x.CRC32C {
				t.Fatal("accepted a tensor whose checksum does not match")
			}
		}
	})
}

func BenchmarkEncodeZstd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(r.NormFloat64() * 8) // low-entropy like quantized weights
	}
	in := []shards.Tensor{{TensorEntry: shards.TensorEntry{Name: "w", Type: 12, Dims: []uint64{1 << 20, 32}}, Data: data}}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := shards.Encode(in, true); err != nil {
			b.Fatal(err)
		}
	}
}
