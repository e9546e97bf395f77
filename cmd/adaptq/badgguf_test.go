package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

// TestBadGGUFInputs gives `import` and `verify` broken GGUF files (the
// fixture exported to F32, then cut or patched): each is refused with an
// error naming the file and the field or tensor, without a panic, and
// import leaves no checkpoint behind.
func TestBadGGUFInputs(t *testing.T) {
	ctx := context.Background()
	fx, _ := store.NewLocal(fixtureF32)
	ck, err := model.Open(ctx, fx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := gguf.WriteFloatModel(ctx, ck, &buf, gguf.TypeF32, gguf.LlamaOptions{}); err != nil {
		t.Fatal(err)
	}
	valid := buf.Bytes()
	dir := t.TempDir()
	patch := func(at int, v uint64, size int) []byte {
		b := bytes.Clone(valid)
		if size == 4 {
			binary.LittleEndian.PutUint32(b[at:], uint32(v))
		} else {
			binary.LittleEndian.PutUint64(b[at:], v)
		}
		return b
	}
	// tensorInfo returns the offsets of a tensor's first dimension and of
	// its type in the header.
	tensorInfo := func(name string) (dim0, typ int) {
		key := binary.LittleEndian.AppendUint64(nil, uint64(len(name)))
		key = append(key, name...)
		i := bytes.Index(valid, key)
		if i < 0 {
			t.Fatalf("no tensor info of %s", name)
		}
		p := i + len(key)
		n := int(binary.LittleEndian.Uint32(valid[p:]))
		return p + 4, p + 4 + 8*n
	}
	dimNorm, _ := tensorInfo("output_norm.weight")
	_, typQ := tensorInfo("blk.0.attn_q.weight")
	for _, tc := range []struct {
		name string
		data []byte
		want []string // in the error line of both commands
	}{
		{"truncated", valid[:len(valid)/2], []string{"beyond the end of the file", "tensor"}},
		{"lying tensor size", patch(dimNorm, 1<<20, 8), []string{`"output_norm.weight"`, "beyond the end"}},
		{"huge tensor count", patch(8, 1<<40, 8), []string{"tensor count 1099511627776 exceeds"}},
		{"huge metadata count", patch(16, 1<<40, 8), []string{"metadata count 1099511627776"}},
		{"bad string length", patch(24, 1<<62, 8), []string{"metadata key", "bytes left"}},
		{"unsupported tensor type", patch(typQ, 99, 4), []string{`"blk.0.attn_q.weight"`, "ggml type 99"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".gguf")
			if err := os.WriteFile(file, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out-"+filepath.Base(file))
			for _, args := range [][]string{
				{"import", file, "--out", out},
				{"verify", "--model", file, "--ids", fixtureIDs},
			} {
				code, _, stderr := runCLI(args...)
				if code == 0 || strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
					t.Errorf("%s: exit %d, stderr %q", args[0], code, stderr)
					continue
				}
				if !strings.Contains(stderr, file) {
					t.Errorf("%s: the error does not name %s: %q", args[0], file, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("%s: the error lacks %q: %q", args[0], w, stderr)
					}
				}
				t.Logf("%s: exit %d: %s", args[0], code, strings.TrimSpace(stderr))
			}
			// import checks the whole file before its first write.
			if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
				names := []string{}
				for _, e := range ents {
					names = append(names, e.Name())
				}
				if !contains(names, "INCOMPLETE") {
					t.Errorf("import left %v in %s without INCOMPLETE", names, out)
				}
			}
		})
	}
}
