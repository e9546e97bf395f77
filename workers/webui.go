package workers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// DefaultUIPort is the Web UI port the development server prefers, the
// Temporal CLI's, so that a bookmark keeps working.
const DefaultUIPort = 8233

// webUI is the Temporal Web UI served in-process against a frontend.
type webUI struct {
	server *uiserver.Server
	url    string
	done   chan error
}

// startWebUI serves the Temporal Web UI on ip:port (port chosen like the
// frontend's: 0 prefers DefaultUIPort, negative takes any free port) for
// the frontend at frontend, opening on namespace, and returns once it
// answers its health check. The UI talks to nothing but the frontend:
// news and release checks are off (this machine may have no network).
func startWebUI(ctx context.Context, ip string, port int, frontend, namespace string) (*webUI, error) {
	port, err := choosePort(ip, port, DefaultUIPort)
	if err != nil {
		return nil, fmt.Errorf("web UI: %w", err)
	}
	cfg := &uiconfig.Config{
		Host:                ip,
		Port:                port,
		TemporalGRPCAddress: frontend,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		DisableNewsFetch:    true,
		NotifyOnNewVersion:  false,
		// Plain HTTP on loopback: the CSRF cookie must not require TLS.
		CORS:         uiconfig.CORS{CookieInsecure: true},
		HideLogs:     true,
		Distribution: "adaptq",
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("web UI: config: %w", err)
	}
	u := &webUI{
		server: uiserver.NewServer(uioptions.WithConfigProvider(cfg)),
		url:    "http://" + net.JoinHostPort(ip, strconv.Itoa(port)),
		done:   make(chan error, 1),
	}
	// Start blocks until Stop. It ends the process if it cannot listen,
	// which choosePort has just made unlikely.
	go func() { u.done <- u.server.Start() }()
	if err := u.ready(ctx); err != nil {
		u.stop()
		return nil, err
	}
	return u, nil
}

// ready waits until the UI's health route answers.
func (u *webUI) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url+"/healthz", nil)
		if err != nil {
			return fmt.Errorf("web UI: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health check: %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("web UI on %s not ready: %w", u.url, err)
		case err := <-u.done:
			return fmt.Errorf("web UI on %s stopped on start: %v", u.url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop closes the UI's listener and its open connections.
func (u *webUI) stop() { u.server.Stop() }

// choosePort resolves a port option: a positive port must be free; 0
// takes preferred when it is free, else any free port; a negative port
// takes any free port.
func choosePort(ip string, port, preferred int) (int, error) {
	switch {
	case port > 0:
		if !portFree(ip, port) {
			return 0, fmt.Errorf("port %d of %s is in use", port, ip)
		}
		return port, nil
	case port == 0 && portFree(ip, preferred):
		return preferred, nil
	}
	p, err := freePort(ip)
	if err != nil {
		return 0, fmt.Errorf("find a free port of %s: %w", ip, err)
	}
	return p, nil
}
