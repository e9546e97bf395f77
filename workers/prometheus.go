package workers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// timerBuckets are the histogram buckets, in seconds, of the SDK's timers.
var timerBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// PrometheusHandler is the Temporal SDK's client.MetricsHandler on a
// Prometheus registry: counters are counters, gauges gauges, timers
// histograms in seconds, and tags are labels. A metric name may be used with
// different tag sets; each set is its own series.
type PrometheusHandler struct {
	store *promStore
	tags  map[string]string
}

var _ client.MetricsHandler = (*PrometheusHandler)(nil)

// NewPrometheusHandler registers a collector of the SDK's metrics on reg and
// returns the handler that feeds it.
func NewPrometheusHandler(reg prometheus.Registerer) (*PrometheusHandler, error) {
	s := &promStore{series: make(map[string]prometheus.Collector), kinds: make(map[string]string)}
	if err := reg.Register(s); err != nil {
		return nil, fmt.Errorf("register the Temporal SDK metrics collector: %w", err)
	}
	return &PrometheusHandler{store: s}, nil
}

// WithTags returns a handler whose metrics carry tags in addition to (and
// overriding) the handler's own.
func (h *PrometheusHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	maps.Copy(merged, h.tags)
	maps.Copy(merged, tags)
	return &PrometheusHandler{store: h.store, tags: merged}
}

// Counter returns the counter name with the handler's tags.
func (h *PrometheusHandler) Counter(name string) client.MetricsCounter {
	c := h.store.get("counter", name, h.tags).(prometheus.Counter)
	return counterFunc(func(d int64) {
		if d > 0 {
			c.Add(float64(d))
		}
	})
}

// Gauge returns the gauge name with the handler's tags.
func (h *PrometheusHandler) Gauge(name string) client.MetricsGauge {
	return gaugeFunc(h.store.get("gauge", name, h.tags).(prometheus.Gauge).Set)
}

// Timer returns the timer name with the handler's tags, a histogram of
// seconds.
func (h *PrometheusHandler) Timer(name string) client.MetricsTimer {
	o := h.store.get("timer", name, h.tags).(prometheus.Histogram)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// promStore holds every series the SDK asked for. It is an unchecked
// Prometheus collector (Describe sends nothing) because the SDK uses one
// name with several tag sets.
type promStore struct {
	mu     sync.Mutex
	series map[string]prometheus.Collector // by kind, name and sorted labels
	kinds  map[string]string               // metric name → kind
}

// Describe sends nothing: the series are not known in advance.
func (s *promStore) Describe(chan<- *prometheus.Desc) {}

// Collect sends every series.
func (s *promStore) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	all := slices.Collect(maps.Values(s.series))
	s.mu.Unlock()
	for _, c := range all {
		c.Collect(ch)
	}
}

// get returns the series of kind, name and tags, creating it on first use.
func (s *promStore) get(kind, name string, tags map[string]string) prometheus.Collector {
	name = promName(name)
	labels := make(prometheus.Labels, len(tags))
	for k, v := range tags {
		labels[promName(k)] = v
	}
	var key strings.Builder
	key.WriteString(kind)
	key.WriteByte(0)
	key.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		key.WriteByte(0)
		key.WriteString(k)
		key.WriteByte('=')
		key.WriteString(labels[k])
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.series[key.String()]; ok {
		return c
	}
	// One family has one type: a name already used by another kind gets
	// the kind as a suffix.
	family := name
	if k, ok := s.kinds[name]; ok && k != kind {
		family = name + "_" + kind
	} else {
		s.kinds[name] = kind
	}
	help := "Temporal SDK " + kind + " " + name
	var c prometheus.Collector
	switch kind {
	case "counter":
		c = prometheus.NewCounter(prometheus.CounterOpts{Name: family, Help: help, ConstLabels: labels})
	case "gauge":
		c = prometheus.NewGauge(prometheus.GaugeOpts{Name: family, Help: help, ConstLabels: labels})
	default:
		c = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: family, Help: help + " (seconds)", ConstLabels: labels, Buckets: timerBuckets,
		})
	}
	s.series[key.String()] = c
	return c
}

// promName replaces the characters Prometheus does not allow in metric and
// label names with underscores.
func promName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}
