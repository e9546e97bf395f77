package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/ohms-project/adaptq/workers"
)

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("worker", "--temporal host:port [--namespace ns] [--task-queue q] [--role quantize|eval|all] [flags]", stderr)
	var cfg workers.Config
	fs.StringVar(&cfg.HostPort, "temporal", "127.0.0.1:7233", "Temporal frontend host:port")
	fs.StringVar(&cfg.Namespace, "namespace", "default", "Temporal namespace")
	fs.StringVar(&cfg.TaskQueue, "task-queue", workers.DefaultTaskQueue, "base task queue: role quantize polls it, role eval polls <queue>-eval, role all both")
	fs.StringVar(&cfg.Role, "role", workers.RoleAll, "what this worker runs: quantize, eval or all")
	fs.IntVar(&cfg.MaxConcurrent, "max-concurrent", 0, "activities run at once (0: the SDK's default)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics here, e.g. :9090 (empty: off)")
	fs.StringVar(&cfg.HealthAddr, "health-addr", "", "serve /healthz and /readyz here, e.g. :8080 (empty: off)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 60*time.Second, "on SIGTERM, how long to wait for running activities")
	fs.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "client private key (PEM) for mutual TLS")
	fs.StringVar(&cfg.TLS.CAFile, "tls-ca", "", "CA bundle (PEM) that verifies the server")
	fs.StringVar(&cfg.TLS.ServerName, "tls-server-name", "", "server name expected in the server's certificate")
	fs.StringVar(&cfg.Identity, "identity", "", "worker identity shown in Temporal (empty: pid@host)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	switch cfg.Role {
	case workers.RoleQuantize, workers.RoleEval, workers.RoleAll:
	default:
		return fmt.Errorf("%w: --role %q: want quantize, eval or all", errUsage, cfg.Role)
	}
	cfg.Logger = jsonLogger(stderr)
	return workers.Run(ctx, cfg, registrar())
}

// jsonLogger logs JSON lines with timestamps at info level and above to w.
func jsonLogger(w io.Writer) zerolog.Logger {
	return zerolog.New(w).With().Timestamp().Logger().Level(zerolog.InfoLevel)
}
