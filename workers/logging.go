package workers

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"
	sdklog "go.temporal.io/sdk/log"
	serverlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// serverLogger adapts zerolog to the Temporal server's logger, dropping
// lines below a floor level (the embedded server is chatty at info, and
// warns about every closed connection while it stops). Loggers made by With
// share the floor.
type serverLogger struct {
	log   zerolog.Logger
	floor *atomic.Int32
}

var (
	_ serverlog.Logger     = serverLogger{}
	_ serverlog.WithLogger = serverLogger{}
)

func newServerLogger(l zerolog.Logger, floor zerolog.Level) serverLogger {
	s := serverLogger{log: l.With().Str("component", "temporal-server").Logger(), floor: new(atomic.Int32)}
	s.setFloor(floor)
	return s
}

// setFloor drops lines below level from now on.
func (s serverLogger) setFloor(level zerolog.Level) { s.floor.Store(int32(level)) }

func (s serverLogger) emit(level zerolog.Level, msg string, tags []tag.Tag) {
	if int32(level) < s.floor.Load() {
		return
	}
	e := s.log.WithLevel(level)
	if e == nil {
		return
	}
	for _, t := range tags {
		e = e.Interface(t.Key(), t.Value())
	}
	e.Msg(msg)
}

// Debug logs at debug level.
func (s serverLogger) Debug(msg string, tags ...tag.Tag) { s.emit(zerolog.DebugLevel, msg, tags) }

// Info logs at info level.
func (s serverLogger) Info(msg string, tags ...tag.Tag) { s.emit(zerolog.InfoLevel, msg, tags) }

// Warn logs at warn level.
func (s serverLogger) Warn(msg string, tags ...tag.Tag) { s.emit(zerolog.WarnLevel, msg, tags) }

// Error logs at error level.
func (s serverLogger) Error(msg string, tags ...tag.Tag) { s.emit(zerolog.ErrorLevel, msg, tags) }

// DPanic logs at error level; the embedded server never panics on a log call.
func (s serverLogger) DPanic(msg string, tags ...tag.Tag) { s.emit(zerolog.ErrorLevel, msg, tags) }

// Panic logs at panic level and panics.
func (s serverLogger) Panic(msg string, tags ...tag.Tag) {
	s.emit(zerolog.PanicLevel, msg, tags)
	panic(serverFatal{msg: msg, tags: tags})
}

// Fatal logs at fatal level and panics instead of exiting: the server code
// does not continue after a fatal line, and StartDevServer turns a fatal
// during start (a port in use, a broken database) into an error.
func (s serverLogger) Fatal(msg string, tags ...tag.Tag) {
	s.emit(zerolog.FatalLevel, msg, tags)
	panic(serverFatal{msg: msg, tags: tags})
}

// serverFatal is the panic value of the server logger's Fatal and Panic.
type serverFatal struct {
	msg  string
	tags []tag.Tag
}

func (f serverFatal) Error() string {
	var b strings.Builder
	b.WriteString(f.msg)
	for _, t := range f.tags {
		fmt.Fprintf(&b, " %s=%v", t.Key(), t.Value())
	}
	return b.String()
}

// With returns a logger that adds tags to every line.
func (s serverLogger) With(tags ...tag.Tag) serverlog.Logger {
	c := s.log.With()
	for _, t := range tags {
		c = c.Interface(t.Key(), t.Value())
	}
	return serverLogger{log: c.Logger(), floor: s.floor}
}

// SDKLogger adapts a zerolog.Logger to the Temporal SDK's log.Logger
// (keyvals are alternating keys and values).
type SDKLogger struct {
	log zerolog.Logger
}

var (
	_ sdklog.Logger     = SDKLogger{}
	_ sdklog.WithLogger = SDKLogger{}
)

// NewSDKLogger returns l as a Temporal SDK logger.
func NewSDKLogger(l zerolog.Logger) SDKLogger { return SDKLogger{log: l} }

func (s SDKLogger) emit(e *zerolog.Event, msg string, keyvals []any) {
	if e == nil {
		return
	}
	addKeyvals(e, keyvals).Msg(msg)
}

// addKeyvals adds alternating key/value pairs to e; a value without a key,
// or a key that is not a string, is kept under a generated key.
func addKeyvals(e *zerolog.Event, keyvals []any) *zerolog.Event {
	for i := 0; i < len(keyvals); i += 2 {
		key, ok := keyvals[i].(string)
		if !ok {
			key = fmt.Sprint(keyvals[i])
		}
		if i+1 == len(keyvals) {
			e = e.Interface("extra", keyvals[i])
			break
		}
		if err, isErr := keyvals[i+1].(error); isErr {
			e = e.AnErr(key, err)
			continue
		}
		e = e.Interface(key, keyvals[i+1])
	}
	return e
}

// Debug logs at debug level.
func (s SDKLogger) Debug(msg string, keyvals ...any) { s.emit(s.log.Debug(), msg, keyvals) }

// Info logs at info level.
func (s SDKLogger) Info(msg string, keyvals ...any) { s.emit(s.log.Info(), msg, keyvals) }

// Warn logs at warn level.
func (s SDKLogger) Warn(msg string, keyvals ...any) { s.emit(s.log.Warn(), msg, keyvals) }

// Error logs at error level.
func (s SDKLogger) Error(msg string, keyvals ...any) { s.emit(s.log.Error(), msg, keyvals) }

// With returns a logger that adds keyvals to every line.
func (s SDKLogger) With(keyvals ...any) sdklog.Logger {
	c := s.log.With()
	for i := 0; i+1 < len(keyvals); i += 2 {
		key, ok := keyvals[i].(string)
		if !ok {
			key = fmt.Sprint(keyvals[i])
		}
		c = c.Interface(key, keyvals[i+1])
	}
	return SDKLogger{log: c.Logger()}
}
