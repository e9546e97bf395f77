package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ohms-project/adaptq/store"
)

// LogFile is where quantize writes the SDK's, the worker's and the
// embedded server's log lines under a local output.
const LogFile = "logs/adaptq.log"

// runLog is where a run's log lines go.
type runLog struct {
	logger zerolog.Logger
	path   string // the log file, or "" when the lines go to stderr
	close  func() error
}

// openRunLog sends log lines to stderr with -v (text) or --log-format json
// (JSON lines), and otherwise to a file: <out>/logs/adaptq.log for a
// local output, <temp dir>/adaptq-<workflow id>.log for any other. The
// file is created at the first line and appended to, so reruns into one
// output keep every run's lines.
func openRunLog(stderr io.Writer, verbose bool, format, out, id string) *runLog {
	switch {
	case format == "json":
		return &runLog{logger: jsonLogger(stderr), close: func() error { return nil }}
	case verbose:
		l := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true}).Level(zerolog.InfoLevel).With().Timestamp().Logger()
		return &runLog{logger: l, close: func() error { return nil }}
	}
	path := filepath.Join(os.TempDir(), "adaptq-"+safeName(id)+".log")
	if s, err := store.Open(out); err == nil {
		if l, ok := s.(*store.Local); ok {
			path = filepath.Join(l.Root(), filepath.FromSlash(LogFile))
		}
	}
	f := &lazyFile{path: path}
	l := zerolog.New(zerolog.ConsoleWriter{Out: f, NoColor: true, TimeFormat: time.RFC3339}).
		Level(zerolog.InfoLevel).With().Timestamp().Logger()
	return &runLog{logger: l, path: path, close: f.Close}
}

// lazyFile is a log file created (with its folder) at the first line
// written to it, so that a run stopped before anything was logged leaves
// no file behind. A file that cannot be created drops the lines.
type lazyFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
	err  error
}

func (l *lazyFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil && l.err == nil {
		if l.err = os.MkdirAll(filepath.Dir(l.path), 0o755); l.err == nil {
			l.f, l.err = os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		}
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.f.Write(p)
}

// Close closes the file if it was created.
func (l *lazyFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// safeName keeps the letters, digits, '-', '_' and '.' of s, so that a
// workflow id makes a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
