package reliability

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/safetensors"
	"github.com/ohms-project/adaptq/store"
	"github.com/ohms-project/adaptq/synth"
	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

// services are the real services every test of the package shares: one
// Temporal CLI dev server, one MinIO, the adaptq binary and an SDK client.
// Each test uses its own task queue, bucket prefixes and worker processes.
type services struct {
	temporal *testenv.TemporalCLI
	minio    *testenv.MinIO
	bin      string // the adaptq binary
	dir      string // scratch directory of the package
	client   client.Client

	mu     sync.Mutex
	models map[string]string // model name → s3 location
	refs   map[string]*refRun
}

// refRun is an uninterrupted reference run of one input.
type refRun struct {
	Summary  workflows.Summary
	Duration time.Duration
	Keys     []string // keys under the output prefix
}

var (
	suiteOnce    sync.Once
	suite        *services
	suiteErr     error
	suiteMissing bool
)

func TestMain(m *testing.M) {
	code := m.Run()
	if suite != nil {
		suite.stop()
	}
	os.Exit(code)
}

// env returns the shared services, starting them on first use. A missing
// tool skips the test (fails it with CI=true).
func env(t *testing.T) *services {
	t.Helper()
	suiteOnce.Do(func() { suite, suiteMissing, suiteErr = startServices() })
	if suiteErr != nil {
		if suiteMissing {
			testenv.Missing(t, suiteErr.Error())
		}
		t.Fatal(suiteErr)
	}
	return suite
}

func startServices() (s *services, missing bool, err error) {
	if _, err := testenv.TemporalBinary(); err != nil {
		return nil, true, err
	}
	if _, err := testenv.MinIOBinary(); err != nil {
		return nil, true, err
	}
	s = &services{models: map[string]string{}, refs: map[string]*refRun{}}
	defer func() {
		if err != nil {
			s.stop()
			s = nil
		}
	}()
	if s.dir, err = os.MkdirTemp("", "adaptq-reliability-*"); err != nil {
		return nil, false, err
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, false, err
	}
	s.bin = filepath.Join(s.dir, "adaptq")
	build := exec.Command("go", "build", "-o", s.bin, "./cmd/adaptq")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, false, fmt.Errorf("build adaptq: %v\n%s", err, out)
	}
	if s.temporal, err = testenv.StartTemporalDevServer(); err != nil {
		return nil, false, fmt.Errorf("Temporal dev server: %w", err)
	}
	if s.minio, err = testenv.StartMinIO(); err != nil {
		return nil, false, fmt.Errorf("MinIO: %w", err)
	}
	s.client, err = client.Dial(client.Options{HostPort: s.temporal.Address, Namespace: s.temporal.Namespace,
		Logger: workers.NewSDKLogger(zerolog.Nop())})
	if err != nil {
		return nil, false, fmt.Errorf("dial Temporal at %s: %w", s.temporal.Address, err)
	}
	return s, false, nil
}

func (s *services) stop() {
	if s.client != nil {
		s.client.Close()
	}
	if s.minio != nil {
		s.minio.Stop()
	}
	if s.temporal != nil {
		s.temporal.Stop()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

// uniqueName returns a name unique in the package run (task queues,
// workflow ids, prefixes).
func uniqueName(t *testing.T, what string) string {
	base := strings.NewReplacer("/", "-", " ", "-").Replace(strings.ToLower(t.Name()))
	return fmt.Sprintf("%s-%s-%d", base, what, time.Now().UnixNano()%1_000_000_000)
}

// workerOpts configures one worker process.
type workerOpts struct {
	Name          string         // identity and log file name
	Queue         string         // base task queue
	Role          string         // "" = all
	MaxConcurrent int            // --max-concurrent (0: SDK default)
	GOMAXPROCS    int            // 0: inherit
	MinIO         *testenv.MinIO // nil: the shared one
	Env           []string       // more environment variables (KEY=value)
}

// workerProc is a running `adaptq worker` process.
type workerProc struct {
	Name    string
	Addr    string // metrics and health
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startWorker starts an `adaptq worker` process and waits until /readyz
// answers. The process is killed when the test ends.
func (s *services) startWorker(t *testing.T, o workerOpts) *workerProc {
	t.Helper()
	if o.Role == "" {
		o.Role = workers.RoleAll
	}
	if o.MinIO == nil {
		o.MinIO = s.minio
	}
	w := &workerProc{Name: o.Name, Addr: freeAddr(t), exited: make(chan struct{})}
	w.LogPath = filepath.Join(s.dir, uniqueName(t, o.Name)+".log")
	logf, err := os.Create(w.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{"worker", "--temporal", s.temporal.Address, "--namespace", s.temporal.Namespace,
		"--task-queue", o.Queue, "--role", o.Role, "--max-concurrent", strconv.Itoa(o.MaxConcurrent),
		"--metrics-addr", w.Addr, "--health-addr", w.Addr, "--stop-timeout", "10s", "--identity", o.Name}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(append(os.Environ(), o.MinIO.Env()...), o.Env...)
	if o.GOMAXPROCS > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.GOMAXPROCS))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker %s: %v", o.Name, err)
	}
	w.cmd = cmd
	go func() { cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		w.Kill()
		if t.Failed() {
			t.Logf("worker %s log (tail):\n%s", w.Name, tail(w.LogPath, 4000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-w.exited:
			t.Fatalf("worker %s exited at start:\n%s", o.Name, tail(w.LogPath, 4000))
		default:
		}
		resp, err := http.Get("http://" + w.Addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return w
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("worker %s not ready after 60s:\n%s", o.Name, tail(w.LogPath, 4000))
	return nil
}

// Kill sends SIGKILL to the worker process (by its pid) and waits for it.
func (w *workerProc) Kill() {
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	select {
	case <-w.exited:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.exited
}

// Metric returns the value of a Prometheus metric line (name with labels,
// exactly as /metrics prints it), or -1 when absent.
func (w *workerProc) Metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + w.Addr + "/metrics")
	if err != nil {
		t.Fatalf("worker %s metrics: %v", w.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return -1
}

// Log returns the worker's log so far.
func (w *workerProc) Log() string {
	b, _ := os.ReadFile(w.LogPath)
	return string(b)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// temporalCLI runs a temporal client command against the dev server and
// returns its standard output.
func (s *services) temporalCLI(t *testing.T, ctx context.Context, args ...string) ([]byte, error) {
	t.Helper()
	cmd := s.temporal.Command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("temporal %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), out)
	}
	return out, nil
}

// bucket returns a store on bucket/prefix of m, creating the bucket.
func bucket(t *testing.T, m *testenv.MinIO, name, prefix string) *store.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := m.Store(ctx, name, prefix)
	if err != nil {
		t.Fatalf("store s3://%s/%s: %v", name, prefix, err)
	}
	return st
}

// objects lists every object of a store.
func objects(t *testing.T, st store.Store) []store.ObjectInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := st.List(ctx, "")
	if err != nil {
		t.Fatalf("list %s: %v", st.Location(), err)
	}
	return list
}

func keysOf(list []store.ObjectInfo) []string {
	out := make([]string, len(list))
	for i, o := range list {
		out[i] = o.Key
	}
	return out
}

// objectSHA256 reads an object and returns its SHA-256 in hex.
func objectSHA256(t *testing.T, st store.Store, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc, err := st.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", store.Describe(st, key), err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("read %s: %v", store.Describe(st, key), err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// modelShape is a synthetic llama checkpoint with the fixture's vocabulary
// (512), so the fixture's tokenizer.json is copied beside it.
type modelShape struct {
	Hidden, Intermediate, Layers, Heads, KVHeads int
	Seed                                         uint64
}

// fixtureModel is the name of the fixture in model().
const fixtureModel = "stories260k"

// model returns the s3 location of a model in the shared MinIO, writing
// and uploading it on first use: fixtureModel or a synthetic shape.
func (s *services) model(t *testing.T, name string, shape *modelShape) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if loc, ok := s.models[name]; ok {
		return loc
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	fixture := filepath.Join(root, "testdata", "models", fixtureModel)
	dir := fixture
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if shape != nil {
		dir = filepath.Join(s.dir, "models", name)
		if err := writeSynth(ctx, dir, fixture, *shape); err != nil {
			t.Fatalf("synthetic model %s: %v", name, err)
		}
	}
	st := bucket(t, s.minio, "models", "")
	if err := testenv.UploadDir(ctx, dir, st, name); err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	loc := "s3://models/" + name
	s.models[name] = loc
	return loc
}

// modelDir is the local directory of a synthetic model written by model().
func (s *services) modelDir(name string) string { return filepath.Join(s.dir, "models", name) }

// writeSynth writes a synthetic BF16 llama checkpoint into dir and copies
// the fixture's tokenizer files (same vocabulary) beside it.
func writeSynth(ctx context.Context, dir, fixture string, sh modelShape) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": sh.Hidden, "intermediate_size": sh.Intermediate, "num_hidden_layers": sh.Layers,
		"num_attention_heads": sh.Heads, "num_key_value_heads": sh.KVHeads, "vocab_size": 512,
		"max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}
	b, _ := json.Marshal(cfg)
	raw, mc, err := synth.ShapeConfig(string(b), 0)
	if err != nil {
		return err
	}
	st, err := store.NewLocal(dir)
	if err != nil {
		return err
	}
	if err := synth.Write(ctx, st, raw, mc, synth.Options{DType: safetensors.BF16, Seed: sh.Seed}); err != nil {
		return err
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(fixture, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runInput starts QuantizeModel with the SDK client.
func (s *services) startRun(t *testing.T, ctx context.Context, id, queue string, in workflows.QuantizeInput) client.WorkflowRun {
	t.Helper()
	run, err := s.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue,
		WorkflowExecutionTimeout: 10 * time.Minute}, workflows.QuantizeModel, in)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return run
}

// reference runs in once, uninterrupted, with one fresh worker of
// maxConcurrent activities into s3://ref/<name>, and remembers the result.
func (s *services) reference(t *testing.T, name string, in workflows.QuantizeInput, maxConcurrent int) *refRun {
	t.Helper()
	s.mu.Lock()
	if r, ok := s.refs[name]; ok {
		s.mu.Unlock()
		return r
	}
	s.mu.Unlock()
	queue := "ref-" + name
	s.startWorker(t, workerOpts{Name: "ref-" + name, Queue: queue, MaxConcurrent: maxConcurrent})
	bucket(t, s.minio, "ref", "")
	in.Output = "s3://ref/" + name
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	run := s.startRun(t, ctx, "ref-"+name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), queue, in)
	var sum workflows.Summary
	if err := run.Get(ctx, &sum); err != nil {
		t.Fatalf("reference run %s: %v", name, err)
	}
	r := &refRun{Summary: sum, Duration: time.Since(start), Keys: keysOf(objects(t, bucket(t, s.minio, "ref", name)))}
	t.Logf("reference run %s: %.1fs, GGUF sha256 %s", name, r.Duration.Seconds(), sum.Export.GGUFSHA256)
	s.mu.Lock()
	s.refs[name] = r
	s.mu.Unlock()
	return r
}

// errorsAs is errors.As for tests that want a target of type T.
func errorsAs[T any](err error) (T, bool) {
	var v T
	ok := errors.As(err, &v)
	return v, ok
}
