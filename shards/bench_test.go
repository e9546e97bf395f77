//go:build unix

package shards_test

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// BenchmarkQuantizeLayer70B runs shards.Quantize on one decoder layer with
// the exact tensor shapes of llama-3-70b (hidden 8192, intermediate 28672,
// 64 heads, 8 KV heads; 855,654,400 weights, 1.71 GB of BF16), recipe uniform-q4_k,
// without and with the Hadamard rotation. This is the number the fleet
// sizing in docs/OPERATIONS.md uses.
//
// The synthetic checkpoint is written once to a temporary local store. Its
// vocabulary is cut to 256 tokens so that the embedding and lm_head (not
// part of a layer shard) do not add 4.2 GB of disk and minutes of setup;
// the layer's tensors are unchanged. ADAPTQ_BENCH_SHAPE picks another
// named shape (e.g. llama-3-8b) for a quicker run.
//
// Metrics: MB/s counts the layer's BF16 source bytes per wall-clock second
// (b.SetBytes); cpu-MB/s the same per second of process CPU time, which
// other load on a shared machine does not distort; peak-heap-MB the largest
// Go heap seen while the layer was processed (what one QuantizeShard
// activity needs, to compare with the memory formula in
// helm/adaptq/values.yaml). Run it on one core, one iteration:
//
//	go test -run '^$' -bench QuantizeLayer70B -benchtime 1x -cpu 1 -timeout 60m ./shards
func BenchmarkQuantizeLayer70B(b *testing.B) {
	shape := os.Getenv("ADAPTQ_BENCH_SHAPE")
	if shape == "" {
		shape = "llama-3-70b"
	}
	ck, shard, srcBytes := benchLayer(b, shape)
	for _, rot := range []string{"none", "hadamard"} {
		b.Run("rotation="+rot, func(b *testing.B) {
			r, err := shards.NamedRecipe("uniform-q4_k")
			if err != nil {
				b.Fatal(err)
			}
			if rot == "hadamard" {
				r.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
			}
			b.SetBytes(srcBytes)
			runtime.GC()
			peak := watchHeap()
			cpu0 := processCPU()
			b.ResetTimer()
			for b.Loop() {
				out, err := shards.Quantize(context.Background(), ck, shard, r, nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(out.Tensors) != len(shard.Tensors) {
					b.Fatalf("%d tensors out of %d", len(out.Tensors), len(shard.Tensors))
				}
			}
			b.StopTimer()
			if cpu := processCPU() - cpu0; cpu > 0 {
				b.ReportMetric(float64(srcBytes)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
			}
			b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MiB")
		})
	}
}

// benchLayer writes a one-layer synthetic checkpoint of the named shape
// (vocabulary cut to 256) and returns it with its layer shard and the
// shard's source bytes.
func benchLayer(b *testing.B, shape string) (*model.Checkpoint, shards.Shard, int64) {
	b.Helper()
	ctx := context.Background()
	raw, _, err := synth.ShapeConfig(shape, 1)
	if err != nil {
		b.Fatal(err)
	}
	raw["vocab_size"] = 256
	js, err := json.Marshal(raw)
	if err != nil {
		b.Fatal(err)
	}
	raw, cfg, err := synth.ShapeConfig(string(js), 0)
	if err != nil {
		b.Fatal(err)
	}
	s, err := store.NewLocal(b.TempDir())
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
	p := shards.MakePlan(ck)
	var shard shards.Shard
	for _, sh := range p.Shards {
		if sh.Layer == 0 {
			shard = sh
		}
	}
	var n int64
	for _, name := range shard.Tensors {
		t, _ := ck.Tensor(name)
		n += t.Size
	}
	if len(shard.Tensors) == 0 || n == 0 {
		b.Fatalf("no layer-0 shard in the plan of %s", shape)
	}
	b.Logf("%s layer 0: %d tensors, %d source bytes", shape, len(shard.Tensors), n)
	return ck, shard, n
}

// processCPU is the user+system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// watchHeap samples the heap's object bytes every 10 ms until the returned
// function is called, which reports the largest value seen.
func watchHeap() func() uint64 {
	const name = "/memory/classes/heap/objects:bytes"
	sample := []metrics.Sample{{Name: name}}
	var mu sync.Mutex
	var peak uint64
	read := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			mu.Lock()
			peak = max(peak, sample[0].Value.Uint64())
			mu.Unlock()
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		read()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
