package llamaquant_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/llamaquant"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// f16Fixture exports the stories260k fixture to an F16 GGUF and returns
// its path.
func f16Fixture(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	src, err := store.NewLocal("../../testdata/models/stories260k")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := shards.NamedRecipe("f16")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := export.Run(ctx, ck, out, r, export.Events{}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, export.GGUFKey)
}

// TestQuantize quantizes the fixture's F16 GGUF to Q8_0 and Q4_0 with
// libllama and reads the results back: every 2-D weight whose rows (64 or
// 172 values) fit Q8_0's 32-blocks is Q8_0, the 172-wide ffn_down falls
// back to F16, norms stay F32, and the file says which preset it is.
func TestQuantize(t *testing.T) {
	q := llamaquant.Require(t)
	f16 := f16Fixture(t)
	dst := filepath.Join(t.TempDir(), "q8.gguf")
	if err := q.Quantize(context.Background(), f16, dst, "Q8_0", llamaquant.Options{Threads: 1}); err != nil {
		t.Fatal(err)
	}
	types, f, err := llamaquant.TensorTypes(dst)
	if err != nil {
		t.Fatal(err)
	}
	if ft, _ := f.Metadata.GetUint("general.file_type"); ft != 7 {
		t.Errorf("general.file_type %d, want 7 (Q8_0)", ft)
	}
	counts := map[uint32]int{}
	for name, typ := range types {
		want := gguf.TypeQ8_0
		switch {
		case strings.HasSuffix(name, "_norm.weight"):
			want = gguf.TypeF32
		case strings.HasSuffix(name, "ffn_down.weight"):
			want = gguf.TypeF16
		}
		if typ != want {
			t.Errorf("%s: %s, want %s", name, gguf.TypeName(typ), gguf.TypeName(want))
		}
		counts[typ]++
	}
	if counts[gguf.TypeQ8_0] == 0 || counts[gguf.TypeF16] == 0 {
		t.Errorf("type counts %v: want Q8_0 and F16 tensors", counts)
	}
}

// TestQuantizeImatrix passes an importance matrix through: Q4_0 uses it
// (different bytes than without), and one whose length does not match its
// tensor is rejected by libllama with the tensor's name.
func TestQuantizeImatrix(t *testing.T) {
	q := llamaquant.Require(t)
	f16 := f16Fixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	plain, weighted := filepath.Join(dir, "plain.gguf"), filepath.Join(dir, "weighted.gguf")
	if err := q.Quantize(ctx, f16, plain, "q4_0", llamaquant.Options{}); err != nil {
		t.Fatal(err)
	}
	types, _, err := llamaquant.TensorTypes(plain)
	if err != nil {
		t.Fatal(err)
	}
	im := map[string][]float32{}
	for name := range types {
		if strings.HasPrefix(name, "blk.") && strings.HasSuffix(name, "attn_q.weight") {
			v := make([]float32, 64)
			for i := range v {
				v[i] = float32(1 + i%7*i%5) // positive, uneven
			}
			im[name] = v
		}
	}
	if err := q.Quantize(ctx, f16, weighted, "q4_0", llamaquant.Options{Imatrix: im}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(plain)
	b, _ := os.ReadFile(weighted)
	if len(a) != len(b) {
		t.Fatalf("sizes %d and %d: the imatrix must change bytes, not types", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Error("the importance matrix did not change the Q4_0 bytes")
	}
	im["blk.0.attn_q.weight"] = im["blk.0.attn_q.weight"][:32]
	bad := filepath.Join(dir, "bad.gguf")
	err = q.Quantize(ctx, f16, bad, "q4_0", llamaquant.Options{Imatrix: im})
	if err == nil || !strings.Contains(err.Error(), "blk.0.attn_q.weight") {
		t.Errorf("imatrix of the wrong length: %v, want an error naming blk.0.attn_q.weight", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a failed quantization left its output behind")
	}
}

// TestQuantizeBadInput: an unknown preset and a missing file are errors
// that name them.
func TestQuantizeBadInput(t *testing.T) {
	q := llamaquant.Require(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := q.Quantize(ctx, filepath.Join(dir, "none.gguf"), filepath.Join(dir, "o.gguf"), "q4_k_m", llamaquant.Options{}); err == nil || !strings.Contains(err.Error(), "none.gguf") {
		t.Errorf("missing source: %v", err)
	}
	notGGUF := filepath.Join(dir, "junk.gguf")
	os.WriteFile(notGGUF, []byte("not a gguf file at all"), 0o644)
	if err := q.Quantize(ctx, notGGUF, filepath.Join(dir, "o.gguf"), "q4_k_m", llamaquant.Options{}); err == nil || !strings.Contains(err.Error(), "junk.gguf") {
		t.Errorf("junk source: %v", err)
	}
	if err := q.Quantize(ctx, notGGUF, filepath.Join(dir, "o.gguf"), "q4_k_x", llamaquant.Options{}); err == nil || !strings.Contains(err.Error(), "q4_k_x") {
		t.Errorf("unknown preset: %v", err)
	}
}

// TestEncodeImatrix pins the harness's file layout.
func TestEncodeImatrix(t *testing.T) {
	got := llamaquant.EncodeImatrix(map[string][]float32{"b": {1}, "a": {0.5, 2}})
	want := []byte("AQIMTX01")
	le := func(v uint64) []byte {
		b := make([]byte, 8)
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		return b
	}
	want = append(want, le(2)...)
	want = append(append(append(want, le(1)...), 'a'), le(2)...)
	want = append(want, 0, 0, 0, 0x3f, 0, 0, 0, 0x40) // 0.5, 2
	want = append(append(append(want, le(1)...), 'b'), le(1)...)
	want = append(want, 0, 0, 0x80, 0x3f) // 1
	if !bytes.Equal(got, want) {
		t.Errorf("got % x\nwant % x", got, want)
	}
}
