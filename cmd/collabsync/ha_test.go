package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness/slapd"
	"github.com/collabsync/collabsync/internal/testharness/tcpproxy"
)

const (
	haBase  = "ou=published,dc=example,dc=org"
	haTTL   = 3 * time.Second
	haLease = "cn=serve,dc=example,dc=org"
)

// haPair is the configuration of two serve processes of one pair: the
// same but for the host's own state directory, nss directory, listen
// address and lease holder name.
type haPair struct {
	env     *syncEnv
	configs [2]string
	// publishB is host b's path to the published subtree's server.
	publishB *tcpproxy.Proxy
}

func newHAPair(t *testing.T) *haPair {
	t.Helper()
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}, AccessLog: true})
	e := demoEnvOn(t, s, serveConfig(freeListen(t), "")+fmt.Sprintf("ha:\n  url: %q\n  tls: none\n  bind_dn: %q\n  password_file: %s\n  lease_dn: %q\n  holder: host-a\n  ttl: %v\n",
		s.URI, s.RootDN, s.RootPWFile, haLease, haTTL))
	raw, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(raw), "\naccounting:\n", "\n  - "+ldapTarget(s, haBase)+"\naccounting:\n", 1)
	writeFile(t, e.config, doc)
	// Host b: its own state, nss files and listen address.
	dirB := t.TempDir()
	os.Mkdir(filepath.Join(dirB, "extrausers"), 0o755)
	docB := strings.Replace(doc, filepath.Join(filepath.Dir(e.config), "state"), filepath.Join(dirB, "state"), 1)
	docB = strings.Replace(docB, e.outDir, filepath.Join(dirB, "extrausers"), 1)
	docB = strings.Replace(docB, "holder: host-a", "holder: host-b", 1)
	proxy := tcpproxy.StartT(t, strings.TrimPrefix(s.URI, "ldap://"))
	docB = strings.Replace(docB, fmt.Sprintf("kind: ldap, url: %q", s.URI), fmt.Sprintf("kind: ldap, url: %q", "ldap://"+proxy.Addr), 1)
	listenA := ""
	for _, line := range strings.Split(doc, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen: "); ok {
			listenA = v
		}
	}
	docB = strings.Replace(docB, "listen: "+listenA, fmt.Sprintf("listen: %q", freeListen(t)), 1)
	if docB == doc || strings.Count(docB, dirB) != 2 || !strings.Contains(docB, proxy.Addr) {
		t.Fatalf("could not make host b's configuration:\n%s", docB)
	}
	return &haPair{env: e, configs: [2]string{e.config, writeFile(t, filepath.Join(dirB, "collabsync.yaml"), docB)}, publishB: proxy}
}

// role is what a serve's /status says of the lease ("" before it says).
func role(t *testing.T, d *daemonProc) string {
	code, _ := d.get("/status")
	if code != 200 {
		return ""
	}
	if s := d.status(t); s.HA != nil {
		return s.HA.Role
	}
	return ""
}

// haUsers adds n users who are in no collaboration (so not provisioned).
func haUsers(t *testing.T, e *syncEnv, n int) {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "dn: uid=ha%02d,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: ha%02d\ncn: HA %d\nsn: HA\n"+
			"mail: ha%02d@irfu.example.org\nuidNumber: %d\ngidNumber: 20002\nhomeDirectory: /home/ha%02d\nloginShell: /bin/bash\n\n", i, i, i, i, 31000+i, i)
	}
	if err := e.server.Add(context.Background(), b.String()); err != nil {
		t.Fatal(err)
	}
}

func joinLSST(t *testing.T, e *syncEnv, uid string) {
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: "+uid+"\n")
}

// joined says whether a write adding uid to lsst is in the access log.
func joined(e *syncEnv, uid string) bool {
	out, _ := e.server.WriteLog(context.Background(), haBase)
	for _, w := range out {
		if slices.Contains(w.Mods, "memberUid:+ "+uid) {
			return true
		}
	}
	return false
}

// publishedWrites checks the access log of the published subtree: no
// write was refused (a duplicate, or a fenced one), the lease generations the applies wrote never went
// down, and each user's entry and lsst membership was written exactly
// once. It returns how many writes there were.
func publishedWrites(t *testing.T, e *syncEnv, uids []string) int {
	t.Helper()
	writes, err := e.server.WriteLog(context.Background(), haBase)
	if err != nil {
		t.Fatal(err)
	}
	added, joined := map[string]int{}, map[string]int{}
	var gen uint64
	for _, w := range writes {
		// The first apply under a lease finds the base without csFenced
		// (objectClassViolation, 65) and adds it.
		if w.Result != "0" && (w.Result != "65" || !strings.EqualFold(w.DN, haBase)) {
			t.Errorf("write refused: %+v", w)
		}
		for _, m := range w.Mods {
			if v, ok := strings.CutPrefix(m, "csLeaseGeneration:= "); ok && strings.EqualFold(w.DN, haBase) {
				g, _ := strconv.ParseUint(v, 10, 64)
				if g < gen {
					t.Errorf("an apply of lease generation %d after one of %d", g, gen)
				}
				gen = g
			}
			if v, ok := strings.CutPrefix(m, "memberUid:+ "); ok && strings.HasPrefix(strings.ToLower(w.DN), "cn=lsst,") {
				joined[v]++
			}
		}
		if w.Type == "add" && strings.HasPrefix(w.DN, "uid=") {
			uid, _, _ := strings.Cut(strings.TrimPrefix(w.DN, "uid="), ",")
			added[uid]++
		}
	}
	for _, uid := range uids {
		if added[uid] != 1 || joined[uid] != 1 {
			t.Errorf("%s: entry added %d times, joined lsst %d times; want exactly once each", uid, added[uid], joined[uid])
		}
	}
	return len(writes)
}

// TestServePairFailsOver: two serve processes of one pair ("hosts" a and
// b: own state directory, own nss files) publish to one subtree; the
// lease is an entry in the source slapd. Killed with SIGKILL in the
// middle of a burst of changes, the leader's standby takes over within
// the lease's TTL + 2 s and applies every change exactly once (the
// slapd access log counts the writes). Then the new leader is paused
// with SIGSTOP past its lease: the other takes over and applies the
// change made meanwhile; resumed with SIGCONT, the paused one applies
// nothing and says it is standby.
func TestServePairFailsOver(t *testing.T) {
	p := newHAPair(t)
	e := p.env
	const burst = 30
	haUsers(t, e, burst+2)
	a := startServe(t, p.configs[0])
	eventually(t, 20*time.Second, "a leads and is ready", func() bool {
		code, _ := a.get("/readyz")
		return code == 200 && role(t, a) == "leader"
	})
	b := startServe(t, p.configs[1])
	eventually(t, 20*time.Second, "b is ready as standby", func() bool {
		code, body := b.get("/readyz")
		return code == 200 && strings.HasPrefix(body, "standby: host-a leads")
	})
	if v := b.metric("collabsync_ha_leader"); v != "0" {
		t.Errorf("b: collabsync_ha_leader %q", v)
	}
	if v := a.metric("collabsync_ha_leader"); v != "1" {
		t.Errorf("a: collabsync_ha_leader %q", v)
	}

	// A burst; a is killed after the 10th change.
	var uids []string
	var killed time.Time
	for i := 1; i <= burst; i++ {
		uid := fmt.Sprintf("ha%02d", i)
		uids = append(uids, uid)
		joinLSST(t, e, uid)
		if i == 10 {
			a.cmd.Process.Kill()
			killed = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, haTTL+5*time.Second, "b leads", func() bool { return role(t, b) == "leader" })
	eventually(t, 2*time.Second, "b's takeover time", func() bool { return true })
	st := b.status(t)
	takeover := st.HA.Since.Sub(killed)
	t.Logf("b took the lease %v after a was killed (ttl %v)", takeover.Round(time.Millisecond), haTTL)
	if takeover > haTTL+2*time.Second {
		t.Errorf("takeover after %v, want ≤ ttl + 2 s = %v", takeover, haTTL+2*time.Second)
	}
	eventually(t, 15*time.Second, "every change of the burst published", func() bool {
		out, _ := e.server.WriteLog(context.Background(), haBase)
		n := 0
		for _, w := range out {
			for _, m := range w.Mods {
				if strings.HasPrefix(m, "memberUid:+ ha") {
					n++
				}
			}
		}
		return n >= burst
	})
	publishedWrites(t, e, uids)

	// a comes back: standby behind b.
	a = startServe(t, p.configs[0])
	eventually(t, 20*time.Second, "a is ready as standby", func() bool {
		code, body := a.get("/readyz")
		return code == 200 && strings.HasPrefix(body, "standby: host-b leads")
	})
	applied := b.metric(`collabsync_reconcile_runs_total{result="success",target="published"}`)

	// b starts to apply a change, its connection to the published
	// subtree's server held up (a slow network); it is paused past its
	// lease meanwhile: the change is a's to apply.
	p.publishB.Freeze()
	nssRuns := func() int { return strings.Count(b.logText(), `"msg":"reconciled","target":"nss"`) }
	before := nssRuns()
	joinLSST(t, e, "ha31")
	uids = append(uids, "ha31")
	eventually(t, 5*time.Second, "b's apply under way", func() bool { return nssRuns() > before }) // its nss target took the change
	time.Sleep(200 * time.Millisecond)
	b.cmd.Process.Signal(syscall.SIGSTOP)
	eventually(t, haTTL+5*time.Second, "a leads", func() bool { return role(t, a) == "leader" })
	eventually(t, 10*time.Second, "ha31 published by a", func() bool { return joined(e, "ha31") })
	writesBefore := publishedWrites(t, e, uids)
	// b resumes with its apply of ha31 in progress: it must write nothing.
	p.publishB.Thaw()
	b.cmd.Process.Signal(syscall.SIGCONT)
	eventually(t, 10*time.Second, "b says standby", func() bool {
		code, body := b.get("/readyz")
		return code == 200 && strings.HasPrefix(body, "standby: host-a leads")
	})
	time.Sleep(2 * time.Second)
	if n := publishedWrites(t, e, uids); n != writesBefore {
		t.Errorf("%d writes to the published subtree after b was resumed", n-writesBefore)
	}
	if got := b.metric(`collabsync_reconcile_runs_total{result="success",target="published"}`); got != applied {
		t.Errorf("b applied after it lost the lease: successful runs %s, then %s", applied, got)
	}
	if !strings.Contains(b.logText(), "stepping down") {
		t.Error("b's log does not say it stepped down")
	}
	// One more change: a alone applies it, once.
	joinLSST(t, e, "ha32")
	uids = append(uids, "ha32")
	eventually(t, 10*time.Second, "ha32 published", func() bool { return joined(e, "ha32") })
	publishedWrites(t, e, uids)
	// A one-shot sync on the standby's host would compete with the leader.
	if r := collabsync(t, p.configs[1], "sync", "--once"); r.code == 0 || !strings.Contains(r.stderr, "host-a leads this pair") {
		t.Errorf("sync --once on the standby's host: code %d: %s", r.code, r.stderr)
	}
	if r := collabsync(t, p.configs[1], "sync", "--once", "--dry-run"); r.code != 0 {
		t.Errorf("sync --once --dry-run on the standby's host: code %d: %s", r.code, r.stderr)
	}
	b.stop(t)
	a.stop(t)
}
