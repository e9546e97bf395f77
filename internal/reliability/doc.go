// Package reliability holds adaptq's end-to-end fault tests: a Temporal CLI
// dev server, MinIO and adaptq worker processes on 127.0.0.1, driven by the
// temporal CLI and the SDK client, with workers killed, MinIO restarted,
// runs cancelled and broken checkpoints fed in. It has no code of its own
// beyond the test helpers; docs/RELIABILITY.md records what the tests found.
package reliability
