package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestSystemdUnit checks the shipped unit with systemd's own tools, without
// booting systemd: `systemd-analyze verify` accepts it and `systemd-analyze
// security --offline` rates its exposure at most 2.0.
func TestSystemdUnit(t *testing.T) {
	testharness.Require(t, "systemd-analyze")
	unit, err := os.ReadFile("../../systemd/collabsync.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "LoadCredential=",
		"StateDirectory=collabsync", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// verify wants the ExecStart binary to exist: point it at the one built.
	path := filepath.Join(t.TempDir(), "collabsync.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/collabsync", binary)), 0o644)

	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "collabsync.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for collabsync.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("exposure %.1f > 2.0:\n%s", level, out)
	}
	t.Logf("exposure level %s", m[1])
}

// TestJournalPriorities: when standard error is the journal
// (JOURNAL_STREAM names it, as systemd sets it for a service) every log
// line starts with its syslog priority, so that journalctl -p warning
// shows warnings and errors only; elsewhere lines are as before. Before,
// JSON lines without a priority all counted as info.
func TestJournalPriorities(t *testing.T) {
	cfg := writeFile(t, filepath.Join(t.TempDir(), "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: ["ldap://127.0.0.1:1", "ldap://127.0.0.1:2"]
  users: {base_dn: "ou=people,dc=example,dc=org"}
  collaborations: {base_dn: "ou=groups,dc=example,dc=org"}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, t.TempDir(), t.TempDir()))
	run := func(journal bool) string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		cmd := exec.Command(binary, "-config", cfg, "-log-format", "json", "sync", "--once")
		cmd.Stderr = w
		if journal {
			var st syscall.Stat_t
			syscall.Fstat(int(w.Fd()), &st)
			cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		out, _ := io.ReadAll(r)
		cmd.Wait()
		return string(out)
	}
	out := run(true)
	if !regexp.MustCompile(`(?m)^<4>\{"time":.*"level":"WARN","msg":"LDAP server unusable`).MatchString(out) {
		t.Errorf("under the journal, no warning with priority 4:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "{") {
			t.Errorf("a JSON line without its priority: %s", line)
		}
	}
	if out := run(false); strings.Contains(out, "<4>") || !strings.Contains(out, `{"time":`) {
		t.Errorf("outside the journal:\n%s", out)
	}
}
