package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness/mailman"
)

// mailmanEnv is the demo centre with a mailman target talking to a real
// Mailman core through a proxy that counts the REST writes.
type mailmanEnv struct {
	*syncEnv
	mm     *mailman.Server
	writes atomic.Int64
}

func newMailmanEnv(t *testing.T) *mailmanEnv {
	t.Helper()
	mm := mailman.StartT(t)
	e := &mailmanEnv{mm: mm}
	backend, _ := url.Parse(mm.URL)
	proxy := httputil.NewSingleHostReverseProxy(backend)
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) } // Mailman stopped
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			e.writes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.syncEnv = newDemoEnv(t, serveConfig(freeListen(t), ""))
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf(`  - name: lists
    kind: mailman
    url: %s
    password_file: %s
    domain: lists.example.org
    all_users: hpc-users
    contacts: hpc-contacts
    timeout: 5s
`, srv.URL, mm.PasswordFile)
	doc := strings.Replace(string(data), "\naccounting:\n", "\n"+target+"accounting:\n", 1)
	if doc == string(data) {
		t.Fatal("the demo configuration has no accounting section to put the target before")
	}
	writeFile(t, e.config, doc)
	return e
}

func (e *mailmanEnv) members(t *testing.T, list string) string {
	t.Helper()
	m, err := e.mm.Members(context.Background(), list+".lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(m, ",")
}

// TestMailmanTarget: the demo centre against a real Mailman core. sync
// creates the collaborations' lists (named by csListName), the list of
// all active users and the contacts' list, with active users' addresses
// minus their opt-outs (bob opted out of atlas-users only); a list made
// by hand in another domain and a member added by hand are untouched; a
// second sync makes no REST write. Under serve a member leaving a
// collaboration in LDAP is unsubscribed within seconds. With Mailman
// stopped the lists target fails alone (nss still applies), the failure
// is in the log and the metrics, and once Mailman is back everything is
// applied with no duplicate subscription.
func TestMailmanTarget(t *testing.T) {
	ctx := context.Background()
	e := newMailmanEnv(t)
	if err := e.mm.CreateList(ctx, "staff@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := e.mm.Subscribe(ctx, "staff.example.org", "alice.martin@lpnhe.example.org"); err != nil {
		t.Fatal(err)
	}
	// A list the first sync will find made already, with a visitor.
	if err := e.mm.CreateList(ctx, "atlas-users@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := e.mm.Subscribe(ctx, "atlas-users.lists.example.org", "visitor@elsewhere.example.net"); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	atlas := e.members(t, "atlas-users")
	for _, want := range []string{"alice.martin@lpnhe.example.org", "carol.bernard@irfu.example.org", "visitor@elsewhere.example.net"} {
		if !strings.Contains(atlas, want) {
			t.Errorf("atlas-users lacks %s: %s", want, atlas)
		}
	}
	if strings.Contains(atlas, "bob.durand") {
		t.Errorf("bob opted out of atlas-users and is on it: %s", atlas)
	}
	if all := e.members(t, "hpc-users"); !strings.Contains(all, "bob.durand@lpnhe.example.org") || !strings.Contains(all, "alice.martin") {
		t.Errorf("hpc-users (bob opted out of atlas-users only): %s", all)
	}
	if c := e.members(t, "hpc-contacts"); !strings.Contains(c, "alice.martin") || !strings.Contains(c, "carol.bernard") {
		t.Errorf("hpc-contacts: %s", c)
	}
	if m, _ := e.mm.Members(ctx, "staff.example.org"); strings.Join(m, ",") != "alice.martin@lpnhe.example.org" {
		t.Errorf("the hand-made list changed: %v", m)
	}
	lsst := e.members(t, "lsst-users")
	t.Logf("atlas-users: %s\nlsst-users: %s\nhpc-users: %s", atlas, lsst, e.members(t, "hpc-users"))

	e.writes.Store(0)
	e.sync(t)
	if n := e.writes.Load(); n != 0 {
		t.Errorf("a second sync made %d REST writes", n)
	}
	if r := collabsync(t, e.config, "plan"); r.code != 0 ||
		!strings.Contains(r.stdout, "note: atlas-users.lists.example.org keeps 1 member(s) no directory user has (foreign_members: keep): visitor@elsewhere.example.net") {
		t.Errorf("plan does not list the member it keeps: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Under serve: alice leaves atlas.
	d := startServe(t, e.config)
	d.waitReady(t)
	start := time.Now()
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: alice\n")
	eventually(t, 10*time.Second, "alice off atlas-users", func() bool { return !strings.Contains(e.members(t, "atlas-users"), "alice.martin") })
	t.Logf("a member removed in LDAP left the roster in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(e.members(t, "hpc-users"), "alice.martin") {
		t.Error("alice left hpc-users with atlas (she is still active)")
	}
	// Planned from the difference with the state applied at start, not
	// from every list.
	if n, _ := strconv.Atoi(d.metric(`collabsync_target_plans_total{kind="difference",target="lists"}`)); n < 1 {
		t.Errorf("the lists target planned the change whole:\n%s", grepLines(d.metrics(t), "collabsync_target_plans_total"))
	}

	// Mailman stopped: alice comes back to atlas; nss applies, lists fails.
	if err := e.mm.Stop(); err != nil {
		t.Fatal(err)
	}
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: alice\n")
	eventually(t, 10*time.Second, "nss applied while Mailman is down", func() bool {
		return strings.Contains(e.getent(t, "getent group atlas"), "alice")
	})
	eventually(t, 10*time.Second, "the lists target's failure counted", func() bool {
		return d.metric(`collabsync_reconcile_runs_total{result="failure",target="lists"}`) != ""
	})
	if log := d.logText(); !strings.Contains(log, "lists") || !strings.Contains(log, "target failed") {
		t.Errorf("the failure is not in the log:\n%s", log)
	}
	if err := e.mm.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "alice back on atlas-users once Mailman is back", func() bool {
		return strings.Contains(e.members(t, "atlas-users"), "alice.martin")
	})
	if got := e.members(t, "atlas-users"); strings.Count(got, "alice.martin") != 1 {
		t.Errorf("atlas-users: %s", got)
	}
	d.stop(t)
	e.writes.Store(0)
	e.sync(t)
	if n := e.writes.Load(); n != 0 {
		t.Errorf("a sync after recovery made %d REST writes", n)
	}
}
