package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoredStateCommandsNeedNoSecret: with the bind password file
// missing (a reporting contact, a monitoring user), the commands that
// read only the stored state work; those that reach the directory name
// the file.
func TestStoredStateCommandsNeedNoSecret(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "ldap-password")
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(standardConfig,
		"ldap://127.0.0.1:1", "cn=admin,dc=example,dc=org", missing, filepath.Join(dir, "state"), dir))
	if r := collabsync(t, cfg, "__complete", "targets"); r.stdout != "nss\n" {
		t.Errorf("completion of targets without the password file: %q", r.stdout)
	}
	for _, args := range [][]string{{"report"}, {"status"}, {"approve", "nss", "0123456789abcdef"}} {
		r := collabsync(t, cfg, args...)
		if strings.Contains(r.stderr, "password_file") || r.code == exitUsage {
			t.Errorf("%v without the password file: code %d\n%s", args, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"plan"}, {"check-config"}} {
		r := collabsync(t, cfg, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "ldap.bind.password_file: cannot read") || !strings.Contains(r.stderr, missing) {
			t.Errorf("%v without the password file: code %d, want %d naming it\n%s", args, r.code, exitUsage, r.stderr)
		}
	}
}
