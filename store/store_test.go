package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/store"
)

// minio is this test binary's MinIO server, started on first use.
var minio testenv.LazyMinIO

func TestMain(m *testing.M) {
	code := m.Run()
	minio.Stop()
	os.Exit(code)
}

// stores returns a fresh local store and a fresh S3 store (own prefix).
func stores(t *testing.T) map[string]store.Store {
	t.Helper()
	l, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Store{"local": l}
	out["s3"] = minio.Store(t, "adaptq-test", t.Name())
	return out
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			data := randBytes(100_000, 1)
			info, err := s.Put(ctx, "a/b/obj.bin", bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(len(data)) || info.ETag == "" || info.Key != "a/b/obj.bin" {
				t.Fatalf("put info %+v", info)
			}
			got, err := store.ReadAll(ctx, s, "a/b/obj.bin")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get: %v, equal=%v", err, bytes.Equal(got, data))
			}
			for _, r := range [][2]int64{{0, 1}, {0, 100_000}, {12345, 999}, {99_999, 1}, {500, 0}} {
				got, err := store.ReadRange(ctx, s, "a/b/obj.bin", r[0], r[1])
				if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
					t.Fatalf("range %v: %v", r, err)
				}
			}
			if _, err := s.GetRange(ctx, "a/b/obj.bin", 99_990, 11); !errors.Is(err, store.ErrRange) {
				t.Fatal("range beyond the object: want an error")
			}
			sum, err := store.Checksum(ctx, s, "a/b/obj.bin")
			if err != nil {
				t.Fatal(err)
			}
			h := crcOf(data)
			if sum != h {
				t.Fatalf("checksum %s, want %s", sum, h)
			}
			if _, err := s.Stat(ctx, "a/b/missing"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("stat missing: %v", err)
			}
			if _, err := s.Get(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("get missing: %v", err)
			}
			// Overwrite.
			if _, err := s.Put(ctx, "a/b/obj.bin", bytes.NewReader(data[:10]), 10); err != nil {
				t.Fatal(err)
			}
			if st, _ := s.Stat(ctx, "a/b/obj.bin"); st.Size != 10 {
				t.Fatalf("overwrite: size %d", st.Size)
			}
			// Create-once.
			if _, err := s.PutIfAbsent(ctx, "once", bytes.NewReader([]byte("first")), 5); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutIfAbsent(ctx, "once", bytes.NewReader([]byte("second")), 6); !errors.Is(err, store.ErrExists) {
				t.Fatalf("second create: %v", err)
			}
			if got, _ := store.ReadAll(ctx, s, "once"); string(got) != "first" {
				t.Fatalf("create-once content %q", got)
			}
			list, err := s.List(ctx, "a/")
			if err != nil || len(list) != 1 || list[0].Key != "a/b/obj.bin" {
				t.Fatalf("list a/: %v %+v", err, list)
			}
			all, _ := s.List(ctx, "")
			if len(all) != 2 {
				t.Fatalf("list all: %+v", all)
			}
			if err := s.Delete(ctx, "once"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "once"); err != nil {
				t.Fatalf("delete twice: %v", err)
			}
			if _, err := s.Stat(ctx, "once"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("after delete: %v", err)
			}
			for _, bad := range []string{"../x", "/abs", "", "a/../../b"} {
				if _, err := s.Put(ctx, bad, bytes.NewReader(nil), 0); err == nil {
					t.Fatalf("key %q accepted", bad)
				}
			}
		})
	}
}

// TestStreamingPut writes an object of unknown size larger than a multipart
// part, streamed from a reader that is never held whole.
func TestStreamingPut(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			n := int64(2*store.PartSize + 12345)
			src := io.LimitReader(rand.NewChaCha8([32]byte{7}), n)
			crc := newCRC()
			info, err := s.Put(ctx, "big", io.TeeReader(src, crc), -1)
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != n {
				t.Fatalf("size %d want %d", info.Size, n)
			}
			sum, err := store.Checksum(ctx, s, "big")
			if err != nil || sum != store.FormatCRC32C(crc.Sum32()) {
				t.Fatalf("checksum %s %v want %s", sum, err, store.FormatCRC32C(crc.Sum32()))
			}
		})
	}
}

// TestPutIfAbsentRace has many writers race to create one key: exactly one
// wins and the object holds its bytes.
func TestPutIfAbsentRace(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			const writers = 8
			var wg sync.WaitGroup
			wins := make(chan int, writers)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := bytes.Repeat([]byte{byte('a' + i)}, 1<<16)
					_, err := s.PutIfAbsent(ctx, "race", bytes.NewReader(body), int64(len(body)))
					if err == nil {
						wins <- i
					} else if !errors.Is(err, store.ErrExists) {
						t.Errorf("writer %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			close(wins)
			var winners []int
			for w := range wins {
				winners = append(winners, w)
			}
			if len(winners) != 1 {
				t.Fatalf("winners %v, want exactly one", winners)
			}
			got, _ := store.ReadAll(ctx, s, "race")
			if len(got) != 1<<16 || got[0] != byte('a'+winners[0]) || got[len(got)-1] != got[0] {
				t.Fatalf("content does not belong to the winner %d", winners[0])
			}
		})
	}
}

func TestOpenLocations(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		loc     string
		want    string
		wantErr bool
	}{
		{dir, "file://" + dir, false},
		{"file://" + dir, "file://" + dir, false},
		{"s3://bucket/some/prefix", "s3://bucket/some/prefix", false},
		{"s3://bucket", "s3://bucket", false},
		{"s3://user:pass@bucket/x", "", true},
		{"s3:///x", "", true},
		{"gs://bucket/x", "", true},
		{"file://host/x", "", true},
		{"file:///", "file:///", false},
		{"/", "file:///", false},
		{"file://", "", true},
		{"", "", true},
	} {
		s, err := store.Open(tc.loc)
		if (err != nil) != tc.wantErr {
			t.Fatalf("Open(%q): err %v", tc.loc, err)
		}
		if err == nil && s.Location() != tc.want {
			t.Fatalf("Open(%q).Location() = %q, want %q", tc.loc, s.Location(), tc.want)
		}
	}
}

func TestS3ConfigFromEnv(t *testing.T) {
	t.Setenv(store.EnvEndpoint, "http://127.0.0.1:9000")
	t.Setenv(store.EnvTLS, "")
	cfg, err := store.S3ConfigFromEnv("b", "/p/")
	if err != nil || cfg.Endpoint != "127.0.0.1:9000" || cfg.Secure || cfg.Prefix != "p" {
		t.Fatalf("%+v %v", cfg, err)
	}
	t.Setenv(store.EnvEndpoint, "minio.example:9000")
	t.Setenv(store.EnvTLS, "true")
	cfg, _ = store.S3ConfigFromEnv("b", "")
	if !cfg.Secure || cfg.Endpoint != "minio.example:9000" {
		t.Fatalf("%+v", cfg)
	}
	t.Setenv(store.EnvTLS, "maybe")
	if _, err := store.S3ConfigFromEnv("b", ""); err == nil {
		t.Fatal("bad TLS value accepted")
	}
}

func crcOf(b []byte) string {
	c := newCRC()
	c.Write(b)
	return store.FormatCRC32C(c.Sum32())
}

func TestSplitObject(t *testing.T) {
	for _, tc := range []struct{ loc, dir, key string }{
		{"out/model.gguf", "out", "model.gguf"},
		{"/abs/dir/m.parquet", "/abs/dir", "m.parquet"},
		{"s3://bucket/prefix/model.gguf", "s3://bucket/prefix", "model.gguf"},
		{"s3://bucket/text.txt", "s3://bucket", "text.txt"},
		{"file.txt", ".", "file.txt"},
		{"/root.txt", "/", "root.txt"},
		{"/dir/", "/", "dir"},
		{"file:///root.txt", "file:///", "root.txt"},
		{"file:///abs/dir/t.txt", "file:///abs/dir", "t.txt"},
		{"file://localhost/t.txt", "file://localhost/", "t.txt"},
		{"s3://bucket", "", ""},
		{"s3://bucket/", "", ""},
		{"/", "", ""},
		{"file:///", "", ""},
		{"", "", ""},
	} {
		dir, key, err := store.SplitObject(tc.loc)
		if (err != nil) != (tc.key == "") || dir != tc.dir || key != tc.key {
			t.Errorf("SplitObject(%q) = %q, %q, %v; want %q, %q", tc.loc, dir, key, err, tc.dir, tc.key)
		}
	}
}

// TestS3Refusals: a request with a wrong secret and an anonymous one are
// refused as ErrDenied (not retried as a store fault), a store without
// credentials says so before any request, and one with them passes.
func TestS3Refusals(t *testing.T) {
	ctx := context.Background()
	m := minio.Get(t)
	good := minio.Store(t, "adaptq-refusals", "")
	if _, err := good.Put(ctx, "x", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	if err := good.CheckCredentials(ctx); err != nil {
		t.Fatalf("static credentials: %v", err)
	}
	cfg := store.S3Config{Endpoint: m.Endpoint, Bucket: "adaptq-refusals"}
	wrong, err := store.NewS3(cfg, credentials.NewStaticV4(m.AccessKey, "not-the-secret", ""))
	if err != nil {
		t.Fatal(err)
	}
	anon, err := store.NewS3(cfg, credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}}))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*store.S3{"wrong secret": wrong, "anonymous": anon} {
		if _, err := s.Stat(ctx, "x"); !errors.Is(err, store.ErrDenied) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: stat: %v, want ErrDenied", name, err)
		}
		if _, err := s.Put(ctx, "y", bytes.NewReader([]byte("y")), 1); !errors.Is(err, store.ErrDenied) {
			t.Errorf("%s: put: %v, want ErrDenied", name, err)
		}
	}
	if err := anon.CheckCredentials(ctx); !errors.Is(err, store.ErrNoCredentials) {
		t.Errorf("anonymous: CheckCredentials %v, want ErrNoCredentials", err)
	}
}

// FuzzSplitObject: a split never panics, its key is one non-empty path
// element, and folder and key join back to the location (without its
// trailing slashes).
func FuzzSplitObject(f *testing.F) {
	for _, s := range []string{"/x.txt", "x", "a/b/c", "s3://b/p/k", "s3://b", "file:///x", "file://localhost/x", "/", "//", "file://", "a//b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		dir, key, err := store.SplitObject(loc)
		if err != nil {
			return
		}
		if key == "" || strings.Contains(key, "/") {
			t.Fatalf("SplitObject(%q): key %q", loc, key)
		}
		scheme, rest := "", loc
		if i := strings.Index(loc, "://"); i >= 0 {
			scheme, rest = loc[:i+3], loc[i+3:]
		}
		trimmed := scheme + strings.TrimRight(rest, "/")
		rootJoin := strings.HasSuffix(dir, "/") && dir+key == trimmed // "/" + "x", "file:///" + "x"
		if !(dir == "." && key == trimmed) && dir+"/"+key != trimmed && !rootJoin {
			t.Fatalf("SplitObject(%q) = %q, %q: does not join back to %q", loc, dir, key, trimmed)
		}
	})
}
