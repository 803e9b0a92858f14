package exec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/child"
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
	open0777 := filepath.Join(dir, "shared")
	os.Mkdir(open0777, 0o777)
	os.Chmod(open0777, 0o777)
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{Program: good, StateFile: "/var/lib/x.json", Timeout: 1}, ""},
		{Settings{Program: "hook", StateFile: "/var/lib/x.json", Timeout: 1}, "program: must be an absolute path"},
		{Settings{Program: open, StateFile: "/var/lib/x.json", Timeout: 1}, "program: " + open + " is writable by group or others"},
		{Settings{Program: filepath.Join(dir, "missing"), StateFile: "/x", Timeout: 1}, "program: lstat"},
		{Settings{Program: good, StateFile: "x.json", Timeout: 1}, "state_file: must be an absolute path"},
		{Settings{Program: good, StateFile: filepath.Join(open0777, "state.json"), Timeout: 1}, "state_file: " + open0777 + " is writable by group or others"},
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

// TestTrustFollowsLinks: a program that is a symlink is checked where it
// leads, every directory above the file included, and the file checked is
// the one run. Before, a link to a root-owned file in a world-writable
// directory passed (only the link's own directory was looked at), and the
// path was run again by name: swapping the target ran anyone's code.
func TestTrustFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o777) // anyone may rename or replace what is in it
	target := filepath.Join(open, "hook")
	os.WriteFile(target, []byte("#!/bin/sh\n"), 0o755)
	link := filepath.Join(dir, "hook")
	os.Symlink(target, link)
	probs := (&Settings{Program: link, StateFile: "/x", Timeout: 1}).Validate()
	if len(probs) != 1 || !strings.Contains(probs[0].Msg, open+" (a directory above "+link+") is writable by group or others") {
		t.Errorf("a link into a world-writable directory: %+v", probs)
	}

	// The file run is the file checked, whatever the link names next.
	safe := filepath.Join(dir, "safe")
	os.Mkdir(safe, 0o755)
	good := filepath.Join(safe, "hook")
	out := filepath.Join(dir, "ran")
	os.WriteFile(good, []byte("#!/bin/sh\necho checked > "+out+"\n"), 0o755)
	os.Remove(link)
	os.Symlink(good, link)
	f, err := child.OpenTrusted(link)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evil := filepath.Join(safe, "evil")
	os.WriteFile(evil, []byte("#!/bin/sh\necho swapped > "+out+"\n"), 0o755)
	os.Rename(evil, good) // what the path names now
	tg := &Target{name: "hook", s: Settings{Program: link, Timeout: duration.Duration(5 * time.Second)}, call: func(string) {}}
	if err := tg.run(context.Background(), f, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "checked\n" {
		t.Errorf("ran %q, want the file checked", got)
	}
}

// TestGrandchildHoldsThePipe: a program that leaves a process holding
// its output open is killed with it at the timeout, and the apply returns
// then, not when the grandchild ends (before: after the grandchild's 30 s).
func TestGrandchildHoldsThePipe(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	prog := filepath.Join(dir, "hang")
	os.WriteFile(prog, []byte("#!/bin/sh\nsleep 30 &\nsleep 60\n"), 0o755)
	tg := Kind().New("hook", &Settings{Program: prog, StateFile: filepath.Join(dir, "state.json"), Timeout: duration.Duration(500 * time.Millisecond)},
		engine.Env{Call: func(string) {}})
	start := time.Now()
	err := tg.Apply(context.Background(), &engine.Plan{Changes: []engine.Change{{Op: engine.OpAdd, Kind: KindUser, Key: "a", New: `{"uid":"a"}`}}})
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "killed with its process group") || took > 3*time.Second {
		t.Fatalf("err = %v after %v", err, took)
	}
}
