package journal

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestPriorities: every line carries its level's priority, derived
// loggers (With) too, and the JSON after it is whole.
func TestPriorities(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(&buf, func(w io.Writer) slog.Handler {
		return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	}))
	log.Debug("d")
	log.Info("i", "k", "v")
	log.With("target", "nss").Warn("w")
	log.WithGroup("g").Error("e")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for i, want := range []string{`<7>{"time":`, `<6>{"time":`, `<4>{"time":`, `<3>{"time":`} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d: %q, want prefix %q", i, lines, want)
		}
	}
	if !strings.Contains(lines[2], `"target":"nss"`) {
		t.Errorf("fields lost: %s", lines[2])
	}
}

// TestIsJournal: the stream JOURNAL_STREAM names is recognised by its
// device and inode, another is not.
func TestIsJournal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var st syscall.Stat_t
	syscall.Fstat(int(w.Fd()), &st)
	if !IsJournal(w, fmt.Sprintf("%d:%d", st.Dev, st.Ino)) {
		t.Error("the named stream is not recognised")
	}
	if IsJournal(os.Stdin, fmt.Sprintf("%d:%d", st.Dev, st.Ino)) || IsJournal(w, "") || IsJournal(w, "garbage") {
		t.Error("another stream is taken for the journal")
	}
}
