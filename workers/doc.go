// Package workers runs adaptq's Temporal side: worker processes and the
// embedded development server.
//
// Run is a worker process for a fleet: it dials Temporal (optionally with
// mutual TLS), registers the workflows and activities of a role through a
// Registrar, serves Prometheus /metrics (the SDK's metrics through
// PrometheusHandler and adaptq's own Metrics) and /healthz and /readyz, and
// on cancellation stops polling and waits up to a timeout for running
// activities. Activities reach the worker's Metrics with MetricsFromContext.
//
// StartDevServer runs a whole Temporal server (frontend, history, matching
// and worker services) inside the process on SQLite, in memory or in a
// file, with a namespace and custom search attributes registered; together
// with StartInProcess it is the one-machine default that needs nothing
// installed. The Temporal CLI attaches to it with
// `temporal --address <Address()> ...`; the Temporal Web UI
// (github.com/temporalio/ui-server) is served in the same process on
// UIAddress(), http://127.0.0.1:8233 when that port is free.
package workers
