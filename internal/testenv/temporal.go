package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// TemporalCLI is a `temporal server start-dev` process started for tests.
type TemporalCLI struct {
	Address   string // frontend gRPC host:port
	Namespace string // registered at start ("default")
	Bin       string // the temporal binary, for running client commands
	cmd       *exec.Cmd
	dir       string
	done      chan error
}

// temporalSearchAttributes are the search attributes StartTemporalDevServer
// registers, as the Temporal CLI spells them (name=type).
var temporalSearchAttributes = []string{"AdaptqModel=Keyword", "AdaptqRecipe=Keyword", "AdaptqPhase=Keyword"}

// TemporalBinary finds the Temporal CLI: $ADAPTQ_TEMPORAL_BIN or
// .tools/bin/temporal.
func TemporalBinary() (string, error) {
	if p := os.Getenv("ADAPTQ_TEMPORAL_BIN"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("Temporal CLI not found at %s", p)
	}
	return p, nil
}

// StartTemporalDevServer starts `temporal server start-dev` headless on a
// free loopback port with a temporary SQLite file and the search attributes
// AdaptqModel, AdaptqRecipe and AdaptqPhase (Keyword), and waits until the
// namespace answers. Call Stop when done.
func StartTemporalDevServer() (*TemporalCLI, error) {
	bin, err := TemporalBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "adaptq-temporal-*")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &TemporalCLI{
		Address:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Namespace: "default",
		Bin:       bin,
		dir:       dir,
		done:      make(chan error, 1),
	}
	args := []string{"server", "start-dev", "--headless",
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--metrics-port", strconv.Itoa(metricsPort),
		"--db-filename", filepath.Join(dir, "temporal.sqlite"),
		"--log-level", "warn"}
	for _, sa := range temporalSearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the Temporal dev server: %w", err)
	}
	s.cmd = cmd
	go func() { s.done <- cmd.Wait() }()

	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			log, _ := os.ReadFile(filepath.Join(dir, "temporal.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("the Temporal dev server exited (%v): %s", err, log)
		default:
		}
		if s.answers() {
			return s, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "temporal.log"))
	s.Stop()
	return nil, fmt.Errorf("the Temporal dev server did not answer on %s: %s", s.Address, log)
}

// answers reports whether the server describes its namespace.
func (s *TemporalCLI) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.Command(ctx, "operator", "namespace", "describe", "--namespace", s.Namespace).Output()
	return err == nil
}

// Command returns a `temporal` client command aimed at the server (its
// --address is appended to args).
func (s *TemporalCLI) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, s.Bin, append(args, "--address", s.Address)...)
}

// Stop kills the server and removes its files.
func (s *TemporalCLI) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}
