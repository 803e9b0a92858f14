package testharness

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Eventually polls cond every 20 ms until it holds, failing the test
// when limit passes first.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sample returns the value of one sample line of a Prometheus text
// exposition ("" if absent); name includes the labels as written.
func Sample(exposition, name string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// DemoConfig is the demo's configuration (configs/demo/collabsync.yaml
// under root, the repository) with its ${...} values filled in.
func DemoConfig(root string, vars map[string]string) (string, error) {
	tmpl, err := os.ReadFile(root + "/configs/demo/collabsync.yaml")
	if err != nil {
		return "", err
	}
	return os.Expand(string(tmpl), func(k string) string { return vars[k] }), nil
}
