package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
