package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/export"
	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/manifest"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
)

// minio is this test binary's MinIO server, started on first use.
var minio testenv.LazyMinIO

func TestMain(m *testing.M) {
	code := m.Run()
	minio.Stop()
	os.Exit(code)
}

func s3Store(t *testing.T, prefix string) store.Store {
	return minio.Store(t, "adaptq-export-test", prefix)
}

func fixture(t testing.TB) *model.Checkpoint {
	s, _ := store.NewLocal("../testdata/models/stories260k")
	ck, err := model.Open(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func recipe(t testing.TB, name string, rot bool) shards.Recipe {
	r, err := shards.NamedRecipe(name)
	if err != nil {
		t.Fatal(err)
	}
	if rot {
		r.Rotation = shards.Rotation{Kind: "hadamard", Seed: 1}
	}
	return r
}

// TestRunFixture exports the fixture to both stores and checks the GGUF and
// the manifest against each other, then reruns: every shard is reused and
// the GGUF is bit-identical.
func TestRunFixture(t *testing.T) {
	ctx := context.Background()
	ck := fixture(t)
	local, _ := store.NewLocal(t.TempDir())
	outs := map[string]store.Store{"local": local, "s3": s3Store(t, t.Name())}
	for kind, out := range outs {
		for _, tc := range []struct {
			name string
			rot  bool
		}{{"q4_k", false}, {"q8_0", true}, {"tq2_0", false}} {
			sub := out
			if kind == "s3" {
				sub = s3Store(t, t.Name()+"/"+tc.name)
			} else {
				sub, _ = store.NewLocal(t.TempDir())
			}
			r := recipe(t, tc.name, tc.rot)
			sum, recs, err := export.Run(ctx, ck, sub, r, export.Events{})
			if err != nil {
				t.Fatalf("%s %s: %v", kind, tc.name, err)
			}
			if len(recs) != 7 || sum.Tensors < 47 || sum.BitsPerWeight <= 0 || sum.Ratio <= 1 && tc.name != "f32" {
				t.Fatalf("%s %s: summary %+v", kind, tc.name, sum)
			}
			g, err := store.ReadAll(ctx, sub, export.GGUFKey)
			if err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Read(bytes.NewReader(g), int64(len(g)))
			if err != nil {
				t.Fatalf("%s %s: our GGUF does not read back: %v", kind, tc.name, err)
			}
			mb, _ := store.ReadAll(ctx, sub, export.ManifestKey)
			m, err := manifest.Read(ctx, mb)
			if err != nil {
				t.Fatal(err)
			}
			if m.Meta["gguf_sha256"] != sum.GGUFSHA256 || len(m.Rows) != sum.Tensors || len(f.Tensors) != sum.Tensors {
				t.Fatalf("%s %s: manifest %d rows, gguf %d tensors, summary %d", kind, tc.name, len(m.Rows), len(f.Tensors), sum.Tensors)
			}
			for _, row := range m.Rows {
				ti, ok := f.Tensor(row.GGUFName)
				if !ok || ti.Size != uint64(row.Bytes) || gguf.TypeName(ti.Type) != row.OutputType {
					t.Fatalf("%s: manifest row %+v vs gguf %+v", row.GGUFName, row, ti)
				}
				data, err := f.ReadTensor(bytes.NewReader(g), row.GGUFName)
				if err != nil || shards.CRC32C(data) != row.CRC32C {
					t.Fatalf("%s: bytes in the GGUF do not match the manifest's CRC", row.GGUFName)
				}
			}
			tot := m.Totals()
			if tot.Bytes != sum.Bytes || sum.Weights != 260032 || (!tc.rot && tot.Weights != sum.Weights) {
				t.Fatalf("totals %+v vs %+v", tot, sum)
			}
			// Rerun: shards reused, same bytes.
			sum2, recs2, err := export.Run(ctx, ck, sub, r, export.Events{})
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs2 {
				if !rec.Reused {
					t.Fatalf("%s: shard %s was not reused", kind, rec.Shard)
				}
			}
			if sum2.GGUFSHA256 != sum.GGUFSHA256 {
				t.Fatalf("%s %s: rerun changed the GGUF", kind, tc.name)
			}
		}
	}
}

// TestCorruptShardFailsStitch: a shard object damaged in the store fails
// the stitch (its CRC is checked) and no GGUF appears.
func TestCorruptShardFailsStitch(t *testing.T) {
	ctx := context.Background()
	ck := fixture(t)
	r := recipe(t, "q8_0", false)
	p := shards.MakePlan(ck)
	for _, tc := range []struct {
		name string
		harm func(out store.Store, rec export.ShardRecord) error
		want string
	}{
		{"flipped byte", func(out store.Store, rec export.ShardRecord) error {
			obj, _ := store.ReadAll(ctx, out, rec.Key)
			obj[len(obj)-40] ^= 0xff
			_, err := out.Put(ctx, rec.Key, bytes.NewReader(obj), int64(len(obj)))
			return err
		}, "checksum mismatch"},
		{"truncated object", func(out store.Store, rec export.ShardRecord) error {
			obj, _ := store.ReadAll(ctx, out, rec.Key)
			_, err := out.Put(ctx, rec.Key, bytes.NewReader(obj[:len(obj)/2]), int64(len(obj)/2))
			return err
		}, "corrupt shard object"},
		{"missing object", func(out store.Store, rec export.ShardRecord) error {
			return out.Delete(ctx, rec.Key)
		}, "object not found"},
		{"results disagree with the object", func(out store.Store, rec export.ShardRecord) error {
			b, _ := store.ReadAll(ctx, out, rec.ResultKey)
			b = bytes.Replace(b, []byte(`"bytes": `), []byte(`"bytes": 1`), 1)
			_, err := out.Put(ctx, rec.ResultKey, bytes.NewReader(b), int64(len(b)))
			return err
		}, "blk.1.attn_norm.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := store.NewLocal(t.TempDir())
			_, recs, err := export.Run(ctx, ck, out, r, export.Events{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.harm(out, recs[2]); err != nil {
				t.Fatal(err)
			}
			out.Delete(ctx, export.GGUFKey)
			_, err = export.Stitch(ctx, ck, out, p, r, recs)
			if err == nil {
				t.Fatal("stitched a damaged shard")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if _, err := out.Stat(ctx, export.GGUFKey); err == nil {
				t.Fatal("a GGUF appeared although the stitch failed")
			}
		})
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// TestComposeOnS3: on MinIO, a model whose shards are at least 5 MiB is
// stitched server-side (ComposeObject); the file is bit-identical to the
// streamed one written to a local directory.
func TestComposeOnS3(t *testing.T) {
	ctx := context.Background()
	src, _ := store.NewLocal(t.TempDir())
	raw, cfg, err := synth.ShapeConfig(`{"model_type":"llama","hidden_size":1024,"intermediate_size":2816,"num_hidden_layers":2,"num_attention_heads":8,"vocab_size":8192}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Write(ctx, src, raw, cfg, synth.Options{DType: safetensors.BF16, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	tok, _ := store.ReadAll(ctx, mustLocal(t, "../testdata/models/stories260k"), model.TokenizerFile)
	if _, err := src.Put(ctx, model.TokenizerFile, bytesReader(tok), int64(len(tok))); err != nil {
		t.Fatal(err)
	}
	ck, err := model.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	r := recipe(t, "q8_0", false)
	local, _ := store.NewLocal(t.TempDir())
	want, _, err := export.Run(ctx, ck, local, r, export.Events{})
	if err != nil {
		t.Fatal(err)
	}
	s3 := s3Store(t, t.Name())
	got, _, err := export.Run(ctx, ck, s3, r, export.Events{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Composed || want.Composed {
		t.Fatalf("composed: s3 %v, local %v", got.Composed, want.Composed)
	}
	if got.GGUFSHA256 != want.GGUFSHA256 || got.GGUFSize != want.GGUFSize {
		t.Fatalf("composed file %s (%d bytes) differs from streamed %s (%d bytes)", got.GGUFSHA256, got.GGUFSize, want.GGUFSHA256, want.GGUFSize)
	}
	b, _ := store.ReadAll(ctx, s3, export.GGUFKey)
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want.GGUFSHA256 {
		t.Fatal("the composed object's bytes do not have the reported SHA-256")
	}
	if _, err := s3.Stat(ctx, export.GGUFKey+".part0"); err == nil {
		t.Fatal("the temporary first part was left behind")
	}
}
