package workers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
)

// Worker roles: which workflows and activities a worker registers.
const (
	RoleQuantize = "quantize"
	RoleEval     = "eval"
	RoleAll      = "all"
)

// DefaultTaskQueue is the task queue adaptq's workflows and workers use
// unless told otherwise.
const DefaultTaskQueue = "adaptq"

// EvalQueueSuffix names the evaluation role's task queue: the base queue
// plus this suffix (package workflows schedules evaluation activities
// there). Each role polls only the queue of work it registered, so no
// worker receives a task it cannot run.
const EvalQueueSuffix = "-eval"

// queues returns the task queues and roles a worker of role polls.
func queues(base, role string) [][2]string {
	switch role {
	case RoleQuantize:
		return [][2]string{{base, RoleQuantize}}
	case RoleEval:
		return [][2]string{{base + EvalQueueSuffix, RoleEval}}
	}
	return [][2]string{{base, RoleQuantize}, {base + EvalQueueSuffix, RoleEval}}
}

// TLSConfig names the PEM files of a mutual-TLS connection to Temporal.
// All empty means plaintext.
type TLSConfig struct {
	CertFile   string // client certificate; with KeyFile
	KeyFile    string // client private key; with CertFile
	CAFile     string // CA bundle that verifies the server; "" = the system's
	ServerName string // name expected in the server's certificate; "" = the host of HostPort
}

func (t TLSConfig) enabled() bool {
	return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" || t.ServerName != ""
}

// Config configures Dial, Run and StartInProcess.
type Config struct {
	HostPort  string // Temporal frontend host:port; "" = 127.0.0.1:7233
	Namespace string // "" = "default"
	TaskQueue string // "" = DefaultTaskQueue
	Role      string // RoleQuantize, RoleEval or RoleAll; "" = RoleAll

	// MaxConcurrent bounds the activities this worker runs at once; 0 keeps
	// the SDK's default.
	MaxConcurrent int
	// MetricsAddr serves Prometheus /metrics (Run only); "" disables it.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz (Run only); "" disables it.
	// It may equal MetricsAddr.
	HealthAddr string
	// StopTimeout is how long a stopping worker waits for running
	// activities; 0 does not wait.
	StopTimeout time.Duration
	// TLS enables mutual TLS when any file is named.
	TLS TLSConfig
	// Identity names the worker in Temporal; "" = the SDK's pid@host.
	Identity string
	// Logger receives the SDK's and the worker's logs; the zero value
	// discards them.
	Logger zerolog.Logger

	// Registry receives the SDK's metrics (Dial) and, in Run, is what
	// /metrics serves. nil: Dial records no SDK metrics, Run makes a new
	// registry with the Go and process collectors. Dial once per registry.
	Registry *prometheus.Registry
	// Metrics are adaptq's own metrics, put into every activity's context
	// (see MetricsFromContext). nil: Run creates them on its registry,
	// StartInProcess leaves activities a nil *Metrics, which records nothing.
	Metrics *Metrics
}

// Registrar registers the workflows and activities of role on r. It must
// accept RoleQuantize, RoleEval and RoleAll.
type Registrar func(r worker.Registry, role string) error

// withDefaults fills the empty fields and checks the rest.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.HostPort == "" {
		cfg.HostPort = "127.0.0.1:7233"
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.TaskQueue == "" {
		cfg.TaskQueue = DefaultTaskQueue
	}
	if cfg.Role == "" {
		cfg.Role = RoleAll
	}
	switch cfg.Role {
	case RoleQuantize, RoleEval, RoleAll:
	default:
		return cfg, fmt.Errorf("worker role %q: want %s, %s or %s", cfg.Role, RoleQuantize, RoleEval, RoleAll)
	}
	if cfg.MaxConcurrent < 0 {
		return cfg, fmt.Errorf("max concurrent activities %d: want 0 (SDK default) or more", cfg.MaxConcurrent)
	}
	if cfg.StopTimeout < 0 {
		return cfg, fmt.Errorf("stop timeout %v: want 0 or more", cfg.StopTimeout)
	}
	return cfg, nil
}

// Dial connects to Temporal at cfg.HostPort in cfg.Namespace: mutual TLS
// when cfg.TLS names files, the SDK's metrics on cfg.Registry, its logs on
// cfg.Logger. The caller closes the client.
func Dial(ctx context.Context, cfg Config) (client.Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := client.Options{
		HostPort:  cfg.HostPort,
		Namespace: cfg.Namespace,
		Identity:  cfg.Identity,
		Logger:    NewSDKLogger(cfg.Logger.With().Str("component", "temporal-sdk").Logger()),
	}
	if cfg.TLS.enabled() {
		tc, err := cfg.TLS.load(cfg.HostPort)
		if err != nil {
			return nil, err
		}
		opts.ConnectionOptions.TLS = tc
	}
	if cfg.Registry != nil {
		h, err := NewPrometheusHandler(cfg.Registry)
		if err != nil {
			return nil, err
		}
		opts.MetricsHandler = h
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (namespace %s): %w", cfg.HostPort, cfg.Namespace, err)
	}
	return c, nil
}

// load reads the PEM files into a TLS client configuration.
func (t TLSConfig) load(hostPort string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(hostPort); err == nil {
			tc.ServerName = host
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("TLS: a client certificate needs both the certificate and the key file")
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Workers are the Temporal workers of one process: one per task queue its
// role polls (see EvalQueueSuffix).
type Workers []worker.Worker

// Start starts every worker; on error the started ones are stopped.
func (ws Workers) Start() error {
	for i, w := range ws {
		if err := w.Start(); err != nil {
			ws[:i].Stop()
			return err
		}
	}
	return nil
}

// Stop stops every worker, each waiting up to the stop timeout for its
// running activities.
func (ws Workers) Stop() {
	for _, w := range ws {
		w.Stop()
	}
}

// newWorkers creates (without starting) the workers of cfg on c, one per
// task queue of cfg.Role, with reg's registrations for that queue's role.
func newWorkers(c client.Client, cfg Config, reg Registrar, onFatal func(error)) (Workers, error) {
	if reg == nil {
		return nil, errors.New("worker: no registrar")
	}
	var ws Workers
	for _, q := range queues(cfg.TaskQueue, cfg.Role) {
		w := worker.New(c, q[0], worker.Options{
			MaxConcurrentActivityExecutionSize: cfg.MaxConcurrent,
			WorkerStopTimeout:                  cfg.StopTimeout,
			Identity:                           cfg.Identity,
			BackgroundActivityContext:          WithMetrics(context.Background(), cfg.Metrics),
			OnFatalError:                       onFatal,
		})
		if err := reg(w, q[1]); err != nil {
			return nil, fmt.Errorf("worker: register role %s: %w", q[1], err)
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// StartInProcess starts a worker of cfg on an existing client, for the
// embedded one-machine default: no HTTP servers, cfg.HostPort, TLS and
// Registry unused. The caller stops the worker (Stop waits up to
// cfg.StopTimeout for running activities) and then closes the client.
func StartInProcess(c client.Client, cfg Config, reg Registrar) (Workers, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w, err := newWorkers(c, cfg, reg, nil)
	if err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("worker: start on task queue %s: %w", cfg.TaskQueue, err)
	}
	return w, nil
}

// Run is a worker process. It connects to Temporal, registers reg's
// workflows and activities of cfg.Role, serves /metrics on cfg.MetricsAddr
// and /healthz and /readyz on cfg.HealthAddr, and polls cfg.TaskQueue until
// ctx is cancelled. Then it stops polling, waits up to cfg.StopTimeout for
// running activities, and returns nil. It returns early with an error when
// the worker or an HTTP server fails.
func Run(ctx context.Context, cfg Config, reg Registrar) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	log := cfg.Logger
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(cfg.Registry)
	}

	c, err := Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	fatal := make(chan error, 1)
	w, err := newWorkers(c, cfg, reg, func(err error) {
		select {
		case fatal <- err:
		default:
		}
	})
	if err != nil {
		return err
	}

	var ready atomic.Bool
	servers, serveErr, err := startHTTP(cfg, c, &ready)
	if err != nil {
		return err
	}
	defer shutdownHTTP(servers, log)

	if err := w.Start(); err != nil {
		return fmt.Errorf("worker: start on task queue %s: %w", cfg.TaskQueue, err)
	}
	ready.Store(true)
	log.Info().Str("temporal", cfg.HostPort).Str("namespace", cfg.Namespace).
		Str("task_queue", cfg.TaskQueue).Str("role", cfg.Role).
		Int("max_concurrent", cfg.MaxConcurrent).Str("metrics_addr", cfg.MetricsAddr).
		Str("health_addr", cfg.HealthAddr).Msg("worker started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Dur("stop_timeout", cfg.StopTimeout).Msg("stopping: no new tasks, waiting for running activities")
	case err := <-fatal:
		runErr = fmt.Errorf("worker: fatal: %w", err)
	case err := <-serveErr:
		runErr = err
	}
	ready.Store(false)
	start := time.Now()
	w.Stop()
	log.Info().Dur("took", time.Since(start)).Msg("worker stopped")
	return runErr
}

// startHTTP listens on the metrics and health addresses (one server when
// they are equal) and serves them in the background; serving errors arrive
// on the returned channel.
func startHTTP(cfg Config, c client.Client, ready *atomic.Bool) ([]*http.Server, <-chan error, error) {
	muxes := make(map[string]*http.ServeMux)
	mux := func(addr string) *http.ServeMux {
		if muxes[addr] == nil {
			muxes[addr] = http.NewServeMux()
		}
		return muxes[addr]
	}
	if cfg.MetricsAddr != "" {
		mux(cfg.MetricsAddr).Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	}
	if cfg.HealthAddr != "" {
		m := mux(cfg.HealthAddr)
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		m.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if !ready.Load() {
				http.Error(w, "worker not started", http.StatusServiceUnavailable)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
				http.Error(w, "temporal: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
	}
	errc := make(chan error, len(muxes))
	var servers []*http.Server
	for addr, m := range muxes {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			shutdownHTTP(servers, cfg.Logger)
			return nil, nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve HTTP on %s: %w", addr, err)
			}
		}()
	}
	return servers, errc, nil
}

// shutdownHTTP stops the servers, giving open requests a few seconds.
func shutdownHTTP(servers []*http.Server, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			log.Warn().Err(err).Msg("HTTP server shutdown")
		}
	}
}
