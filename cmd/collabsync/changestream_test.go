package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// changeArrives adds or removes uid in a group of the demo directory and
// returns how long until getent shows it.
func (e *syncEnv) changeArrives(t *testing.T, op, group, uid string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	e.modify(t, fmt.Sprintf("dn: cn=%s,ou=collaborations,dc=example,dc=org\nchangetype: modify\n%s: memberUid\nmemberUid: %s\n", group, op, uid))
	want := op == "add"
	eventually(t, limit, fmt.Sprintf("%s %s %s in getent", op, uid, group), func() bool { return e.inGroup(t, group, uid) == want })
	return time.Since(start)
}

// live waits until every stream is live again in syncrepl mode.
func (d *daemonProc) live(t *testing.T, limit time.Duration) {
	t.Helper()
	eventually(t, limit, "change streams live again", func() bool {
		st := d.status(t)
		// users, disabled_users, collaborations, production_accounts
		return st.ChangeStream.Mode == "syncrepl" && st.ChangeStream.Connected && len(st.ChangeStream.Live) == 4
	})
}

// TestServeSlapdKilledMidStream: slapd killed with SIGKILL after changes
// it has not checkpointed, and restarted, answers the stored cookie with
// "consumer state is newer than provider"; the daemon drops the cookie,
// refreshes, and stays on syncrepl: the next change arrives in a second.
func TestServeSlapdKilledMidStream(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	d := startServe(t, e.config)
	d.waitReady(t)
	d.live(t, 10*time.Second)
	// Fewer than the 100 operations after which syncprov checkpoints.
	e.changeArrives(t, "add", "lsst", "trent", 10*time.Second)
	e.changeArrives(t, "add", "atlas", "trent", 10*time.Second)
	e.changeArrives(t, "delete", "atlas", "trent", 10*time.Second)
	e.server.Kill()
	if err := e.server.Start(); err != nil {
		t.Fatal(err)
	}
	d.live(t, 30*time.Second)
	// A change made during the outage is caught up; then changes are live.
	took := e.changeArrives(t, "delete", "lsst", "trent", 10*time.Second)
	if took > 2*time.Second {
		t.Errorf("a change after the restart took %v", took)
	}
	if v := d.metric(`collabsync_change_stream_mode{mode="poll"}`); v == "1" {
		t.Error("fell back to polling")
	}
	d.stop(t)
}

// TestServeSlapdRestoredFromOlderBackup: the provider restored from a
// backup older than the daemon's cookie; the stream restarts with a full
// refresh, the files follow the restored directory, and later changes
// arrive live.
func TestServeSlapdRestoredFromOlderBackup(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	backup := filepath.Join(t.TempDir(), "backup.ldif")
	if err := e.server.Backup(backup); err != nil {
		t.Fatal(err)
	}
	d := startServe(t, e.config)
	d.waitReady(t)
	d.live(t, 10*time.Second)
	e.changeArrives(t, "add", "lsst", "trent", 10*time.Second)
	if err := e.server.Restore(backup); err != nil {
		t.Fatal(err)
	}
	// The restored directory has no trent in lsst: the files follow it.
	eventually(t, 30*time.Second, "trent gone from lsst with the restore", func() bool { return !e.inGroup(t, "lsst", "trent") })
	d.live(t, 30*time.Second)
	if took := e.changeArrives(t, "add", "atlas", "trent", 10*time.Second); took > 2*time.Second {
		t.Errorf("a change after the restore took %v", took)
	}
	if v := d.metric(`collabsync_change_stream_mode{mode="poll"}`); v == "1" {
		t.Error("fell back to polling")
	}
	if !strings.Contains(d.logText(), "cookie") {
		t.Error("the log does not say the cookie was dropped")
	}
	d.stop(t)
}
