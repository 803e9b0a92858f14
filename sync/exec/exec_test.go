package exec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/sync/engine"
)

func TestSettings(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	good := filepath.Join(dir, "hook")
	os.WriteFile(good, []byte("#!/bin/sh\n"), 0o755)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(open, 0o757) // not through the umask
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{Program: good, StateFile: "/var/lib/x.json", Timeout: 1}, ""},
		{Settings{Program: "hook", StateFile: "/var/lib/x.json", Timeout: 1}, "program: must be an absolute path"},
		{Settings{Program: open, StateFile: "/var/lib/x.json", Timeout: 1}, "program: " + open + " is writable by group or others"},
		{Settings{Program: filepath.Join(dir, "missing"), StateFile: "/x", Timeout: 1}, "program: stat"},
		{Settings{Program: good, StateFile: "x.json", Timeout: 1}, "state_file: must be an absolute path"},
		{Settings{Program: good, StateFile: "/x"}, "timeout: must be positive"},
	} {
		var got []string
		for _, p := range tc.s.Validate() {
			got = append(got, p.Key+": "+p.Msg)
		}
		if s := strings.Join(got, "; "); tc.want == "" && s != "" || tc.want != "" && !strings.Contains(s, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.s, s, tc.want)
		}
	}
}

// TestTimeout: a program that does not exit is killed, the error says so,
// and the state file is not written.
func TestTimeout(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	prog := filepath.Join(dir, "hang")
	os.WriteFile(prog, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755)
	var calls []string
	tg := Kind().New("hook", &Settings{Program: prog, StateFile: filepath.Join(dir, "state.json"), Timeout: duration.Duration(200 * time.Millisecond)},
		engine.Env{Call: func(r string) { calls = append(calls, r) }})
	start := time.Now()
	err := tg.Apply(context.Background(), &engine.Plan{Changes: []engine.Change{{Op: engine.OpAdd, Kind: KindUser, Key: "a", New: `{"uid":"a"}`}}})
	if err == nil || !strings.Contains(err.Error(), "no exit within 200ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		t.Error("state written after a failure")
	}
	if strings.Join(calls, ",") != "timeout" {
		t.Errorf("calls %v", calls)
	}
}
