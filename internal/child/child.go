// Package child is the one way collabsync runs a program a target hands
// its work to (a site's exec program, the aliases command, sacctmgr):
// without a shell, in the environment it is given and no other, in a
// process group of its own that is killed as a whole at the timeout and
// when the program ends, without waiting on a descendant that keeps its
// output open, and with its output kept up to a cap.
package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultOutputCap is how much output is kept when a command says nothing.
const DefaultOutputCap = 64 << 10

// waitDelay is how long the end of a program waits for its output to
// close: a descendant that keeps it open is killed with the group then.
const waitDelay = time.Second

// Command is a program to run.
type Command struct {
	// Path is the program; File, when set, is that program opened and
	// checked by the caller: exactly that file is executed (through
	// /proc/self/fd), whatever Path names by then.
	Path string
	File *os.File
	Args []string
	// Env is the whole environment; Dir the working directory ("/" when
	// empty).
	Env   []string
	Dir   string
	Stdin []byte
	// Timeout bounds the run (required).
	Timeout time.Duration
	// Stdout, when set, receives standard output as it comes, uncapped
	// (a listing to parse); standard error is still captured. Otherwise
	// both are captured together.
	Stdout io.Writer
	// OutputCap is how many bytes of captured output are kept
	// (DefaultOutputCap when 0); the rest is counted and dropped.
	OutputCap int
}

// Result is what a run did.
type Result struct {
	Output   []byte // the captured output, up to the cap
	Dropped  int64  // captured bytes beyond the cap
	Exit     int    // the exit status; -1 when killed or not started
	TimedOut bool
}

// Outcome names the result as the targets' call metrics do: "exit N",
// "timeout", or "error" (the program could not be started).
func (r Result) Outcome() string {
	switch {
	case r.TimedOut:
		return "timeout"
	case r.Exit < 0:
		return "error"
	}
	return "exit " + strconv.Itoa(r.Exit)
}

// Tail is the end of the output for an error message, with a note of
// what the cap dropped. Control characters are escaped: a program's
// output reaches logs and an operator's terminal, where an escape
// sequence must not act.
func (r Result) Tail(n int) string {
	s := string(bytes.TrimSpace(r.Output))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	s = Printable(s)
	if r.Dropped > 0 {
		s += fmt.Sprintf(" (output cut: %d bytes beyond the first %d dropped)", r.Dropped, len(r.Output))
	}
	return s
}

// Printable escapes what is not printable text in s (control characters
// but newline and tab, invalid UTF-8) as Go's %q would.
func Printable(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[0])
		case r == '\n' || r == '\t' || unicode.IsPrint(r):
			b.WriteString(s[:size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		s = s[size:]
	}
	return b.String()
}

// ErrTimeout: the program did not end within its timeout and was killed
// with its process group.
var ErrTimeout = errors.New("killed with its process group at the timeout")

// Run runs c and waits for it, at most its timeout. A program that exits
// non-zero is an *exec.ExitError; one still running at the timeout is
// killed with everything it started and reported as ErrTimeout. Output
// a descendant keeps open after the program exits is not waited for.
func Run(ctx context.Context, c Command) (Result, error) {
	res := Result{Exit: -1}
	if c.Timeout <= 0 {
		return res, errors.New("child: no timeout")
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	path := c.Path
	if c.File != nil {
		path = "/proc/self/fd/3" // ExtraFiles[0], in the child
	}
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Args[0] = c.Path
	if c.File != nil {
		cmd.ExtraFiles = []*os.File{c.File}
	}
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdin = bytes.NewReader(c.Stdin)
	limit := c.OutputCap
	if limit <= 0 {
		limit = DefaultOutputCap
	}
	out := &capped{limit: limit}
	cmd.Stdout, cmd.Stderr = out, out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	err := cmd.Start()
	if err != nil {
		return res, err
	}
	err = cmd.Wait()
	// Whatever it left behind goes with it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	res.Output, res.Dropped = out.bytes()
	if ps := cmd.ProcessState; ps != nil && ps.Exited() {
		res.Exit = ps.ExitCode()
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded && res.Exit < 0:
		res.TimedOut = true
		return res, ErrTimeout
	case ctx.Err() != nil && res.Exit < 0:
		return res, fmt.Errorf("killed with its process group: %w", ctx.Err())
	case errors.Is(err, exec.ErrWaitDelay) && res.Exit == 0:
		// It answered and exited; a descendant held its output open.
		return res, nil
	}
	return res, err
}

// capped keeps the first limit bytes written to it.
type capped struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	dropped int64
}

func (w *capped) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.limit - len(w.buf)
	if room >= len(p) {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	w.buf = append(w.buf, p[:max(room, 0)]...)
	w.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

func (w *capped) bytes() ([]byte, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf, w.dropped
}

// Trusted checks a program as OpenTrusted does, for check-config.
func Trusted(program string) error {
	f, err := OpenTrusted(program)
	if err == nil {
		f.Close()
	}
	return err
}

// OpenTrusted resolves the program's path once, checks the file and every
// directory above it, and returns the file opened: what runs is exactly
// the file checked, never what a path names a moment later (a symlink
// swapped, a directory renamed). Each must be owned by root or this
// process's user and writable by nobody else.
func OpenTrusted(program string) (*os.File, error) {
	resolved, err := filepath.EvalSymlinks(program)
	if err != nil {
		return nil, err
	}
	for dir := filepath.Dir(resolved); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, err
		}
		if err := owned(dir+" (a directory above "+program+")", fi); err != nil {
			return nil, err
		}
		if dir == "/" {
			break
		}
	}
	f, err := os.OpenFile(resolved, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", resolved)
	}
	if err == nil {
		name := program
		if resolved != program {
			name = fmt.Sprintf("%s (%s)", resolved, program)
		}
		err = owned(name, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Private reports whether only root or this process's user can change a
// file or directory (a sticky directory of root's counts: see owned).
func Private(fi os.FileInfo) bool { return owned("", fi) == nil }

// owned refuses a file or directory that someone other than root or
// this process's user could change.
func owned(name string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot read its owner", name)
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, neither root nor collabsync: refused", name, st.Uid)
	}
	// A sticky directory of root's (/tmp) lets nobody rename or remove
	// what another user owns in it: the entry below is checked in turn.
	sticky := fi.IsDir() && fi.Mode()&os.ModeSticky != 0 && st.Uid == 0
	if fi.Mode().Perm()&0o022 != 0 && !sticky {
		return fmt.Errorf("%s is writable by group or others (mode %v): refused", name, fi.Mode().Perm())
	}
	return nil
}
