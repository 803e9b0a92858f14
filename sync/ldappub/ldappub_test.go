package ldappub

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/internal/ldapconn"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

const base = "ou=published,dc=example,dc=org"

// search runs the real ldapsearch over the published subtree: the lines
// "dn" and attr of each entry, sorted.
func search(t *testing.T, s *slapd.Server, filter string, attrs ...string) []string {
	t.Helper()
	out, err := exec.Command("ldapsearch", append([]string{"-LLL", "-o", "ldif-wrap=no", "-Q", "-Y", "EXTERNAL", "-H", s.LDAPIURI, "-b", base, filter}, attrs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ldapsearch: %v: %s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

func run(t *testing.T, tg *Target, st *directory.State) *engine.Plan {
	t.Helper()
	p, err := enginetest.Run(context.Background(), tg, st)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPublishToSlapd publishes an evaluated state into a subtree of a
// real slapd that does not exist yet, then a membership change (one
// memberUid written, the other groups untouched), a user left out and a
// uid renamed; an entry under the base that collabsync did not make is
// never touched, and one in the way of a new entry is an error naming it.
func TestPublishToSlapd(t *testing.T) {
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}, NoSyncprov: true})
	set := Kind().NewSettings().(*Settings)
	set.URL, set.TLS, set.BindDN, set.PasswordFile, set.BaseDN = s.URI, "none", s.RootDN, s.RootPWFile, base
	if probs := set.Validate(); len(probs) > 0 {
		t.Fatalf("settings: %v", probs)
	}
	tg := New("published", set, engine.Env{})
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	users := map[string]*directory.User{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		users[u] = &directory.User{UID: u, Name: strings.ToUpper(u[:1]) + u[1:], Home: "/home/" + u, Shell: "/bin/bash"}
	}
	collabs := map[string][]string{"atlas": {"alice", "bob"}, "cms": {"carol"}, "lsst": {"dave"}}
	state := func() *directory.State {
		var us []*directory.User
		for _, name := range []string{"alice", "bob", "carla", "carol", "dave", "erin"} {
			if u, ok := users[name]; ok {
				c := *u
				us = append(us, &c)
			}
		}
		var cs []directory.Collaboration
		for _, name := range []string{"atlas", "cms", "lsst"} {
			cs = append(cs, directory.Collaboration{Name: name, Members: slices.Sorted(slices.Values(collabs[name]))})
		}
		return directorytest.Centre(now, us, cs)
	}
	run(t, tg, state())
	if got := search(t, s, "(objectClass=posixAccount)", "uid"); len(got) != 8 || !slices.Contains(got, "uid: alice") {
		t.Fatalf("users published: %q", got)
	}
	if got := search(t, s, "(cn=atlas)", "memberUid"); !slices.Equal(got, []string{"dn: cn=atlas,ou=groups," + base, "memberUid: alice", "memberUid: bob"}) {
		t.Fatalf("atlas: %q", got)
	}
	// A group an administrator made by hand under the base: never touched.
	if err := s.Add(context.Background(), "dn: cn=byhand,ou=groups,"+base+"\nobjectClass: posixGroup\ncn: byhand\ngidNumber: 4242\nmemberUid: zed\n"); err != nil {
		t.Fatal(err)
	}
	csn := func(cn string) []string { return search(t, s, "(cn="+cn+")", "entryCSN") }
	cmsBefore := csn("cms")

	// dave joins atlas: one memberUid added; cms untouched.
	collabs["atlas"] = append(collabs["atlas"], "dave")
	if p := run(t, tg, state()); len(p.Changes) != 1 || p.Changes[0].Key != "atlas dave" {
		t.Fatalf("the plan of a membership: %+v", p.Changes)
	}
	if got := search(t, s, "(cn=atlas)", "memberUid"); !slices.Contains(got, "memberUid: dave") {
		t.Errorf("atlas after dave joined: %q", got)
	}
	if after := csn("cms"); !slices.Equal(cmsBefore, after) {
		t.Errorf("cms was written by a change to atlas: %q → %q", cmsBefore, after)
	}
	// carol renamed carla; bob leaves every collaboration (left out).
	users["carla"] = users["carol"]
	users["carla"].UID = "carla"
	delete(users, "carol")
	collabs["cms"] = []string{"carla"}
	collabs["atlas"] = []string{"alice", "dave"}
	run(t, tg, state())
	got := search(t, s, "(objectClass=posixAccount)", "uid")
	if slices.Contains(got, "uid: carol") || !slices.Contains(got, "uid: carla") || slices.Contains(got, "uid: bob") {
		t.Errorf("after the rename and bob leaving: %q", got)
	}
	if got := search(t, s, "(cn=cms)", "memberUid"); !slices.Contains(got, "memberUid: carla") || slices.Contains(got, "memberUid: carol") {
		t.Errorf("cms after the rename: %q", got)
	}
	if got := search(t, s, "(cn=byhand)", "memberUid"); !slices.Equal(got, []string{"dn: cn=byhand,ou=groups," + base, "memberUid: zed"}) {
		t.Errorf("the group made by hand: %q", got)
	}
	// erin is new, but an entry made by hand already holds her DN.
	if err := s.Add(context.Background(), "dn: uid=erin,ou=people,"+base+"\nobjectClass: account\nuid: erin\n"); err != nil {
		t.Fatal(err)
	}
	users["erin"] = &directory.User{UID: "erin", Name: "Erin", Home: "/home/erin", Shell: "/bin/sh"}
	collabs["lsst"] = []string{"dave", "erin"}
	p, err := enginetest.Plan(context.Background(), tg, state())
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Apply(context.Background(), p); err == nil || !strings.Contains(err.Error(), "uid=erin,ou=people,"+base) || !strings.Contains(err.Error(), "not collabsync's") {
		t.Errorf("a new user whose DN is taken: %v", err)
	}
}

// TestPublishTLSVerified: StartTLS (the default) and ldaps:// verify the
// server's certificate: with the CA that signed it the target reads and
// writes, without it (the system's roots) it refuses before binding.
func TestPublishTLSVerified(t *testing.T) {
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, NoSyncprov: true, TLS: true,
		Schemas: []string{mustAbs(t, "../../configs/ldap/collabsync.ldif")}})
	st := directorytest.Centre(time.Now(), []*directory.User{{UID: "alice", Name: "Alice", Home: "/home/alice", Shell: "/bin/sh"}},
		[]directory.Collaboration{{Name: "atlas", Members: []string{"alice"}}})
	for _, tc := range []struct {
		name, url, ca, err string
	}{
		{"starttls, the CA given", s.URI, s.Certs.CA, ""},
		{"ldaps, the CA given", s.LDAPSURI, s.Certs.CA, ""},
		{"starttls, system roots", s.URI, "", "certificate"},
		{"ldaps, system roots", s.LDAPSURI, "", "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := Kind().NewSettings().(*Settings)
			set.URL, set.CAFile, set.BindDN, set.PasswordFile, set.BaseDN = tc.url, tc.ca, s.RootDN, s.RootPWFile, base
			if set.TLS != "starttls" {
				t.Fatalf("the default tls is %q", set.TLS)
			}
			if probs := set.Validate(); len(probs) > 0 {
				t.Fatal(probs)
			}
			tg := New("published", set, engine.Env{})
			p, err := enginetest.Plan(context.Background(), tg, st)
			if err == nil {
				err = tg.Apply(context.Background(), p)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("err %v, want one saying %q", err, tc.err)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCheckSource: a base inside, equal to or above a search base of the
// directory collabsync reads, on the same server, is refused; elsewhere
// on it, or on another server, it is not.
func TestCheckSource(t *testing.T) {
	uris := []string{"ldap://LDAP.example.org", "ldaps://ldap2.example.org:1636"}
	bases := []string{"ou=people,dc=example,dc=org", "ou=groups,dc=example,dc=org"}
	for _, tc := range []struct {
		url, base string
		refused   bool
	}{
		{"ldap://ldap.example.org:389", "ou=hpc,ou=people,dc=example,dc=org", true},
		{"ldap://ldap.example.org", "OU=Groups,DC=example,DC=org", true},
		{"ldaps://ldap2.example.org:1636", "dc=example,dc=org", true},
		{"ldap://ldap.example.org", "ou=hpc,dc=example,dc=org", false},
		{"ldap://replica.example.org", "ou=hpc,ou=people,dc=example,dc=org", false},
	} {
		s := &Settings{Settings: ldapconn.Settings{URL: tc.url}, BaseDN: tc.base}
		if got := len(s.CheckSource(uris, bases)) > 0; got != tc.refused {
			t.Errorf("%s %s: refused %v, want %v", tc.url, tc.base, got, tc.refused)
		}
	}
}

// generation is a fence held at a generation for a number of checks
// (-1: always).
type generation struct {
	gen    uint64
	checks int
}

func (g *generation) Held() (uint64, error) {
	if g.checks == 0 {
		return 0, errors.New("lease lost")
	}
	g.checks--
	return g.gen, nil
}

// TestPublishFenced: under an HA pair's lease the generation is written
// on the base entry with each apply; an apply of an older generation (a
// former leader, paused past its lease) writes nothing; a lease lost in
// the middle of an apply starts no further write.
func TestPublishFenced(t *testing.T) {
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}, NoSyncprov: true})
	set := Kind().NewSettings().(*Settings)
	set.URL, set.TLS, set.BindDN, set.PasswordFile, set.BaseDN = s.URI, "none", s.RootDN, s.RootPWFile, base
	tg := New("published", set, engine.Env{})
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var users []*directory.User
	members := []string{}
	for i := range 40 {
		uid := fmt.Sprintf("u%02d", i)
		users = append(users, &directory.User{UID: uid, Name: uid, Home: "/home/" + uid, Shell: "/bin/bash"})
	}
	state := func() *directory.State {
		var us []*directory.User
		for _, u := range users {
			c := *u
			us = append(us, &c)
		}
		var cs []directory.Collaboration
		for i := range 20 {
			cs = append(cs, directory.Collaboration{Name: fmt.Sprintf("g%02d", i), Members: slices.Clone(members)})
		}
		return directorytest.Centre(now, us, cs)
	}
	apply := func(f engine.Fence) error {
		p, err := enginetest.Plan(context.Background(), tg, state())
		if err != nil {
			t.Fatal(err)
		}
		return tg.Apply(engine.WithFence(context.Background(), f), p)
	}
	baseGen := func() []string {
		out, err := exec.Command("ldapsearch", "-LLL", "-Q", "-Y", "EXTERNAL", "-H", s.LDAPIURI, "-s", "base", "-b", base, "csLeaseGeneration").CombinedOutput()
		if err != nil {
			t.Fatalf("ldapsearch: %v: %s", err, out)
		}
		return strings.Fields(strings.ReplaceAll(string(out), "\n", " "))
	}
	if err := apply(&generation{gen: 5, checks: -1}); err != nil {
		t.Fatal(err)
	}
	if got := baseGen(); !slices.Contains(got, "csLeaseGeneration:") || got[len(got)-1] != "5" {
		t.Fatalf("base after generation 5: %q", got)
	}
	members = []string{"u01"}
	err := apply(&generation{gen: 4, checks: -1})
	if err == nil || !strings.Contains(err.Error(), "a newer lease generation than this process's (4) has written here") {
		t.Fatalf("generation 4 after 5: %v", err)
	}
	if got := search(t, s, "(memberUid=u01)", "cn"); len(got) != 0 {
		t.Fatalf("generation 4 wrote: %q", got)
	}
	// The lease is lost after the fence and 3 writes (u01's account, then
	// two of the 20 memberships): no write starts after.
	lost := &generation{gen: 6, checks: 4}
	err = apply(lost)
	if err == nil || !strings.Contains(err.Error(), "lease lost") {
		t.Fatalf("lease lost mid-apply: %v", err)
	}
	if got := search(t, s, "(|(uid=u01)(memberUid=u01))", "cn"); len(got) != 2*3 {
		t.Errorf("lease lost after 3 writes, yet %d entries written: %q", len(got)/2, got)
	}
	if err := apply(&generation{gen: 6, checks: -1}); err != nil {
		t.Fatal(err)
	}
	if got := search(t, s, "(memberUid=u01)", "cn"); len(got) != 2*20 {
		t.Errorf("generation 6: %d of 20 groups written", len(got)/2)
	}
	if got := baseGen(); got[len(got)-1] != "6" {
		t.Fatalf("base after generation 6: %q", got)
	}
}
