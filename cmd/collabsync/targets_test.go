package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTwoInstancesOfOneKind: two nss targets, each with its own
// directory and guard, both written by a sync and by serve; each is
// planned, guarded, measured and approved under its own name.
func TestTwoInstancesOfOneKind(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	login := filepath.Join(t.TempDir(), "login")
	os.Mkdir(login, 0o755)
	two := fmt.Sprintf("targets:\n  - name: extrausers\n    kind: nss\n    dir: %s\n  - name: login-nodes\n    kind: nss\n    dir: %s\n"+
		"    guard: {max_delete_ratio: 0.01, min_deletes: 1}\n", e.outDir, login)
	cfg := string(data)
	start := strings.Index(cfg, "targets:\n")
	end := start + len("targets:\n")
	for end < len(cfg) && strings.HasPrefix(cfg[end:], "  ") {
		end += strings.Index(cfg[end:], "\n") + 1
	}
	os.WriteFile(e.config, []byte(cfg[:start]+two+cfg[end:]), 0o600)

	if r := collabsync(t, e.config, "check-config"); r.code != 0 {
		t.Fatalf("check-config: %d %s", r.code, r.stderr)
	}
	e.sync(t)
	for _, f := range []string{"passwd", "group"} {
		a, _ := os.ReadFile(filepath.Join(e.outDir, f))
		b, _ := os.ReadFile(filepath.Join(login, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: the two instances differ (%d and %d bytes)", f, len(a), len(b))
		}
	}
	// A deletion passes extrausers' default guard but not login-nodes'.
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: delete\n")
	r := collabsync(t, e.config, "sync", "--once")
	if r.code == 0 || !strings.Contains(r.stderr, "collabsync approve login-nodes ") {
		t.Fatalf("sync: %d\n%s", r.code, r.stderr)
	}
	if inGroupFile(t, e.outDir, "lsst") || !inGroupFile(t, login, "lsst") {
		t.Error("the deletion went to the wrong instance")
	}
	plan := collabsync(t, e.config, "plan")
	if !strings.Contains(plan.stdout, "target extrausers: 0 to add, 0 to modify, 0 to delete") ||
		!strings.Contains(plan.stdout, "target login-nodes: 0 to add, 0 to modify, 1 to delete") {
		t.Errorf("plan:\n%s", plan.stdout)
	}

	d := startServe(t, e.config)
	eventually(t, 10*time.Second, "both instances reported", func() bool {
		return d.metric(`collabsync_reconcile_runs_total{result="success",target="extrausers"}`) != "" &&
			d.metric(`collabsync_reconcile_runs_total{result="refused",target="login-nodes"}`) != ""
	})
	d.stop(t)
}

// inGroupFile reports whether a group file in dir has the group.
func inGroupFile(t *testing.T, dir, group string) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "group"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains("\n"+string(data), "\n"+group+":")
}
