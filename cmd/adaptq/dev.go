package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/ohms-project/adaptq/workers"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", "[--port 7233] [--ui-port 8233 | --headless] [--db file.sqlite] [--task-queue adaptq] [--max-concurrent N]", stderr)
	port := fs.Int("port", 0, "frontend gRPC port (0: 7233 if free, else any free port)")
	uiPort := fs.Int("ui-port", 0, "Web UI HTTP port (0: 8233 if free, else any free port)")
	headless := fs.Bool("headless", false, "do not serve the Web UI")
	ip := fs.String("ip", "127.0.0.1", "address the server binds to")
	db := fs.String("db", "", "SQLite database file, kept across runs (empty: in memory)")
	taskQueue := fs.String("task-queue", workers.DefaultTaskQueue, "task queue of the in-process worker")
	maxConc := fs.Int("max-concurrent", 0, "activities run at once (0: the SDK's default)")
	stopTimeout := fs.Duration("stop-timeout", 30*time.Second, "on Ctrl-C, how long to wait for running activities")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	if *db != "" {
		if *db, err = filepath.Abs(*db); err != nil {
			return fmt.Errorf("database file: %w", err)
		}
	}
	log := jsonLogger(stderr)

	srv, err := workers.StartDevServer(ctx, workers.DevServerOptions{
		Port: *port, UIPort: *uiPort, NoUI: *headless, IP: *ip, DBFile: *db, SearchAttributes: searchAttributes(), Logger: log,
	})
	if err != nil {
		return err
	}
	cfg := workers.Config{
		HostPort: srv.Address(), Namespace: srv.Namespace(), TaskQueue: *taskQueue, Role: workers.RoleAll,
		MaxConcurrent: *maxConc, StopTimeout: *stopTimeout, Logger: log,
	}
	c, err := workers.Dial(ctx, cfg)
	if err != nil {
		return errors.Join(err, srv.Stop())
	}
	w, err := workers.StartInProcess(c, cfg, registrar())
	if err != nil {
		c.Close()
		return errors.Join(err, srv.Stop())
	}

	ui := "not served (--headless)"
	if srv.UIAddress() != "" {
		ui = srv.UIAddress() + "/namespaces/" + srv.Namespace() + "/workflows"
	}
	storage := "in memory (lost on exit)"
	if *db != "" {
		storage = *db
	}
	fmt.Fprintf(stdout, `Temporal dev server on %[1]s, namespace %[2]s, storage %[3]s
worker polling task queue %[4]s (all roles)

attach the Temporal CLI:
  temporal workflow list --address %[1]s --namespace %[2]s
  temporal operator search-attribute list --address %[1]s --namespace %[2]s
Web UI: %[6]s
Ctrl-C stops the worker (running activities get %[5]v) and the server.
`, srv.Address(), srv.Namespace(), storage, *taskQueue, *stopTimeout, ui)

	<-ctx.Done()
	fmt.Fprintln(stderr, "adaptq dev: stopping")
	w.Stop()
	c.Close()
	return srv.Stop()
}
