package child

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

func TestRun(t *testing.T) {
	ctx := context.Background()
	pidFile := filepath.Join(t.TempDir(), "pid")
	for _, c := range []struct {
		name    string
		cmd     Command
		within  time.Duration
		exit    int
		err     error // nil, ErrTimeout, or an *exec.ExitError (errExit)
		outcome string
		output  string
		dropped int64
	}{
		{name: "a grandchild holds the pipe past the timeout",
			cmd:    Command{Path: "/bin/sh", Args: []string{"-c", "echo $$ > " + pidFile + "; sleep 100 & sleep 200"}, Timeout: time.Second},
			within: 3 * time.Second, exit: -1, err: ErrTimeout, outcome: "timeout"},
		{name: "it answered, a grandchild holds the pipe",
			cmd:    Command{Path: "/bin/sh", Args: []string{"-c", "echo $$ > " + pidFile + "; sleep 30 & echo answered"}, Timeout: 10 * time.Second},
			within: 3 * time.Second, exit: 0, outcome: "exit 0", output: "answered\n"},
		{name: "exit status",
			cmd:    Command{Path: "/bin/sh", Args: []string{"-c", "echo $$ > " + pidFile + "; echo no >&2; exit 3"}, Timeout: 10 * time.Second},
			within: 2 * time.Second, exit: 3, err: errExit, outcome: "exit 3", output: "no\n"},
		{name: "output beyond the cap is counted and dropped",
			cmd:    Command{Path: "/bin/sh", Args: []string{"-c", "echo $$ > " + pidFile + "; head -c 5000000 /dev/zero"}, Timeout: 10 * time.Second, OutputCap: 1000},
			within: 5 * time.Second, exit: 0, outcome: "exit 0", output: strings.Repeat("\x00", 1000), dropped: 5000000 - 1000},
		{name: "a clean environment",
			cmd:    Command{Path: "/usr/bin/env", Env: []string{"ONLY=this"}, Timeout: 10 * time.Second},
			within: 2 * time.Second, exit: 0, outcome: "exit 0", output: "ONLY=this\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(pidFile)
			start := time.Now()
			res, err := Run(ctx, c.cmd)
			took := time.Since(start)
			if took > c.within {
				t.Errorf("took %v, want within %v", took, c.within)
			}
			var exit *exec.ExitError
			switch {
			case c.err == errExit && !errors.As(err, &exit), c.err != errExit && !errors.Is(err, c.err), c.err == nil && err != nil:
				t.Errorf("error %v, want %v", err, c.err)
			}
			if res.Exit != c.exit || res.Outcome() != c.outcome || string(res.Output) != c.output || res.Dropped != c.dropped {
				t.Errorf("result exit %d, outcome %q, output %q (dropped %d)", res.Exit, res.Outcome(), res.Output, res.Dropped)
			}
			if data, err := os.ReadFile(pidFile); err == nil {
				var pid int
				for _, ch := range strings.TrimSpace(string(data)) {
					pid = pid*10 + int(ch-'0')
				}
				time.Sleep(50 * time.Millisecond)
				if testharness.GroupAlive(pid) {
					t.Errorf("processes of the group are left")
				}
			}
		})
	}
}

// errExit stands for an *exec.ExitError in the table.
var errExit = errors.New("exit error")

// TestRunFile: the file opened and checked is what runs, whatever its
// path names by then (a swapped file, a replaced link).
func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "hook")
	os.WriteFile(prog, []byte("#!/bin/sh\necho checked\n"), 0o755)
	f, err := os.Open(prog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	os.Remove(prog)
	os.WriteFile(prog, []byte("#!/bin/sh\necho swapped\n"), 0o755)
	res, err := Run(context.Background(), Command{Path: prog, File: f, Timeout: 5 * time.Second})
	if err != nil || !bytes.Equal(res.Output, []byte("checked\n")) {
		t.Errorf("ran %q, %v", res.Output, err)
	}
}

// TestPrintable: a program's output cannot move an operator's cursor or
// retitle their terminal: control characters and invalid UTF-8 are
// escaped, text and newlines kept.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\nnext line\tö": "plain text\nnext line\tö",
		"\x1b[2J\x1b]0;owned\x07":  `\x1b[2J\x1b]0;owned\a`,
		"bad \xff byte":            `bad \xff byte`,
		"carriage\rreturn":         `carriage\rreturn`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}
