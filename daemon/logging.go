package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strings"
	"sync"
)

// LogHandler writes records the way saslauthd does: to syslog (ident
// saslauthd, facility auth, every message as "%-16s: %s" with an empty
// function name, so "                : auth failure: [user=...] ..."), and,
// in the foreground, to stderr as "saslauthd[<pid>] :<message>". fail2ban's
// saslauthd filter parses the syslog form, so the text of the
// saslauthd-compatible lines lives in the record's message; attributes are
// appended as " key=value" for saslgate's own lines.
type LogHandler struct {
	sink   *logSink // shared by the handlers WithAttrs derives
	level  slog.Leveler
	prefix string // pre-formatted attributes from WithAttrs
	group  string
}

type logSink struct {
	mu        sync.Mutex
	sys       *syslog.Writer // nil: no syslog
	sysErr    error          // why there is no syslog
	stderr    io.Writer      // nil: not in the foreground
	stderrMin slog.Level     // lines below it do not go to stderr
	pid       int
}

// NewLogHandler returns a handler. ident is the syslog ident ("saslauthd");
// a syslog that cannot be reached is reported once on stderr and skipped.
func NewLogHandler(ident string, useSyslog bool, stderr io.Writer, level slog.Leveler) *LogHandler {
	h := &LogHandler{sink: &logSink{stderr: stderr, stderrMin: slog.LevelDebug, pid: os.Getpid()}, level: level}
	if useSyslog {
		w, err := syslog.New(syslog.LOG_AUTH|syslog.LOG_INFO, ident)
		if err == nil {
			h.sink.sys = w
		} else {
			h.sink.sysErr = err
		}
	}
	return h
}

// SyslogErr says why syslog could not be reached (nil if it was), for the
// daemon to log once it knows where its lines go.
func (h *LogHandler) SyslogErr() error {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	return h.sink.sysErr
}

// SetStderrLevel sends only lines at min or above to stderr: a daemon that
// is about to detach prints its errors on the terminal and nothing else, as
// saslauthd does.
func (h *LogHandler) SetStderrLevel(min slog.Level) {
	h.sink.mu.Lock()
	h.sink.stderrMin = min
	h.sink.mu.Unlock()
}

// SetStderr switches stderr logging on or off (off once the daemon has
// detached and stderr points at /dev/null).
func (h *LogHandler) SetStderr(w io.Writer) {
	h.sink.mu.Lock()
	h.sink.stderr = w
	h.sink.pid = os.Getpid()
	h.sink.mu.Unlock()
}

func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	msg := b.String()
	k := h.sink
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sys != nil {
		line := fmt.Sprintf("%-16s: %s", "", msg)
		switch {
		case r.Level >= slog.LevelError:
			_ = k.sys.Err(line)
		case r.Level >= slog.LevelWarn:
			_ = k.sys.Warning(line)
		case r.Level >= slog.LevelInfo:
			_ = k.sys.Info(line)
		default:
			_ = k.sys.Debug(line)
		}
	}
	if k.stderr != nil && r.Level >= k.stderrMin {
		fmt.Fprintf(k.stderr, "saslauthd[%d] :%s\n", k.pid, msg)
	}
	return nil
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := a.Key
		if group != "" {
			g = group + "." + g
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	b.WriteByte(' ')
	if group != "" {
		b.WriteString(group)
		b.WriteByte('.')
	}
	b.WriteString(a.Key)
	b.WriteByte('=')
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = fmt.Sprintf("%q", v)
	}
	b.WriteString(v)
}

func (h *LogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		appendAttr(&b, h.group, a)
	}
	h2.prefix = b.String()
	return &h2
}

func (h *LogHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	if h2.group != "" {
		name = h2.group + "." + name
	}
	h2.group = name
	return &h2
}

// Close closes the syslog connection.
func (h *LogHandler) Close() error {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	if h.sink.sys != nil {
		return h.sink.sys.Close()
	}
	return nil
}

var _ slog.Handler = (*LogHandler)(nil)
