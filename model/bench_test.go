package model_test

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

func randBF16(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		h := safetensors.FloatToBF16(float32(r.NormFloat64() * 0.02))
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

// writeOneTensor writes a checkpoint with one [rows, cols] BF16 tensor as
// model.embed_tokens.weight, streaming so the file is never in memory.
func writeOneTensor(tb testing.TB, dir string, rows, cols int64) {
	cfg := `{"model_type":"llama","hidden_size":` + itoa(cols) + `,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":1,"vocab_size":` + itoa(rows) + `}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := safetensors.NewWriter(bw, []safetensors.TensorSpec{{Name: "model.embed_tokens.weight", DType: safetensors.BF16, Shape: []int64{rows, cols}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	row := randBF16(int(cols))
	for range rows {
		if _, err := w.Write(row); err != nil {
			tb.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func itoa(v int64) string {
	b := []byte{}
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// openOne opens a one-tensor checkpoint without the full architecture
// check (it has only the embedding).
func rawReader(tb testing.TB, s store.Store) (file string, off, n int64) {
	ctx := context.Background()
	info, err := s.Stat(ctx, "model.safetensors")
	if err != nil {
		tb.Fatal(err)
	}
	pre, _ := store.ReadRange(ctx, s, "model.safetensors", 0, 8)
	hl, err := safetensors.HeaderLength(pre, info.Size)
	if err != nil {
		tb.Fatal(err)
	}
	hdr, _ := store.ReadRange(ctx, s, "model.safetensors", 8, hl)
	h, err := safetensors.ParseHeader(hdr, info.Size)
	if err != nil {
		tb.Fatal(err)
	}
	t := h.Tensors[0]
	return "model.safetensors", h.DataStart + t.Begin, t.End - t.Begin
}

// BenchmarkReadTensorMinIO reads a 256 MiB tensor from MinIO on loopback
// with one range read (MB/s).
func BenchmarkReadTensorMinIO(b *testing.B) {
	minio.Get(b)
	ctx := context.Background()
	dir := b.TempDir()
	writeOneTensor(b, dir, 32768, 4096) // 256 MiB of BF16
	s3 := corpusStores(&testing.T{}, dir)["s3"]
	file, off, n := rawReader(b, s3)
	buf := make([]byte, n)
	b.SetBytes(n)
	b.ResetTimer()
	for b.Loop() {
		rc, err := s3.GetRange(ctx, file, off, n)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(rc, buf); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

// BenchmarkStreamRows1GiB streams a 1 GiB BF16 tensor from the local store
// in 8 MiB row blocks; peak-MB reports the heap growth (the goal is < 100).
func BenchmarkStreamRows1GiB(b *testing.B) {
	ctx := context.Background()
	s, _ := store.NewLocal(b.TempDir())
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":4096,"intermediate_size":256,"num_hidden_layers":1,"num_attention_heads":32,"vocab_size":131072,"tie_word_embeddings":true}`, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := synth.Write(ctx, s, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		b.Fatal(err)
	}
	tensor := ck.Tensors[0] // the 1 GiB embedding
	b.SetBytes(tensor.Size)
	b.ResetTimer()
	var peak uint64
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var sum float32
		err := ck.StreamRows(context.Background(), tensor.Name, 8<<20, func(_ int64, rows []float32) error {
			sum += rows[0]
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		peak = max(peak, after.TotalAlloc-before.TotalAlloc)
	}
	b.ReportMetric(float64(peak)/1e6, "peak-MB")
	if peak > 100e6 {
		b.Fatalf("streaming allocated %d MB, goal < 100", peak/1e6)
	}
}
