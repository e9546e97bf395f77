package manifest_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/ohms-project/adaptq/manifest"
)

func TestRoundTrip(t *testing.T) {
	m := &manifest.Manifest{
		Meta: map[string]string{"recipe": "q4_k", "gguf_sha256": "abc"},
		Rows: []manifest.Row{
			{Model: "s3://m/x", Shard: "embed", Tensor: "model.embed_tokens.weight", GGUFName: "token_embd.weight", Role: "embed", Layer: -1,
				Shape: []int64{512, 64}, SourceDType: "F32", OutputType: "Q8_0", RequestedType: "Q4_K", BitsPerWeight: 8.5, Bytes: 34816,
				SourceBytes: 131072, RMSE: 0.001, RelError: 0.003, CRC32C: 0xdeadbeef, ObjectKey: "shards/abc", Offset: 0},
			{Model: "s3://m/x", Shard: "layer-000", Tensor: "model.layers.0.input_layernorm.weight", Role: "attn_norm", Layer: 0,
				Shape: []int64{64}, SourceDType: "F32", OutputType: "F32", BitsPerWeight: 32, Bytes: 256, SourceBytes: 256, ObjectKey: "shards/def", Offset: 64},
		},
	}
	b, err := manifest.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Read(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	tot := got.Totals()
	if tot.Weights != 512*64+64 || tot.Bytes != 34816+256 {
		t.Fatalf("totals %+v", tot)
	}
	if _, err := manifest.Read(context.Background(), []byte("PAR1 not really")); err == nil {
		t.Fatal("garbage accepted")
	}
}
