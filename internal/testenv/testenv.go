// Package testenv starts the real services the tests run against (a MinIO
// server on 127.0.0.1) and finds the project's tools. Outside CI a missing
// tool skips the tests that need it; with CI=true it fails them.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ohms-project/adaptq/store"
)

// RepoRoot returns the directory holding the module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// InCI reports whether the tests run in CI (CI=true), where a missing
// service is a failure rather than a skip.
func InCI() bool { v, _ := strconv.ParseBool(os.Getenv("CI")); return v }

// Missing fails the test in CI and skips it elsewhere, naming what is missing
// and how to install it.
func Missing(tb testing.TB, what string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s (CI=true: a missing service is a failure; run scripts/tools.sh)", what)
	}
	tb.Skipf("%s (run scripts/tools.sh to install it)", what)
}

// MinIO is a MinIO server started for tests.
type MinIO struct {
	Endpoint  string // 127.0.0.1:port
	AccessKey string
	SecretKey string
	cmd       *exec.Cmd
	dir       string
	bin       string
	port      int
}

// MinIOBinary finds the MinIO server: $ADAPTQ_MINIO_BIN or .tools/bin/minio.
func MinIOBinary() (string, error) {
	if p := os.Getenv("ADAPTQ_MINIO_BIN"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "bin", "minio")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("MinIO server not found at %s", p)
	}
	return p, nil
}

// StartMinIO starts a MinIO server on a free loopback port with a temporary
// data directory. Call Stop when done.
func StartMinIO() (*MinIO, error) {
	bin, err := MinIOBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "adaptq-minio-*")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &MinIO{AccessKey: "adaptq-test", SecretKey: randomSecret(), dir: dir, bin: bin, port: port}
	if err := m.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return m, nil
}

func (m *MinIO) start() error {
	m.Endpoint = "127.0.0.1:" + strconv.Itoa(m.port)
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.Endpoint,
		"--console-address", "127.0.0.1:0", filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	logf, err := os.Create(filepath.Join(m.dir, "minio.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start MinIO: %w", err)
	}
	m.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && m.serving() {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.Stop()
	log, _ := os.ReadFile(filepath.Join(m.dir, "minio.log"))
	return fmt.Errorf("MinIO did not become ready on %s: %s", m.Endpoint, log)
}

// serving reports whether the server answers an authenticated request (the
// health endpoint can say ready before the object layer is initialised).
func (m *MinIO) serving() bool {
	s, err := store.NewS3(store.S3Config{Endpoint: m.Endpoint, Bucket: "adaptq-probe"},
		credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""))
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = s.Client().BucketExists(ctx, "adaptq-probe")
	return err == nil
}

// Kill stops the server process abruptly (data stays), for fault tests.
func (m *MinIO) Kill() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
		m.cmd = nil
	}
}

// Restart starts the server again on the same port and data directory.
func (m *MinIO) Restart() error {
	m.Kill()
	return m.start()
}

// Stop stops the server and removes its data.
func (m *MinIO) Stop() {
	m.Kill()
	if m.dir != "" {
		os.RemoveAll(m.dir)
	}
}

// Store returns an S3 store on bucket/prefix of the server, creating the
// bucket if needed.
func (m *MinIO) Store(ctx context.Context, bucket, prefix string) (*store.S3, error) {
	s, err := store.NewS3(store.S3Config{Endpoint: m.Endpoint, Bucket: bucket, Prefix: prefix},
		credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""))
	if err != nil {
		return nil, err
	}
	return s, s.EnsureBucket(ctx)
}

// Env returns the environment variables that point store.Open at this server.
func (m *MinIO) Env() []string {
	return []string{
		store.EnvEndpoint + "=http://" + m.Endpoint,
		store.EnvAccessKey + "=" + m.AccessKey,
		store.EnvSecretKey + "=" + m.SecretKey,
	}
}

// UploadDir copies every file of a local directory into s under prefix.
func UploadDir(ctx context.Context, dir string, s store.Store, prefix string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, _ := f.Stat()
		_, err = s.Put(ctx, store.Join(prefix, filepath.ToSlash(rel)), f, st.Size())
		return err
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomSecret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// LazyMinIO starts one MinIO server for a test binary on first use; its
// TestMain calls Stop. A test that needs it and cannot have it fails in
// CI and skips elsewhere.
type LazyMinIO struct {
	once sync.Once
	srv  *MinIO
	err  error
}

// Get returns the server, starting it on first use.
func (l *LazyMinIO) Get(tb testing.TB) *MinIO {
	tb.Helper()
	l.once.Do(func() { l.srv, l.err = StartMinIO() })
	if l.err != nil {
		Missing(tb, "MinIO: "+l.err.Error())
	}
	return l.srv
}

// Store returns an S3 store on bucket/prefix of the shared server.
func (l *LazyMinIO) Store(tb testing.TB, bucket, prefix string) *store.S3 {
	tb.Helper()
	s, err := l.Get(tb).Store(context.Background(), bucket, prefix)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Stop stops the server if it was started.
func (l *LazyMinIO) Stop() {
	if l.srv != nil {
		l.srv.Stop()
	}
}

// FreeAddr returns a loopback address (127.0.0.1:port) that was free a
// moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	p, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}
