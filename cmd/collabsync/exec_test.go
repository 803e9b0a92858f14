package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestExecTarget: the demo centre with an exec target running the
// example hook configs/hooks/homes: sync creates a home for every active
// user, owned by the user's numbers; a sync without changes does not run
// it; a user added in LDAP gets a home at the next sync, sent alone; a
// failing program fails the target (the error names it), nss still
// applies, and the next run sends the same change again; a program
// writable by others is refused by check-config and by sync.
func TestExecTarget(t *testing.T) {
	testharness.Require(t, "python3")
	e := newDemoEnv(t, "")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	hook, err := os.ReadFile("../../configs/hooks/homes")
	if err != nil {
		t.Fatal(err)
	}
	program := filepath.Join(bin, "homes")
	os.WriteFile(program, hook, 0o755)
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "home"), 0o755)
	log := filepath.Join(dir, "runs")
	// A wrapper that logs each document, then runs the hook (or fails).
	wrapper := filepath.Join(bin, "wrapper")
	fail := filepath.Join(dir, "fail")
	os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\n[ -e %s ] && { echo 'disk full' >&2; exit 4; }\ntee -a %s | %s --root %s\necho >> %s\n",
		fail, log, program, root, log)), 0o755)
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "\naccounting:\n", fmt.Sprintf("\n  - {name: homes, kind: exec, program: %s, state_file: %s}\naccounting:\n",
		wrapper, filepath.Join(dir, "state", "homes.json")), 1)
	writeFile(t, e.config, doc)
	runs := func() []string {
		data, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	owner := func(uid string) (int, bool) {
		fi, err := os.Stat(filepath.Join(root, "home", uid))
		if err != nil {
			return 0, false
		}
		return int(fi.Sys().(*syscall.Stat_t).Uid), true
	}

	e.sync(t)
	for uid, number := range map[string]int{"alice": 10001, "bob": 10002} {
		if got, ok := owner(uid); !ok || got != number {
			t.Errorf("home of %s: owner %d (exists %v), want %d", uid, got, ok, number)
		}
	}
	if _, ok := owner("mallory"); ok {
		t.Error("a home for mallory, who is not active")
	}
	if r := runs(); len(r) != 1 || !strings.Contains(r[0], `"schema":"collabsync.exec/v1"`) || !strings.Contains(r[0], `"target":"homes"`) {
		t.Fatalf("documents sent: %q", r)
	}
	e.sync(t)
	if r := runs(); len(r) != 1 {
		t.Errorf("a sync without changes ran the program: %d documents", len(r))
	}

	// trent joins atlas: only he is sent.
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	os.WriteFile(fail, nil, 0o600)
	r := collabsync(t, e.config, "sync", "--once")
	if r.code != 1 || !strings.Contains(r.stderr, wrapper) || !strings.Contains(r.stderr, "exit status 4") || !strings.Contains(r.stderr, "disk full") {
		t.Errorf("a failing program: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(e.getent(t, "getent group atlas"), "trent") {
		t.Error("nss did not apply while the program failed")
	}
	os.Remove(fail)
	e.sync(t)
	rs := runs()
	if len(rs) != 2 || !strings.Contains(rs[1], `"key":"atlas trent"`) || strings.Contains(rs[1], `"key":"alice"`) {
		t.Errorf("the document after the failure: %q", rs[len(rs)-1])
	}
	if _, ok := owner("trent"); !ok {
		t.Error("no home for trent")
	}

	// Writable by others: refused.
	os.Chmod(bin, 0o777)
	if r := collabsync(t, e.config, "check-config"); r.code != 2 || !strings.Contains(r.stderr, bin+" (a directory above "+wrapper+") is writable by group or others") {
		t.Errorf("check-config with a world-writable program directory: %d\n%s", r.code, r.stderr)
	}
}

// TestServeHungTargetDelaysOnlyItself: an exec program that never ends,
// whose grandchild holds its output pipe, with a timeout of ten minutes:
// under serve, 20 membership changes still reach the nss files at the
// usual latency, /status names the hook as the target not reconciled,
// and serve stops on SIGTERM within 10 s, leaving no process of the
// program behind.
func TestServeHungTargetDelaysOnlyItself(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	bin := filepath.Join(t.TempDir(), "bin")
	os.Mkdir(bin, 0o755)
	program := filepath.Join(bin, "hangs")
	// Durations of its own, to tell this test's processes from any other's.
	child, grandchild := fmt.Sprintf("4242.%06d", time.Now().Nanosecond()/1000), fmt.Sprintf("4243.%06d", time.Now().Nanosecond()/1000)
	os.WriteFile(program, []byte("#!/bin/sh\ncat >/dev/null\nsleep "+grandchild+" &\nexec sleep "+child+"\n"), 0o755)
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "\naccounting:\n", fmt.Sprintf("\n  - {name: hook, kind: exec, program: %s, timeout: 10m, state_file: %s}\naccounting:\n",
		program, filepath.Join(bin, "hook.json")), 1)
	writeFile(t, e.config, doc)
	d := startServe(t, e.config)
	eventually(t, 20*time.Second, "nss reconciled", func() bool {
		_, body := d.get("/status")
		return strings.Contains(body, `"nss":{"last_run":`) && strings.Contains(body, `"result":"success"`)
	})
	eventually(t, 5*time.Second, "the hook's program running", func() bool { return programAlive("sleep " + child) })
	var worst time.Duration
	for i := range 20 {
		op, want := "add", true
		if i%2 == 1 {
			op, want = "delete", false
		}
		start := time.Now()
		e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\n"+op+": memberUid\nmemberUid: trent\n")
		eventually(t, 5*time.Second, fmt.Sprintf("change %d (%s trent) in getent", i+1, op),
			func() bool { return e.inGroup(t, "lsst", "trent") == want })
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst latency of 20 changes with the hook hung: %v", worst)
	st := d.status(t)
	if st.Ready || st.Targets["hook"] != nil && !st.Targets["hook"].LastSuccess.IsZero() {
		t.Errorf("status with the hook hung: ready %v, hook %+v", st.Ready, st.Targets["hook"])
	}
	if _, why := d.get("/readyz"); !strings.Contains(why, "not reconciled since start: hook") {
		t.Errorf("/readyz: %q", why)
	}
	d.stop(t)
	if programAlive("sleep "+child) || programAlive("sleep "+grandchild) {
		t.Error("the hook's processes outlived serve")
	}
}

// programAlive reports whether a process runs with this command line.
func programAlive(cmdline string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ") == cmdline {
			return true
		}
	}
	return false
}
