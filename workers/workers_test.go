package workers_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/ohms-project/adaptq/internal/testenv"
	"github.com/ohms-project/adaptq/workers"
)

var searchAttributes = map[string]enums.IndexedValueType{
	"AdaptqModel":  enums.INDEXED_VALUE_TYPE_KEYWORD,
	"AdaptqRecipe": enums.INDEXED_VALUE_TYPE_KEYWORD,
	"AdaptqPhase":  enums.INDEXED_VALUE_TYPE_KEYWORD,
}

// testLogger is a zerolog logger writing into t.Log until the test ends
// (server goroutines may log a line after that).
func testLogger(t *testing.T) zerolog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return zerolog.New(w).Level(zerolog.InfoLevel)
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

func freePort(t *testing.T) int {
	_, p, _ := net.SplitHostPort(testenv.FreeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

func startDevServer(t *testing.T, opts workers.DevServerOptions) *workers.DevServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if opts.UIPort == 0 {
		opts.UIPort = -1 // tests run side by side: never race for 8233
	}
	start := time.Now()
	s, err := workers.StartDevServer(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dev server on %s in %v", s.Address(), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// echoWorkflow runs echoActivity once.
func echoWorkflow(ctx workflow.Context, s string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var out string
	err := workflow.ExecuteActivity(ctx, echoActivity, s).Get(ctx, &out)
	return out, err
}

// echoActivity records a shard in the worker's metrics and echoes s.
func echoActivity(ctx context.Context, s string) (string, error) {
	workers.MetricsFromContext(ctx).ShardDone(0.25, 1000, 250)
	return "echo: " + s, nil
}

// echoRegistrar registers the test workflow on the quantize role's queue
// and the activity on both queues (a worker must register something).
func echoRegistrar(r worker.Registry, role string) error {
	switch role {
	case workers.RoleQuantize:
		r.RegisterWorkflow(echoWorkflow)
		r.RegisterActivity(echoActivity)
	case workers.RoleEval:
		r.RegisterActivity(echoActivity)
	default:
		return fmt.Errorf("role %q", role)
	}
	return nil
}

func runEcho(t *testing.T, c client.Client, taskQueue, id string, sa temporal.SearchAttributes) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: taskQueue, TypedSearchAttributes: sa,
	}, echoWorkflow, "hi")
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if out != "echo: hi" {
		t.Fatalf("workflow returned %q", out)
	}
}

func gatherValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
		return sum
	}
	return -1
}

func TestDevServerInProcessWorker(t *testing.T) {
	log := testLogger(t)
	srv := startDevServer(t, workers.DevServerOptions{
		Port: freePort(t), SearchAttributes: searchAttributes, Logger: log,
	})
	if srv.Namespace() != "default" {
		t.Errorf("namespace %q, want default", srv.Namespace())
	}

	reg := prometheus.NewRegistry()
	cfg := workers.Config{
		HostPort: srv.Address(), Namespace: srv.Namespace(), TaskQueue: "adaptq-test",
		StopTimeout: 5 * time.Second, Logger: log, Registry: reg, Metrics: workers.NewMetrics(reg),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := workers.StartInProcess(c, cfg, echoRegistrar)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// The search attributes exist in the namespace.
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: srv.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	for name, typ := range searchAttributes {
		if got, ok := resp.GetCustomAttributes()[name]; !ok || got != typ {
			t.Errorf("search attribute %s: %v, %v (want %v)", name, got, ok, typ)
		}
	}

	model := temporal.NewSearchAttributeKeyKeyword("AdaptqModel")
	runEcho(t, c, cfg.TaskQueue, "echo-1", temporal.NewSearchAttributes(model.ValueSet("stories260k")))

	// The workflow is found by its search attribute.
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: srv.Namespace(), Query: `AdaptqModel = "stories260k"`,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetExecutions()) == 1 && list.GetExecutions()[0].GetExecution().GetWorkflowId() == "echo-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility query by AdaptqModel found %d executions", len(list.GetExecutions()))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The activity reached the worker's metrics through its context; the
	// SDK's counters arrived on the registry.
	if got := gatherValue(t, reg, "adaptq_shards_done_total"); got != 1 {
		t.Errorf("adaptq_shards_done_total = %v, want 1", got)
	}
	if got := gatherValue(t, reg, "adaptq_shard_bytes_in_total"); got != 1000 {
		t.Errorf("adaptq_shard_bytes_in_total = %v, want 1000", got)
	}
	if got := gatherValue(t, reg, "temporal_workflow_completed"); got < 1 {
		t.Errorf("temporal_workflow_completed = %v, want ≥ 1", got)
	}

	// The Temporal CLI attaches to the embedded server.
	t.Run("TemporalCLI", func(t *testing.T) {
		bin, err := testenv.TemporalBinary()
		if err != nil {
			testenv.Missing(t, err.Error())
		}
		out, err := exec.CommandContext(ctx, bin, "workflow", "list", "--address", srv.Address(),
			"--namespace", srv.Namespace(), "--query", `AdaptqModel = "stories260k"`).CombinedOutput()
		if err != nil {
			t.Fatalf("temporal workflow list: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "echo-1") {
			t.Fatalf("temporal workflow list does not show echo-1:\n%s", out)
		}
	})
}

func TestDevServerDBFile(t *testing.T) {
	log := testLogger(t)
	db := filepath.Join(t.TempDir(), "adaptq.sqlite")
	first := map[string]enums.IndexedValueType{"AdaptqModel": enums.INDEXED_VALUE_TYPE_KEYWORD}

	srv := startDevServer(t, workers.DevServerOptions{Port: freePort(t), DBFile: db, SearchAttributes: first, Logger: log})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := workers.Config{HostPort: srv.Address(), Namespace: srv.Namespace(), TaskQueue: "adaptq-db", Logger: log}
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := workers.StartInProcess(c, cfg, echoRegistrar)
	if err != nil {
		t.Fatal(err)
	}
	runEcho(t, c, cfg.TaskQueue, "persisted", temporal.SearchAttributes{})
	w.Stop()
	c.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// Restarted on the same file with more attributes: the workflow is still
	// there and the new attributes are added.
	srv = startDevServer(t, workers.DevServerOptions{Port: freePort(t), DBFile: db, SearchAttributes: searchAttributes, Logger: log})
	cfg.HostPort = srv.Address()
	c, err = workers.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DescribeWorkflowExecution(ctx, "persisted", ""); err != nil {
		t.Fatalf("workflow of the first run: %v", err)
	}
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: srv.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	for name := range searchAttributes {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			t.Errorf("search attribute %s missing after restart", name)
		}
	}
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitStatus(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body, err := httpGet(url)
		if err == nil && code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q %v, want %d", url, code, body, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunMetricsHealthAndGracefulStop(t *testing.T) {
	log := testLogger(t)
	srv := startDevServer(t, workers.DevServerOptions{Port: freePort(t), Logger: log})

	// slow runs for a second after telling the test it started; the worker
	// must let it finish when stopped.
	started := make(chan struct{}, 1)
	var finished sync.WaitGroup
	finished.Add(1)
	slowDone := make(chan bool, 1)
	slow := func(ctx context.Context) error {
		started <- struct{}{}
		defer finished.Done()
		select {
		case <-time.After(time.Second):
			slowDone <- true
			return nil
		case <-ctx.Done():
			slowDone <- false
			return ctx.Err()
		}
	}
	slowWorkflow := func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		return workflow.ExecuteActivity(ctx, "slow").Get(ctx, nil)
	}
	registrar := func(r worker.Registry, role string) error {
		if err := echoRegistrar(r, role); err != nil {
			return err
		}
		r.RegisterActivityWithOptions(slow, activity.RegisterOptions{Name: "slow"})
		r.RegisterWorkflowWithOptions(slowWorkflow, workflow.RegisterOptions{Name: "slowWorkflow"})
		return nil
	}

	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	const stopTimeout = 10 * time.Second
	cfg := workers.Config{
		HostPort: srv.Address(), Namespace: srv.Namespace(), TaskQueue: "adaptq-run", Role: workers.RoleAll,
		MaxConcurrent: 2, MetricsAddr: metricsAddr, HealthAddr: healthAddr, StopTimeout: stopTimeout,
		Identity: "run-test", Logger: log,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- workers.Run(ctx, cfg, registrar) }()

	waitStatus(t, "http://"+healthAddr+"/healthz", http.StatusOK, 30*time.Second)
	waitStatus(t, "http://"+healthAddr+"/readyz", http.StatusOK, 30*time.Second)

	c, err := workers.Dial(context.Background(), workers.Config{HostPort: srv.Address(), Namespace: srv.Namespace(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runEcho(t, c, cfg.TaskQueue, "echo-run", temporal.SearchAttributes{})

	// The worker records a workflow's completion when it finishes the
	// workflow task, which can be just after the client sees the result:
	// poll the metrics for a few seconds.
	wanted := []string{
		"temporal_workflow_completed{",
		"temporal_activity_execution_latency_bucket{",
		"temporal_request{",
		`task_queue="adaptq-run"`,
		"adaptq_shards_done_total 1",
		"go_goroutines ",
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, b, err := httpGet("http://" + metricsAddr + "/metrics")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %v", code, err)
		}
		body = b
		missing := false
		for _, want := range wanted {
			missing = missing || !strings.Contains(body, want)
		}
		if !missing || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wanted {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}

	// Stop while an activity runs: Run waits for it, then returns nil
	// within the stop timeout.
	_, err = c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "slow-1", TaskQueue: cfg.TaskQueue}, "slowWorkflow")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("slow activity did not start")
	}
	stopAt := time.Now()
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(stopTimeout + 5*time.Second):
		t.Fatal("Run did not return within the stop timeout")
	}
	took := time.Since(stopAt)
	finished.Wait()
	if !<-slowDone {
		t.Error("the running activity was cancelled instead of finishing")
	}
	if took > stopTimeout {
		t.Errorf("Run took %v to stop, stop timeout %v", took, stopTimeout)
	}
	t.Logf("stopped in %v with an activity running", took)
	if _, _, err := httpGet("http://" + healthAddr + "/healthz"); err == nil {
		t.Error("health server still answers after Run returned")
	}
}

func TestDevServerPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = workers.StartDevServer(context.Background(), workers.DevServerOptions{Port: port})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("StartDevServer on a port in use: %v", err)
	}
}

func TestDevServerBadDBFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "not.sqlite")
	if err := os.WriteFile(db, []byte("this is not a database, just text long enough to have a header"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := workers.StartDevServer(context.Background(), workers.DevServerOptions{Port: freePort(t), DBFile: db})
	if err == nil || !strings.Contains(err.Error(), db) {
		t.Fatalf("StartDevServer on a broken database file: %v", err)
	}
	t.Log(err)
}

func TestRunRejectsBadConfig(t *testing.T) {
	err := workers.Run(context.Background(), workers.Config{Role: "train"}, echoRegistrar)
	if err == nil || !strings.Contains(err.Error(), "train") {
		t.Fatalf("Run with role train: %v", err)
	}
	_, err = workers.Dial(context.Background(), workers.Config{TLS: workers.TLSConfig{CertFile: "x.pem"}})
	if err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("Dial with a certificate and no key: %v", err)
	}
}

func TestWorkerOnTemporalCLIDevServer(t *testing.T) {
	if _, err := testenv.TemporalBinary(); err != nil {
		testenv.Missing(t, err.Error())
	}
	srv, err := testenv.StartTemporalDevServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	log := testLogger(t)
	cfg := workers.Config{HostPort: srv.Address, Namespace: srv.Namespace, TaskQueue: "adaptq-cli", StopTimeout: 5 * time.Second, Logger: log}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := workers.StartInProcess(c, cfg, echoRegistrar)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	phase := temporal.NewSearchAttributeKeyKeyword("AdaptqPhase")
	runEcho(t, c, cfg.TaskQueue, "echo-cli", temporal.NewSearchAttributes(phase.ValueSet("quantize")))
	out, err := srv.Command(ctx, "workflow", "describe", "--workflow-id", "echo-cli", "--namespace", srv.Namespace).CombinedOutput()
	if err != nil {
		t.Fatalf("temporal workflow describe: %v\n%s", err, out)
	}
	for _, want := range []string{"COMPLETED", "echo: hi", "AdaptqPhase"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("temporal workflow describe lacks %q:\n%s", want, out)
		}
	}
}

// TestDevServerWebUI: the embedded server serves the Web UI on the port
// asked for (its health route, its page and its HTTP API, which reaches
// the frontend); a UI port in use is an error naming it, and NoUI serves
// none.
func TestDevServerWebUI(t *testing.T) {
	uiPort := freePort(t)
	srv := startDevServer(t, workers.DevServerOptions{Port: -1, UIPort: uiPort, SearchAttributes: searchAttributes})
	want := "http://127.0.0.1:" + strconv.Itoa(uiPort)
	if srv.UIAddress() != want {
		t.Fatalf("UI address %q, want %q", srv.UIAddress(), want)
	}
	for path, body := range map[string]string{
		"/healthz":                      `"OK"`,
		"/namespaces/default/workflows": "<html",
		"/api/v1/namespaces/default":    `"name": "default"`,
	} {
		resp, err := http.Get(srv.UIAddress() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), body) {
			t.Errorf("GET %s: %s, body lacks %q: %.300s", path, resp.Status, body, b)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	_, err = workers.StartDevServer(context.Background(), workers.DevServerOptions{Port: -1, UIPort: busy})
	if err == nil || !strings.Contains(err.Error(), "web UI") || !strings.Contains(err.Error(), strconv.Itoa(busy)) {
		t.Fatalf("StartDevServer with the UI port in use: %v", err)
	}

	headless := startDevServer(t, workers.DevServerOptions{Port: -1, NoUI: true})
	if headless.UIAddress() != "" {
		t.Fatalf("NoUI server serves a UI at %s", headless.UIAddress())
	}
}
