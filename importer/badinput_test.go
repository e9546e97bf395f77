package importer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/importer"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/store"
)

// parts is a GGUF file taken apart: metadata, tensor infos and each
// tensor's bytes, to be put together again with changes.
type parts struct {
	md      gguf.Metadata
	tensors []gguf.TensorInfo
	data    map[string][]byte
}

func readParts(t testing.TB, path string) *parts {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	p := &parts{md: slices.Clone(f.Metadata), data: map[string][]byte{}}
	for _, ti := range f.Tensors {
		ti.Dims = slices.Clone(ti.Dims)
		p.tensors = append(p.tensors, ti)
		p.data[ti.Name], err = f.ReadTensor(bytes.NewReader(b), ti.Name)
		if err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *parts) clone() *parts {
	q := &parts{md: slices.Clone(p.md), data: p.data}
	for _, ti := range p.tensors {
		ti.Dims = slices.Clone(ti.Dims)
		q.tensors = append(q.tensors, ti)
	}
	return q
}

func (p *parts) drop(key string) *parts {
	p.md = slices.DeleteFunc(p.md, func(kv gguf.KV) bool { return kv.Key == key })
	return p
}

func (p *parts) set(key string, v any) *parts {
	p.md.Set(key, v)
	return p
}

func (p *parts) dropTensor(name string) *parts {
	p.tensors = slices.DeleteFunc(p.tensors, func(ti gguf.TensorInfo) bool { return ti.Name == name })
	return p
}

func (p *parts) tensor(name string) *gguf.TensorInfo {
	for i := range p.tensors {
		if p.tensors[i].Name == name {
			return &p.tensors[i]
		}
	}
	panic("no tensor " + name)
}

// addTensor adds a tensor of a known type with bytes of the right length.
func (p *parts) addTensor(t testing.TB, name string, typ uint32, dims ...uint64) *parts {
	ti, err := gguf.NewTensorInfo(name, typ, dims...)
	if err != nil {
		t.Fatal(err)
	}
	p.tensors = append(p.tensors, ti)
	if p.data[name] == nil {
		p.data = cloneMap(p.data)
		p.data[name] = make([]byte, ti.Size)
	}
	return p
}

func cloneMap(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// bytes writes the file with gguf's writer: a well-formed file whatever
// its content.
func (p *parts) bytes(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i := range p.tensors {
		ti := &p.tensors[i]
		if n, err := gguf.TensorBytes(ti.Type, ti.Dims); err == nil {
			ti.Size = n
		}
		if uint64(len(p.data[ti.Name])) != ti.Size {
			p.data = cloneMap(p.data)
			p.data[ti.Name] = make([]byte, ti.Size)
		}
	}
	w, err := gguf.NewWriter(&buf, &gguf.Plan{Metadata: p.md, Tensors: p.tensors})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Tensors() {
		if err := w.WriteTensor(ti.Name, p.data[ti.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tensorInfoAt finds the byte offset of a tensor info (its name's length
// prefix) in a file's header.
func tensorInfoAt(t testing.TB, b []byte, name string) int {
	t.Helper()
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(name)))
	i := bytes.Index(b, append(prefix[:], name...))
	if i < 0 {
		t.Fatalf("tensor info %q not found", name)
	}
	return i
}

// patchDim overwrites dimension d of a tensor in a file's header, leaving
// its offset and every other byte alone: the header then lies about the
// tensor's size.
func patchDim(t testing.TB, b []byte, name string, d int, v uint64) []byte {
	b = bytes.Clone(b)
	at := tensorInfoAt(t, b, name) + 8 + len(name) + 4 + 8*d
	binary.LittleEndian.PutUint64(b[at:], v)
	return b
}

// patchType overwrites a tensor's ggml type in a file's header.
func patchType(t testing.TB, b []byte, name string, typ uint32) []byte {
	b = bytes.Clone(b)
	at := tensorInfoAt(t, b, name) + 8 + len(name)
	nd := int(binary.LittleEndian.Uint32(b[at:]))
	binary.LittleEndian.PutUint32(b[at+4+8*nd:], typ)
	return b
}

// undecodable is a ggml type package gguf sizes but package quant does not
// decode (the first of a few candidates that is still so).
func undecodable(t testing.TB) uint32 {
	for _, typ := range []uint32{24, 26, 27, 28} { // I8, I32, I64, F64: one value a block
		if _, _, ok := gguf.BlockLayout(typ); ok && !quant.Type(typ).Valid() {
			return typ
		}
	}
	t.Skip("every candidate type is decodable now")
	return 0
}

// gpt2Vocab replaces the fixture's SentencePiece vocabulary with a GPT-2
// byte-level one of the same size: the 256 byte characters and 256 merged
// pairs of letters.
func gpt2Vocab(p *parts) *parts {
	var tokens []string
	for b := 0; b < 256; b++ {
		tokens = append(tokens, string(byteRune(byte(b))))
	}
	const letters = "abcdefghijklmnop"
	var merges []string
	for i := 0; i < 256; i++ {
		a, b := letters[i/16:i/16+1], letters[i%16:i%16+1]
		tokens = append(tokens, a+b)
		merges = append(merges, a+" "+b)
	}
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = gguf.TokenNormal
	}
	types[0] = gguf.TokenControl
	for _, k := range []string{"tokenizer.ggml.scores", "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.unknown_token_id"} {
		p.drop(k)
	}
	return p.set("tokenizer.ggml.model", "gpt2").set("tokenizer.ggml.pre", "gpt-2").
		set("tokenizer.ggml.tokens", tokens).set("tokenizer.ggml.token_type", types).set("tokenizer.ggml.merges", merges).
		set("tokenizer.ggml.bos_token_id", uint32(0)).set("tokenizer.ggml.eos_token_id", uint32(0))
}

// byteRune is GPT-2's printable character for a byte.
func byteRune(b byte) rune {
	switch {
	case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE:
		return rune(b)
	case b <= ' ':
		return 0x100 + rune(b)
	case b <= 0xA0:
		return 0x100 + 33 + rune(b-0x7F)
	}
	return 0x100 + 67
}

// TestBadInput: a broken GGUF is refused with an error naming the file and
// the key or tensor at fault, and the output location stays empty.
func TestBadInput(t *testing.T) {
	ck := fixture(t)
	valid := readParts(t, floatGGUF(t, ck, gguf.TypeF32))
	validBytes := valid.clone().bytes(t)
	gpt2 := gpt2Vocab(valid.clone())
	bad := undecodable(t)
	for _, tc := range []struct {
		name string
		file func(t *testing.T) []byte
		want []string // the error must contain each
	}{
		// Sanity: the valid file and its GPT-2 variant import.
		{"valid", func(t *testing.T) []byte { return validBytes }, nil},
		{"valid gpt2 vocabulary", func(t *testing.T) []byte { return gpt2.clone().bytes(t) }, nil},

		{"truncated in the data", func(t *testing.T) []byte { return validBytes[:len(validBytes)/2] }, []string{"reaches beyond the end of the file", "tensor"}},
		{"truncated in the header", func(t *testing.T) []byte { return validBytes[:200] }, []string{"gguf: at offset 8: tensor count 47 exceeds"}},
		{"truncated in the metadata", func(t *testing.T) []byte { return validBytes[:2000] }, []string{"gguf: metadata key", "bytes left"}},
		{"empty file", func(t *testing.T) []byte { return nil }, []string{"magic"}},
		{"tensor size that lies (overlap)", func(t *testing.T) []byte { return patchDim(t, validBytes, "token_embd.weight", 1, 1024) }, []string{`"token_embd.weight"`, "overlaps"}},
		{"tensor size that lies (beyond the end)", func(t *testing.T) []byte { return patchDim(t, validBytes, "output_norm.weight", 0, 1<<20) }, []string{`"output_norm.weight"`, "beyond the end"}},
		{"tensor count beyond the file", func(t *testing.T) []byte {
			b := bytes.Clone(validBytes)
			binary.LittleEndian.PutUint64(b[8:], 1<<40)
			return b
		}, []string{"tensor count"}},
		{"metadata count beyond the file", func(t *testing.T) []byte {
			b := bytes.Clone(validBytes)
			binary.LittleEndian.PutUint64(b[16:], 1<<40)
			return b
		}, []string{"metadata count"}},
		{"unknown tensor type", func(t *testing.T) []byte { return patchType(t, validBytes, "blk.0.attn_q.weight", 99) }, []string{`"blk.0.attn_q.weight"`, "ggml type 99"}},
		{"tensor type quant does not decode", func(t *testing.T) []byte {
			p := valid.clone()
			p.tensor("output_norm.weight").Type = bad
			return p.bytes(t)
		}, []string{`tensor "output_norm.weight" has type`, "which package quant does not decode"}},
		{"missing architecture", func(t *testing.T) []byte { return valid.clone().drop("general.architecture").bytes(t) }, []string{`"general.architecture" is missing`}},
		{"unknown architecture", func(t *testing.T) []byte { return valid.clone().set("general.architecture", "falcon").bytes(t) }, []string{`"falcon"`}},
		{"missing embedding length", func(t *testing.T) []byte { return valid.clone().drop("llama.embedding_length").bytes(t) }, []string{`"llama.embedding_length" is missing`}},
		{"missing rms epsilon", func(t *testing.T) []byte {
			return valid.clone().drop("llama.attention.layer_norm_rms_epsilon").bytes(t)
		}, []string{`"llama.attention.layer_norm_rms_epsilon" is missing`}},
		{"head count of the wrong type", func(t *testing.T) []byte { return valid.clone().set("llama.attention.head_count", "eight").bytes(t) }, []string{`"llama.attention.head_count" is string`}},
		{"kv heads that do not divide", func(t *testing.T) []byte {
			return valid.clone().set("llama.attention.head_count_kv", uint32(3)).bytes(t)
		}, []string{`"llama.attention.head_count_kv" is 3`}},
		{"zero layers", func(t *testing.T) []byte { return valid.clone().set("llama.block_count", uint32(0)).bytes(t) }, []string{`"llama.block_count" is 0`}},
		{"partial rope", func(t *testing.T) []byte { return valid.clone().set("llama.rope.dimension_count", uint32(4)).bytes(t) }, []string{`"llama.rope.dimension_count" is 4`}},
		{"yarn rope scaling", func(t *testing.T) []byte { return valid.clone().set("llama.rope.scaling.type", "yarn").bytes(t) }, []string{`"llama.rope.scaling.type" is "yarn"`}},
		{"linear rope scaling without factor", func(t *testing.T) []byte { return valid.clone().set("llama.rope.scaling.type", "linear").bytes(t) }, []string{`"llama.rope.scaling.factor" is missing`}},
		{"vocab_size that disagrees", func(t *testing.T) []byte { return valid.clone().set("llama.vocab_size", uint32(511)).bytes(t) }, []string{`"llama.vocab_size"`, "512 rows"}},
		{"missing tokens", func(t *testing.T) []byte { return valid.clone().drop("tokenizer.ggml.tokens").bytes(t) }, []string{`"tokenizer.ggml.tokens" is missing`}},
		{"tokens fewer than the embedding rows", func(t *testing.T) []byte {
			p := valid.clone()
			v, _ := p.md.Get("tokenizer.ggml.tokens")
			return p.set("tokenizer.ggml.tokens", v.([]string)[:500]).bytes(t)
		}, []string{`"tokenizer.ggml.tokens" holds 500 tokens`}},
		{"missing tokenizer model", func(t *testing.T) []byte { return valid.clone().drop("tokenizer.ggml.model").bytes(t) }, []string{`"tokenizer.ggml.model" is missing`}},
		{"unknown tokenizer model", func(t *testing.T) []byte { return valid.clone().set("tokenizer.ggml.model", "t5").bytes(t) }, []string{`"tokenizer.ggml.model" is "t5"`}},
		{"token types of the wrong length", func(t *testing.T) []byte {
			return valid.clone().set("tokenizer.ggml.token_type", []int32{1, 2, 3}).bytes(t)
		}, []string{`"tokenizer.ggml.token_type"`, "int32 array of 512"}},
		{"scores of the wrong type", func(t *testing.T) []byte { return valid.clone().set("tokenizer.ggml.scores", []string{"x"}).bytes(t) }, []string{`"tokenizer.ggml.scores" is []string`}},
		{"bos id outside the vocabulary", func(t *testing.T) []byte {
			return valid.clone().set("tokenizer.ggml.bos_token_id", uint32(9999)).bytes(t)
		}, []string{`"tokenizer.ggml.bos_token_id" is 9999`}},
		{"bos added but missing", func(t *testing.T) []byte { return valid.clone().drop("tokenizer.ggml.bos_token_id").bytes(t) }, []string{`"tokenizer.ggml.add_bos_token"`, "missing"}},
		{"repeated token", func(t *testing.T) []byte {
			p := valid.clone()
			v, _ := p.md.Get("tokenizer.ggml.tokens")
			toks := slices.Clone(v.([]string))
			toks[300] = toks[301]
			return p.set("tokenizer.ggml.tokens", toks).bytes(t)
		}, []string{`"tokenizer.ggml.tokens"`, "appears at ids 300 and 301"}},
		{"gpt2 without merges", func(t *testing.T) []byte { return gpt2.clone().drop("tokenizer.ggml.merges").bytes(t) }, []string{`"tokenizer.ggml.merges" is missing`}},
		{"gpt2 merge of unknown tokens", func(t *testing.T) []byte {
			return gpt2.clone().set("tokenizer.ggml.merges", []string{"a b", "x yz"}).bytes(t)
		}, []string{`"tokenizer.ggml.merges": merge 1`, `"yz" is not a token`}},
		{"gpt2 merge without a space", func(t *testing.T) []byte { return gpt2.clone().set("tokenizer.ggml.merges", []string{"ab"}).bytes(t) }, []string{`"tokenizer.ggml.merges": merge 0`}},
		{"unknown pre-tokenizer", func(t *testing.T) []byte { return gpt2.clone().set("tokenizer.ggml.pre", "deepseek-llm").bytes(t) }, []string{`"tokenizer.ggml.pre" is "deepseek-llm"`}},
		{"missing tensor", func(t *testing.T) []byte { return valid.clone().dropTensor("blk.2.ffn_down.weight").bytes(t) }, []string{`"blk.2.ffn_down.weight"`, "missing"}},
		{"unexpected tensor", func(t *testing.T) []byte {
			return valid.clone().addTensor(t, "blk.0.attn_output.bias", gguf.TypeF32, 64).bytes(t)
		}, []string{`"blk.0.attn_output.bias" is not part of`}},
		{"tensor of the wrong shape", func(t *testing.T) []byte {
			p := valid.clone()
			ti := p.tensor("blk.1.ffn_up.weight")
			ti.Dims[0], ti.Dims[1] = ti.Dims[1], ti.Dims[0]
			return p.bytes(t)
		}, []string{`"blk.1.ffn_up.weight" has dimensions [172 64]`}},
		{"embedding of the wrong width", func(t *testing.T) []byte {
			p := valid.clone()
			p.tensor("token_embd.weight").Dims[0] = 32
			return p.bytes(t)
		}, []string{`"token_embd.weight" has dimensions [32 512]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "broken.gguf")
			if err := os.WriteFile(path, tc.file(t), 0o644); err != nil {
				t.Fatal(err)
			}
			src, _ := store.NewLocal(dir)
			outDir := filepath.Join(t.TempDir(), "out")
			out, _ := store.NewLocal(outDir)
			_, _, err := importer.Import(context.Background(), src, "broken.gguf", out, importer.Options{})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("valid file refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("imported")
			}
			msg := err.Error()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if _, serr := os.Stat(outDir); !errors.Is(serr, os.ErrNotExist) {
				entries, _ := os.ReadDir(outDir)
				t.Errorf("the refused import wrote %d entries into the output (%v)", len(entries), serr)
			}
		})
	}
}

// failingStore fails the Put of one key, after reading some of its bytes,
// like a store that breaks mid-upload.
type failingStore struct {
	store.Store
	failKey string
}

func (s *failingStore) Put(ctx context.Context, key string, r io.Reader, size int64) (store.ObjectInfo, error) {
	if key == s.failKey {
		if _, err := io.CopyN(io.Discard, r, min(size/2, 1000)); err != nil {
			return store.ObjectInfo{}, err
		}
		return store.ObjectInfo{}, fmt.Errorf("injected failure writing %s", key)
	}
	return s.Store.Put(ctx, key, r, size)
}

// TestFailedWriteRemovesWhatWasWritten: when the store fails while the
// checkpoint is written (the second safetensors file, or config.json at
// the end), the files already written are removed and the error names the
// object; an output that already holds a checkpoint is refused untouched.
func TestFailedWriteRemovesWhatWasWritten(t *testing.T) {
	ck := fixture(t)
	path := floatGGUF(t, ck, gguf.TypeF32)
	src, _ := store.NewLocal(filepath.Dir(path))
	ctx := context.Background()
	const shard = 150 << 10
	dir := t.TempDir()
	out, _ := store.NewLocal(dir)
	if _, _, err := importer.Import(ctx, src, filepath.Base(path), out, importer.Options{MaxShardBytes: shard}); err != nil {
		t.Fatal(err)
	}
	before, _ := out.List(ctx, "")
	var files []string
	for _, o := range before {
		if strings.HasSuffix(o.Key, ".safetensors") {
			files = append(files, o.Key)
		}
	}
	if len(files) < 3 || len(before) != len(files)+4 { // + index, tokenizer.json, tokenizer_config.json, config.json
		t.Fatalf("sharded import wrote %v", before)
	}
	for _, failKey := range []string{files[1], model.ConfigFile} {
		t.Run(failKey, func(t *testing.T) {
			local, _ := store.NewLocal(t.TempDir())
			out := &failingStore{Store: local, failKey: failKey}
			_, _, err := importer.Import(ctx, src, filepath.Base(path), out, importer.Options{MaxShardBytes: shard})
			if err == nil || !strings.Contains(err.Error(), "injected failure writing "+failKey) || !strings.Contains(err.Error(), local.Location()+"/"+failKey) {
				t.Fatalf("error %v", err)
			}
			objs, err := local.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 0 {
				t.Errorf("%d objects left after the failure: %v", len(objs), objs)
			}
		})
	}
	_, _, err := importer.Import(ctx, src, filepath.Base(path), out, importer.Options{})
	if err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("second import into the same location: %v", err)
	}
	after, _ := out.List(ctx, "")
	if !slices.EqualFunc(before, after, func(a, b store.ObjectInfo) bool { return a.Key == b.Key && a.ETag == b.ETag }) {
		t.Errorf("the refused import changed the output")
	}
}
