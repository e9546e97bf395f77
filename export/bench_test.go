package export_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// BenchmarkStitch7B writes the GGUF of a synthetic llama-2-7b-shaped model
// (one layer, full vocabulary) from its shard objects and reports the peak
// heap growth during the stitch beside the largest tensor's size; the goal
// is a peak under 2× the largest tensor (the stitch streams). MB/s is of
// GGUF bytes written.
func BenchmarkStitch7B(b *testing.B) {
	ctx := context.Background()
	src, _ := store.NewLocal(b.TempDir())
	raw, cfg, err := synth.ShapeConfig("llama-2-7b", 1)
	if err != nil {
		b.Fatal(err)
	}
	if err := synth.Write(ctx, src, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	tok, _ := store.ReadAll(ctx, mustLocal(b, "../testdata/models/stories260k"), model.TokenizerFile)
	// The fixture's 512-token tokenizer stands in: the stitch only copies it.
	if _, err := src.Put(ctx, model.TokenizerFile, bytesReader(tok), int64(len(tok))); err != nil {
		b.Fatal(err)
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		b.Fatal(err)
	}
	var largest int64
	for _, t := range ck.Tensors {
		largest = max(largest, t.Size)
	}
	out, _ := store.NewLocal(b.TempDir())
	r, _ := shards.NamedRecipe("q8_0")
	p := shards.MakePlan(ck)
	var recs []export.ShardRecord
	for _, s := range p.Shards {
		rec, err := export.WriteShard(ctx, ck, out, p, s, r, nil)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, rec)
	}
	var peak uint64
	b.ResetTimer()
	for b.Loop() {
		out.Delete(ctx, export.GGUFKey)
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var top atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapInuse > top.Load() {
					top.Store(m.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		sum, err := export.Stitch(ctx, ck, out, p, r, recs)
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(sum.GGUFSize)
		if t := top.Load(); t > base.HeapInuse {
			peak = max(peak, t-base.HeapInuse)
		}
	}
	b.ReportMetric(float64(peak)/1e6, "peak-MB")
	b.ReportMetric(float64(largest)/1e6, "largest-tensor-MB")
	if int64(peak) > 2*largest {
		b.Errorf("stitch heap grew %d MB, over 2× the largest tensor (%d MB)", peak/1e6, largest/1e6)
	}
}

func mustLocal(tb testing.TB, dir string) store.Store {
	s, err := store.NewLocal(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
