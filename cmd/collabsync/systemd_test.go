package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
