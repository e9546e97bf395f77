package workers

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are adaptq's own worker metrics, next to the SDK's on /metrics.
// A nil *Metrics is valid and records nothing, so activities may call it
// unconditionally.
type Metrics struct {
	shards       prometheus.Counter
	shardSeconds prometheus.Histogram
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
}

// NewMetrics creates adaptq's metrics and registers them on reg. On a
// registry that already holds them it returns metrics that share the
// registered series, so calling it twice with one registry is harmless.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		shards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adaptq_shards_done_total",
			Help: "Shards this worker finished.",
		}),
		shardSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "adaptq_shard_seconds",
			Help:    "Wall-clock seconds per finished shard.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 16),
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adaptq_shard_bytes_in_total",
			Help: "Bytes of checkpoint tensors read by finished shards.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adaptq_shard_bytes_out_total",
			Help: "Bytes of quantized output written by finished shards.",
		}),
	}
	m.shards = register(reg, m.shards)
	m.shardSeconds = register(reg, m.shardSeconds)
	m.bytesIn = register(reg, m.bytesIn)
	m.bytesOut = register(reg, m.bytesOut)
	return m
}

// register registers c on reg and returns it, or the equal collector reg
// already holds. Any other failure is a programming error (the descriptors
// are constants) and panics, as prometheus.MustRegister does.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("register adaptq metrics: %v", err))
}

// ShardDone records one finished shard: its wall-clock seconds and the bytes
// it read and wrote.
func (m *Metrics) ShardDone(seconds float64, bytesIn, bytesOut int64) {
	if m == nil {
		return
	}
	m.shards.Inc()
	m.shardSeconds.Observe(seconds)
	if bytesIn > 0 {
		m.bytesIn.Add(float64(bytesIn))
	}
	if bytesOut > 0 {
		m.bytesOut.Add(float64(bytesOut))
	}
}

// metricsKey is the context key of the worker's *Metrics.
type metricsKey struct{}

// WithMetrics returns ctx carrying m.
func WithMetrics(ctx context.Context, m *Metrics) context.Context {
	return context.WithValue(ctx, metricsKey{}, m)
}

// MetricsFromContext returns the *Metrics of the worker running the activity
// whose context is ctx (the worker puts them in every activity's context),
// or nil, which records nothing.
func MetricsFromContext(ctx context.Context) *Metrics {
	m, _ := ctx.Value(metricsKey{}).(*Metrics)
	return m
}
