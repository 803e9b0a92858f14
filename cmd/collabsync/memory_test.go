package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestOneShotMemoryLimit: plan and sync --once size Go's memory limit from
// the peak live heap of their last run on the state (a first run from
// nothing, raised with its live heap), and leave it to GOMEMLIMIT when
// that is set.
func TestOneShotMemoryLimit(t *testing.T) {
	e := newLargeSyncEnv(t, 5000, 500)
	line := regexp.MustCompile(`memory limit from the last run's peak.* peak_MiB=(\d+) limit_MiB=(\d+)`)
	run := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(binary, "-config", e.config, "-log-format", "text", "-log-level", "debug", "plan")
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("plan: %v\n%s", err, stderr.String())
		}
		return stderr.String()
	}
	// A first run has a limit of its own, raised with its live heap
	// (none recorded to start from).
	if out := run(); line.MatchString(out) || !strings.Contains(out, "memory limit for a first run") {
		t.Fatalf("a first run has no limit of its own, or one from a last run:\n%s", out)
	}
	m := line.FindStringSubmatch(run())
	if m == nil {
		t.Fatal("the second run has no limit from the first")
	}
	if limit, _ := strconv.Atoi(m[2]); limit < 64 {
		t.Errorf("limit %s MiB, below the floor", m[2])
	}
	if out := run("GOMEMLIMIT=1GiB"); line.MatchString(out) {
		t.Errorf("GOMEMLIMIT set, and the run set its own limit:\n%s", out)
	}
}
