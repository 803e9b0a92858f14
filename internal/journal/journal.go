// Package journal makes collabsync's log lines carry their syslog
// priority when standard error is systemd's journal (JOURNAL_STREAM names
// it): journald reads a leading "<N>" as the line's priority, so that
// `journalctl -p warning -u collabsync` shows warnings and errors only,
// the line (JSON, its fields intact) following the prefix.
package journal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
)

// IsJournal reports whether f is the stream JOURNAL_STREAM (device:inode,
// set by systemd for a service's output) names.
func IsJournal(f *os.File, journalStream string) bool {
	dev, ino, ok := strings.Cut(journalStream, ":")
	if !ok || f == nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprint(st.Dev) == dev && fmt.Sprint(st.Ino) == ino
}

// Priority is a level's syslog priority: error 3, warning 4, info 6,
// debug 7.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// Handler prefixes each record its inner handler writes with the record's
// priority. The inner handler must write each record in one Write to the
// Writer given to New's build (slog's text and JSON handlers do).
type Handler struct {
	inner slog.Handler
	out   *prefixed
}

// New returns a handler over w; build makes the inner handler for the
// writer it is given.
func New(w io.Writer, build func(io.Writer) slog.Handler) *Handler {
	out := &prefixed{w: w}
	return &Handler{inner: build(out), out: out}
}

var _ slog.Handler = (*Handler)(nil)

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prefix = Priority(r.Level)
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), out: h.out}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), out: h.out}
}

// prefixed writes each line with the priority of the record being handled.
type prefixed struct {
	mu     sync.Mutex
	w      io.Writer
	prefix int
}

func (p *prefixed) Write(b []byte) (int, error) {
	line := append(fmt.Appendf(nil, "<%d>", p.prefix), b...)
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}
