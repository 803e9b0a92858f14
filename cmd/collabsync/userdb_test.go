package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestUserDBProvider: serve answers systemd's io.systemd.UserDatabase on
// /run/systemd/userdb/io.collabsync.Directory inside a private mount
// namespace (a tmpfs over /run/systemd, the namespace's own nsswitch.conf
// with "passwd: files systemd"). The real getent and id, through glibc's
// nss-systemd and no collabsync file at all, see the demo's active users,
// their collaborations and members, not a pending user; a membership
// added in LDAP is seen within seconds.
func TestUserDBProvider(t *testing.T) {
	e, d, _, inNS := userdbServe(t)
	if got := inNS("getent", "passwd", "alice"); got != "alice:x:10001:20001:Alice Martin:/home/alice:/bin/bash\n" {
		t.Errorf("getent passwd alice = %q", got)
	}
	if got := inNS("getent", "passwd", "10002"); !strings.HasPrefix(got, "bob:x:10002:") {
		t.Errorf("getent passwd 10002 = %q", got)
	}
	if got := inNS("getent", "passwd", "mallory"); got != "" {
		t.Errorf("mallory (not active) = %q", got)
	}
	atlas := inNS("getent", "group", "atlas")
	if !strings.HasPrefix(atlas, "atlas:x:21001:") || !strings.Contains(atlas, "alice") || !strings.Contains(atlas, "carol") {
		t.Errorf("getent group atlas = %q", atlas)
	}
	if got := inNS("id", "-Gn", "alice"); !strings.Contains(got, "atlas") || !strings.Contains(got, "lpnhe") {
		t.Errorf("id -Gn alice = %q", got)
	}
	if got := inNS("getent", "passwd"); !strings.Contains(got, "\nalice:") && !strings.HasPrefix(got, "alice:") {
		t.Errorf("enumeration lacks alice:\n%s", got)
	}
	if got := inNS("userdbctl", "user", "alice"); !strings.Contains(got, "User name: alice") || !strings.Contains(got, "io.collabsync.Directory") {
		t.Errorf("userdbctl user alice:\n%s", got)
	}

	start := time.Now()
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent in atlas through nss-systemd", func() bool {
		return strings.Contains(inNS("getent", "group", "atlas"), "trent")
	})
	took := time.Since(start)
	t.Logf("a membership added in LDAP seen by getent (nss-systemd) in %v", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a membership change took %v to reach getent, more than 1 s", took)
	}
	if got := inNS("id", "-Gn", "trent"); !strings.Contains(got, "atlas") {
		t.Errorf("id -Gn trent = %q", got)
	}
	d.stop(t)
	if got := inNS("getent", "passwd", "alice"); got != "" {
		t.Errorf("alice still served after serve stopped: %q", got)
	}
}

// userdbServe starts serve with serve.userdb in a private mount namespace
// whose nsswitch.conf asks systemd, and returns a runner of commands in it.
func userdbServe(t *testing.T) (*syncEnv, *daemonProc, *mountNS, func(args ...string) string) {
	t.Helper()
	testharness.Require(t, "getent", "id")
	if _, err := os.Stat("/lib/x86_64-linux-gnu/libnss_systemd.so.2"); err != nil {
		testharness.Missing(t, "libnss-systemd: %v", err)
	}
	testharness.Require(t, "userdbctl")
	ns := newMountNS(t)
	ns.run(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/run/systemd")
	ns.run(t, "mkdir", "/run/systemd/userdb")
	// Debian's default nsswitch.conf asks systemd after the files; a
	// machine whose file does not gets that default in the namespace.
	if conf, _ := os.ReadFile("/etc/nsswitch.conf"); !regexp.MustCompile(`(?m)^passwd:.*\bsystemd\b`).Match(conf) ||
		!regexp.MustCompile(`(?m)^group:.*\bsystemd\b`).Match(conf) {
		nsswitch := writeFile(t, filepath.Join(t.TempDir(), "nsswitch.conf"), "passwd: files systemd\ngroup: files systemd\nshadow: files\n")
		ns.run(t, "mount", "--bind", nsswitch, "/etc/nsswitch.conf")
	}

	e := newDemoEnv(t, serveConfig(freeListen(t), "  userdb: io.collabsync.Directory\n"))
	d := startServeIn(t, e.config, ns.wrap())
	d.waitReady(t)
	inNS := func(args ...string) string {
		t.Helper()
		argv := append(ns.wrap(), args...)
		out, _ := exec.Command(argv[0], argv[1:]...).Output()
		return string(out)
	}
	return e, d, ns, inNS
}

// TestUserDBProviderSurvivesHostileClients: 20,000 connections from an
// unprivileged uid that ask for every user and never read: a fresh
// client's getent still answers through the provider, serve's memory stays
// under twice its resting size, the socket stays, and /status and the
// metrics tell how many were refused. Before, such connections grew serve
// to 389 MB and then ended the provider (too many open files), removing
// its socket, with /readyz still ready.
func TestUserDBProviderSurvivesHostileClients(t *testing.T) {
	testharness.Require(t, "setpriv", "/usr/bin/python3")
	_, d, ns, inNS := userdbServe(t)
	rss := func() int {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				return n
			}
		}
		return 0
	}
	resting := rss()
	const attack = `
import socket, sys, time
req = b'{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"service":"io.collabsync.Directory"},"more":true}\0'
held = []
for i in range(10000):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("/run/systemd/userdb/io.collabsync.Directory")
        s.send(req)
    except OSError:
        pass
    held.append(s)
print("held", len(held), flush=True)
time.sleep(120)
`
	// Two processes of 10,000 connections each (a process may hold 20,000
	// files here, and cannot be given more).
	for range 2 {
		argv := append(ns.wrap(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", attack)
		attacker := exec.Command(argv[0], argv[1:]...)
		out, _ := attacker.StdoutPipe()
		attacker.Stderr = os.Stderr
		if err := attacker.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { attacker.Process.Kill(); attacker.Wait() }()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "held 10000\n" {
			t.Fatalf("the attacker: %q %v", line, err)
		}
	}
	if got := inNS("getent", "passwd", "alice"); got != "alice:x:10001:20001:Alice Martin:/home/alice:/bin/bash\n" {
		t.Errorf("getent passwd alice during the attack = %q", got)
	}
	if now := rss(); now > 2*resting {
		t.Errorf("serve's RSS %d kB during the attack, resting %d kB", now, resting)
	}
	st := d.status(t)
	if u := st.ChangeStream.UserDB; u == nil || !u.Serving || u.Refused < 20000-100 {
		t.Errorf("/status userdb: %+v", u)
	}
	if v := d.metric("collabsync_userdb_serving"); v != "1" {
		t.Errorf("collabsync_userdb_serving %q", v)
	}
	if code, body := d.get("/readyz"); code != 200 {
		t.Errorf("/readyz during the attack: %d %s", code, body)
	}
	t.Logf("serve's RSS: resting %d kB, during 20,000 hostile connections %d kB; refused %d", resting, rss(), st.ChangeStream.UserDB.Refused)
	d.stop(t)
}
