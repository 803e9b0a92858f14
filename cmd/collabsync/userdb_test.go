package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
