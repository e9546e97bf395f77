// Package workers will hold adaptq's worker processes (task queues, tuning,
// metrics, health, graceful stop) and the embedded development server that
// runs the pipeline on one machine with nothing configured.
package workers
