package manifest_test

import (
	"context"
	"testing"

	"github.com/ohms-project/adaptq/manifest"
)

// FuzzRead: arbitrary bytes give a manifest or an error, never a panic.
func FuzzRead(f *testing.F) {
	b, err := manifest.Marshal(&manifest.Manifest{Meta: map[string]string{"k": "v"}, Rows: []manifest.Row{{Tensor: "t", Shape: []int64{2, 3}, Bytes: 6}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("PAR1PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Read(context.Background(), data)
		if err == nil && m == nil {
			t.Fatal("nil manifest without an error")
		}
	})
}
