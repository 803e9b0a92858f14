// Package testharness starts and checks the real components collabsync's
// tests run against. A missing component skips a test on a developer's
// machine and fails it when CI is set.
package testharness

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the CI environment variable is set.
func InCI() bool { return os.Getenv("CI") != "" }

// Require fails (in CI) or skips the test unless every program is found.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			Missing(t, "%s not found (make test installs it)", p)
		}
	}
}

// RequireRoot fails (in CI) or skips the test unless it runs as root, which
// mount namespaces for getent need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root for a private mount namespace")
	}
}

// Missing reports a missing component: a failure in CI, a skip elsewhere.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI: required component missing: "+format, args...)
	}
	t.Skipf("component missing: "+format, args...)
}
