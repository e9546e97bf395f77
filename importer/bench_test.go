package importer_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// BenchmarkImport imports a Q4_K GGUF of a synthetic llama checkpoint
// (hidden 1024, 2 layers, vocab 8192: 33M parameters) into a local
// directory (disk) or into a store that discards the bytes (discard: the
// import's own work), in F16 and in F32. MB/s is of safetensors tensor
// data written (dequantize, q/k reorder, conversion, and file writes).
func BenchmarkImport(b *testing.B) {
	ctx := context.Background()
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":1024,"intermediate_size":2816,"num_hidden_layers":2,"num_attention_heads":16,"num_key_value_heads":4,"vocab_size":8192,"rms_norm_eps":1e-5,"tie_word_embeddings":false}`, 0)
	if err != nil {
		b.Fatal(err)
	}
	ckDir := b.TempDir()
	cs, _ := store.NewLocal(ckDir)
	if err := synth.Write(ctx, cs, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	// synth writes no tokenizer: borrow the fixture's (vocab 512 ≤ 8192).
	fx, _ := store.NewLocal(fixtureDir)
	for _, key := range []string{model.TokenizerFile, importer.TokenizerConfigFile} {
		data, err := store.ReadAll(ctx, fx, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cs.Put(ctx, key, bytesReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
	ck, err := model.Open(ctx, cs)
	if err != nil {
		b.Fatal(err)
	}
	gdir := b.TempDir()
	gs, _ := store.NewLocal(gdir)
	r, _ := shards.NamedRecipe("q4_k")
	if _, _, err := export.Run(ctx, ck, gs, r, export.Events{}); err != nil {
		b.Fatal(err)
	}
	for _, dt := range []safetensors.DType{safetensors.F16, safetensors.F32} {
		for _, disk := range []bool{false, true} {
			name := dt.String() + "/discard"
			if disk {
				name = dt.String() + "/disk"
			}
			b.Run(name, func(b *testing.B) {
				var bytes int64
				for b.Loop() {
					b.StopTimer()
					local, _ := store.NewLocal(filepath.Join(b.TempDir(), "out"))
					var out store.Store = discardStore{local}
					if disk {
						out = local
					}
					b.StartTimer()
					p, _, err := importer.Import(ctx, gs, export.GGUFKey, out, importer.Options{DType: dt})
					if err != nil {
						b.Fatal(err)
					}
					bytes = p.DataBytes
				}
				b.SetBytes(bytes)
			})
		}
	}
}

// discardStore reads what is put and keeps nothing: the import's own work
// without the file system's.
type discardStore struct{ store.Store }

func (discardStore) Put(ctx context.Context, key string, r io.Reader, size int64) (store.ObjectInfo, error) {
	n, err := io.Copy(io.Discard, r)
	return store.ObjectInfo{Key: key, Size: n}, err
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
