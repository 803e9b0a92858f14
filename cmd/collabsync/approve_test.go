package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/app/daemon"
)

// strictGuard makes every deletion need approval (explicit zeros are
// honoured).
func strictGuard(t *testing.T, e *syncEnv) {
	t.Helper()
	setGuard(t, e, "{max_delete_ratio: 0, min_deletes: 1}")
}

// setGuard gives the demo configuration's nss target a guard.
func setGuard(t *testing.T, e *syncEnv, guard string) {
	t.Helper()
	data, _ := os.ReadFile(e.config)
	const instance = "  - name: nss\n    kind: nss\n"
	if !strings.Contains(string(data), instance) {
		t.Fatalf("no nss target to guard in %s", data)
	}
	os.WriteFile(e.config, []byte(strings.Replace(string(data), instance, instance+"    guard: "+guard+"\n", 1)), 0o600)
}

func (d *daemonProc) held(t *testing.T) *daemon.HeldPlan {
	t.Helper()
	if ts := d.status(t).Targets["nss"]; ts != nil {
		return ts.Held
	}
	return nil
}

// TestServeApproval: a plan refused by its guard under serve is held and
// retried on every run (counted); /readyz says what to approve; an
// approval of another digest is refused; the right one is applied within
// seconds, readiness follows, and it approves no later plan.
func TestServeApproval(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	strictGuard(t, e)
	d := startServe(t, e.config)
	d.waitReady(t)
	e.changeArrives(t, "add", "lsst", "trent", 10*time.Second) // adds pass

	// Removing trent deletes his account: held.
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "the plan held", func() bool { return d.held(t) != nil })
	h := d.held(t)
	if code, body := d.get("/readyz"); code != 503 || !strings.Contains(body, "approve it with: collabsync approve nss "+h.Digest) {
		t.Errorf("/readyz while held: %d %s", code, body)
	}
	if d.metric(`collabsync_plan_held{target="nss"}`) != "1" {
		t.Error("held gauge not 1")
	}
	// Every run plans it again: another change triggers a run; the plan,
	// held as a whole, now holds that change too (a new digest).
	refused := d.metric(`collabsync_reconcile_runs_total{result="refused",target="nss"}`)
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: erin\n")
	eventually(t, 10*time.Second, "a second refusal counted, with the new change in the plan", func() bool {
		h2 := d.held(t)
		return d.metric(`collabsync_reconcile_runs_total{result="refused",target="nss"}`) != refused && h2 != nil && h2.Digest != h.Digest
	})
	h = d.held(t)
	if !e.inGroup(t, "lsst", "trent") {
		t.Fatal("the held deletion was applied")
	}

	// A stale or wrong digest approves nothing.
	r := collabsync(t, e.config, "approve", "nss", "0123456789abcdef")
	if r.code != exitFailure || !strings.Contains(r.stderr, "the plan held for nss is "+h.Digest) {
		t.Errorf("wrong digest: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := collabsync(t, e.config, "approve", "mailman", h.Digest); r.code != exitUsage {
		t.Errorf("unknown target: code %d", r.code)
	}
	start := time.Now()
	if r := collabsync(t, e.config, "approve", "nss", h.Digest); r.code != 0 {
		t.Fatalf("approve: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, 5*time.Second, "the approved plan applied", func() bool { return !e.inGroup(t, "lsst", "trent") && e.inGroup(t, "atlas", "erin") })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the approved plan took %v to apply", took)
	}
	eventually(t, 5*time.Second, "ready again", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	if d.metric(`collabsync_plan_held{target="nss"}`) != "0" {
		t.Error("held gauge not back to 0")
	}

	// The approval was for that plan only: the next deletion is held again.
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: ivan\n")
	eventually(t, 10*time.Second, "the next deletion held", func() bool { return d.held(t) != nil })
	time.Sleep(1500 * time.Millisecond)
	if !e.inGroup(t, "atlas", "ivan") {
		t.Error("a later plan went through on an earlier approval")
	}
	d.stop(t)

	// Without serve, sync --once holds it, says how to approve, and applies
	// it once approved.
	r = collabsync(t, e.config, "sync", "--once")
	if r.code != exitFailure || !strings.Contains(r.stdout, "approve this plan (and no other) with: collabsync approve nss ") {
		t.Fatalf("sync of a held plan: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	digest := strings.Fields(r.stdout[strings.Index(r.stdout, "collabsync approve nss "):])[3]
	if r := collabsync(t, e.config, "approve", "nss", digest); r.code != 0 {
		t.Fatalf("approve: %d %s", r.code, r.stderr)
	}
	if r := collabsync(t, e.config, "sync", "--once"); r.code != 0 {
		t.Fatalf("sync of the approved plan: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if e.inGroup(t, "atlas", "ivan") {
		t.Error("the approved plan was not applied by sync --once")
	}
}

// TestServeStartsWithAHeldPlan: a plan held from the start does not keep
// the daemon from telling systemd it has started (it would be killed at
// TimeoutStartSec); STATUS and /readyz say what to approve.
func TestServeStartsWithAHeldPlan(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	strictGuard(t, e)
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	e.sync(t)
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	sock, msgs := notifySocket(t)
	d := startServe(t, e.config, "NOTIFY_SOCKET="+sock)
	var ready, status bool
	deadline := time.After(15 * time.Second)
	for !ready || !status {
		select {
		case m := <-msgs:
			ready = ready || m == "READY=1"
			status = status || (strings.HasPrefix(m, "STATUS=") && strings.Contains(m, "nss HELD") && strings.Contains(m, "collabsync approve nss "))
		case <-deadline:
			t.Fatalf("READY=1 %v, STATUS with the held plan %v", ready, status)
		}
	}
	if code, body := d.get("/readyz"); code != 503 || !strings.Contains(body, "collabsync approve nss") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	d.stop(t)
}

// TestServeReadyAfterOutOfBandApproval: serve starts with a plan its guard
// refuses; an operator approves it with 'sync --once --allow-deletions'
// beside it; serve retries its held plan, finds nothing left to do, and is
// ready.
func TestServeReadyAfterOutOfBandApproval(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	setGuard(t, e, "{max_delete_ratio: 0.01, min_deletes: 1}")
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	e.sync(t)
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	d := startServe(t, e.config)
	eventually(t, 10*time.Second, "the plan refused", func() bool {
		v := d.metric(`collabsync_reconcile_runs_total{result="refused",target="nss"}`)
		return v != "" && v != "0"
	})
	if code, _ := d.get("/readyz"); code != 503 {
		t.Errorf("/readyz %d with the plan refused", code)
	}
	if r := collabsync(t, e.config, "sync", "--once", "--allow-deletions"); r.code != 0 {
		t.Fatalf("sync --allow-deletions: %d %s", r.code, r.stderr)
	}
	eventually(t, 10*time.Second, "/readyz 200 after the approval", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	d.stop(t)
}
