package main

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"go.temporal.io/sdk/client"

	"github.com/ohms-project/adaptq/workers"
)

// startEmbedded starts the embedded Temporal server (with adaptq's search
// attributes) and an in-process worker of both roles, stopped at the end of
// the test, and returns a client.
func startEmbedded(t *testing.T, ctx context.Context) client.Client {
	t.Helper()
	_, c := startEmbeddedServer(t, ctx)
	return c
}

// startEmbeddedServer is startEmbedded that also returns the server (its
// addresses, the Web UI's among them).
func startEmbeddedServer(t *testing.T, ctx context.Context) (*workers.DevServer, client.Client) {
	t.Helper()
	dev, err := workers.StartDevServer(ctx, workers.DevServerOptions{Port: -1, SearchAttributes: searchAttributes(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Stop() })
	cfg := workers.Config{HostPort: dev.Address(), Logger: zerolog.Nop()}
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	w, err := workers.StartInProcess(c, cfg, registrar())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return dev, c
}
