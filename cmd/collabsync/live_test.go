package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/internal/testharness/churn"
)

// TestServeFollowsRandomChanges: serve runs on a generated directory while
// 1,000 random adds, modifies, deletes and renames of users, collaborations
// and memberships go through the real slapd, then is restarted (resuming
// from its saved model) for 200 more. Afterwards its nss files are byte for
// byte those a fresh one-shot sync (a full read, no history) writes into
// another directory, and the scheduled full reconcile found no entry on
// which the live model differed from the directory.
func TestServeFollowsRandomChanges(t *testing.T) {
	e := newLargeSyncEnv(t, 500, 50)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	// The full reconcile every 2 s compares the model with the directory.
	os.WriteFile(e.config, append(cfg, serveConfig(freeListen(t), "  full_reconcile: \"@every 2s\"\n")...), 0o600)
	d := startServe(t, e.config)
	d.waitReady(t)

	conn := e.server.RootConn(t)
	ch, err := churn.New(conn, "dc=example,dc=org", 7, false)
	if err != nil {
		t.Fatal(err)
	}
	steps := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := ch.Step(); err != nil {
				t.Fatal(err)
			}
			if i%50 == 0 {
				time.Sleep(20 * time.Millisecond) // runs happen in the middle of the changes too
			}
		}
	}
	steps(1000)
	// Stopped once it has applied the last change: the restart then sees
	// only what changed while it was down (else its guard may hold it).
	last := time.Now()
	eventually(t, 20*time.Second, "serve applied the last change", func() bool {
		nss := d.status(t).Targets["nss"]
		return nss != nil && nss.LastSuccess.After(last)
	})
	d.stop(t)
	steps(100) // while it is down
	d = startServe(t, e.config)
	d.waitReady(t)
	steps(100)
	t.Logf("changes made: %v", ch.Done)

	requireFreshRead(t, e, 20*time.Second)
	// A scheduled full reconcile after the last change compared the model.
	before := d.metric(`collabsync_directory_full_reads_total{reason="schedule"}`)
	eventually(t, 10*time.Second, "a scheduled full reconcile", func() bool {
		return d.metric(`collabsync_directory_full_reads_total{reason="schedule"}`) != before
	})
	body := d.metrics(t)
	if strings.Contains(body, "collabsync_live_model_differences_total{") {
		t.Errorf("the live model differed from the directory:\n%s", grepLines(body, "collabsync_live_model_differences_total"))
	}
	if n := d.metric(`collabsync_directory_full_reads_total{reason="refresh"}`); n != "" {
		t.Errorf("serve re-read the whole directory by syncrepl %s time(s) after its restart", n)
	}
	// The files above came from incremental evaluations too: the churn's
	// membership and attribute changes are evaluated by their difference.
	if n := d.metric(`collabsync_rules_evaluations_total{kind="incremental"}`); n == "" || n == "0" {
		t.Errorf("no incremental evaluation of the rules:\n%s", grepLines(body, "collabsync_rules_evaluations_total"))
	}
	t.Logf("%s\n%s", grepLines(body, "collabsync_rules_evaluations_total"), grepLines(body, "collabsync_target_plans_total"))
	d.stop(t)
}

// requireFreshRead waits until serve's files are what a fresh sync --once
// into another directory writes.
func requireFreshRead(t *testing.T, e *syncEnv, within time.Duration) {
	t.Helper()
	// A fresh full read into another directory, with its own state.
	freshDir := t.TempDir()
	freshOut := filepath.Join(freshDir, "extrausers")
	os.Mkdir(freshOut, 0o755)
	freshCfg := writeFile(t, filepath.Join(freshDir, "collabsync.yaml"),
		fmt.Sprintf(standardConfig, e.server.URI, e.server.RootDN, e.server.RootPWFile, filepath.Join(freshDir, "state"), freshOut))
	var diff string
	settled := func() bool {
		if r := collabsync(t, freshCfg, "sync", "--once", "--allow-deletions"); r.code != 0 {
			t.Fatalf("fresh sync: %d %s", r.code, r.stderr)
		}
		diff = ""
		for _, f := range []string{"passwd", "group"} {
			live, _ := os.ReadFile(filepath.Join(e.outDir, f))
			fresh, _ := os.ReadFile(filepath.Join(freshOut, f))
			if !bytes.Equal(live, fresh) {
				diff += fmt.Sprintf("%s differs: %s\n", f, firstDifference(live, fresh))
			}
		}
		return diff == ""
	}
	deadline := time.Now().Add(within)
	for !settled() {
		if time.Now().After(deadline) {
			t.Fatalf("serve's files never matched a fresh full read:\n%s", diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// firstDifference shows where two files part.
func firstDifference(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: serve %q, fresh %q", i+1, x, y)
		}
	}
	return "?"
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (d *daemonProc) metrics(t *testing.T) string {
	t.Helper()
	_, body := d.get("/metrics")
	return body
}

// TestServeRepairsADivergentModel: the saved model loses an entry behind
// serve's back (a state database restored from a backup that is older for
// that row, say), so the restored model lacks a user the stream has no
// reason to send again. The scheduled full reconcile finds the difference,
// says which DN, counts it, and rebuilds the model: the user comes back.
// TestServeTakesChangesByDifference: memberships and attributes changed
// a few at a time, no full reconcile: the rules and the nss target take
// the changes by their difference, and the files are what a fresh full
// read writes (a difference that left a line stale would stay: nothing
// whole repairs it).
func TestServeTakesChangesByDifference(t *testing.T) {
	e := newLargeSyncEnv(t, 500, 50)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.config, append(cfg, serveConfig(freeListen(t), "")...), 0o600)
	d := startServe(t, e.config)
	d.waitReady(t)
	ch, err := churn.New(e.server.RootConn(t), "dc=example,dc=org", 11, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := ch.StepAttributes(); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			time.Sleep(15 * time.Millisecond) // runs of a few changes each
		}
	}
	t.Logf("changes made: %v", ch.Done)
	requireFreshRead(t, e, 20*time.Second)
	body := d.metrics(t)
	if n, _ := strconv.Atoi(d.metric(`collabsync_target_plans_total{kind="difference",target="nss"}`)); n < 20 {
		t.Errorf("%d nss plans made by difference, want 20 or more:\n%s", n, grepLines(body, "collabsync_target_plans_total"))
	}
	if n := d.metric(`collabsync_directory_full_reads_total{reason="schedule"}`); n != "" {
		t.Errorf("%s scheduled full reads: a full reconcile may have repaired what a difference missed", n)
	}
	t.Logf("%s\n%s", grepLines(body, "collabsync_rules_evaluations_total{"), grepLines(body, "collabsync_target_plans_total{"))
	d.stop(t)
}

func TestServeRepairsADivergentModel(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), "  full_reconcile: \"@every 3s\"\n"))
	d := startServe(t, e.config)
	d.waitReady(t)
	d.stop(t)
	if !e.visible(t, "alice") {
		t.Fatal("alice is not provisioned to begin with")
	}
	st, err := store.Open(context.Background(), filepath.Join(filepath.Dir(e.outDir), "state", "collabsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.DB.Exec("DELETE FROM live_entry WHERE dn LIKE 'uid=alice,%'")
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("delete alice from the saved model: %v, %d rows", err, n)
	}
	st.Close()
	d = startServe(t, e.config)
	eventually(t, 20*time.Second, "the difference counted", func() bool {
		return d.metric(`collabsync_live_model_differences_total{stream="users"}`) == "1"
	})
	eventually(t, 20*time.Second, "alice back", func() bool { return e.visible(t, "alice") })
	if m := d.status(t).ChangeStream.Model; m.Differences != 1 || m.LastFullRead.IsZero() || m.Entries["users"] == 0 {
		t.Errorf("/status model = %+v", m)
	}
	if log := d.logText(); !strings.Contains(log, "live directory model differs from a full read") || !strings.Contains(log, "uid=alice,") {
		t.Errorf("the log does not name the entry:\n%s", log)
	}
	d.stop(t)
}
