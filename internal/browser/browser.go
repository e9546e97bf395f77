// Package browser drives Debian's headless Chromium for the tests that look
// at a page as a person would (the Temporal Web UI, report.html): it finds
// the browser, starts it with a new empty profile and the flags this
// closed network needs, and keeps screenshots as test artifacts under the
// git-ignored artifacts/ folder of the repository. Outside CI a missing
// Chromium skips the test; with CI=true it fails it (scripts/tools.sh
// chromium installs it).
package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ohms-project/adaptq/internal/testenv"
)

// DefaultPath is where Debian's chromium package puts the browser.
const DefaultPath = "/usr/bin/chromium"

// Path returns the Chromium to use: $ADAPTQ_CHROMIUM or DefaultPath.
func Path() (string, error) {
	p := os.Getenv("ADAPTQ_CHROMIUM")
	if p == "" {
		p = DefaultPath
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("chromium not found at %s", p)
	}
	return p, nil
}

// Flags are the command-line flags Chromium runs with besides its new
// profile directory: headless, no sandbox (tests run as root), and none of
// the background connections a closed network refuses.
var Flags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"disable-background-networking", "disable-component-update", "disable-sync",
	"disable-dev-shm-usage", "no-default-browser-check",
}

// New starts a headless Chromium for the test (skipped, or failed under
// CI=true, when the browser is missing) with a new empty --user-data-dir
// and returns a chromedp context of one tab, bounded by timeout. The
// browser is closed when the test ends.
func New(tb testing.TB, timeout time.Duration) context.Context {
	tb.Helper()
	path, err := Path()
	if err != nil {
		testenv.Missing(tb, err.Error())
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	for _, f := range Flags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		tb.Logf("chromium: "+format, args...)
	}))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	tb.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	// Start the browser now, so that a browser that cannot start fails here.
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// Artifact returns the path of a file the test keeps for people to look
// at, artifacts/<test name>/<name> in the repository (git-ignored),
// creating its folder.
func Artifact(tb testing.TB, name string) string {
	tb.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(root, "artifacts", strings.ReplaceAll(tb.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// Screenshot saves a PNG of the whole page as the artifact name and logs
// its path.
func Screenshot(tb testing.TB, ctx context.Context, name string) string {
	tb.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.Fatalf("screenshot %s: %v", name, err)
	}
	path := Artifact(tb, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("screenshot: %s", path)
	return path
}
