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
// booting systemd: `systemd-analyze verify` accepts it alone and with each
// shipped drop-in (systemd/drop-ins: what a target kind needs opened), and
// `systemd-analyze security --offline` rates every combination's exposure
// at most 1.5.
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
	dropIns, _ := filepath.Glob("../../systemd/drop-ins/*.conf")
	if len(dropIns) < 4 {
		t.Fatalf("drop-ins: %v", dropIns)
	}
	for _, combination := range append([][]string{nil, dropIns}, each(dropIns)...) {
		// verify wants the ExecStart binary to exist: point it at the one built.
		dir := t.TempDir()
		path := filepath.Join(dir, "collabsync.service")
		os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/collabsync", binary)), 0o644)
		os.Mkdir(path+".d", 0o755)
		var names []string
		for _, d := range combination {
			data, _ := os.ReadFile(d)
			os.WriteFile(filepath.Join(path+".d", filepath.Base(d)), data, 0o644)
			names = append(names, filepath.Base(d))
		}
		out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
		if err != nil || strings.Contains(string(out), "collabsync.service") {
			t.Errorf("systemd-analyze verify with %v: %v\n%s", names, err, out)
		}
		out, err = exec.Command("systemd-analyze", "security", "--offline=true", path).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security with %v: %v\n%s", names, err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for collabsync.service: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 1.5 {
			t.Errorf("exposure %.1f > 1.5 with %v:\n%s", level, names, out)
		}
		t.Logf("exposure level %s with %v", m[1], names)
	}
}

// each lists every item alone.
func each(items []string) [][]string {
	out := make([][]string, len(items))
	for i, it := range items {
		out[i] = []string{it}
	}
	return out
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
