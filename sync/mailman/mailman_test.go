package mailman

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/internal/testharness/mailman"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

// state evaluates users and collaborations: every user internal; users
// in no active collaboration stay pending.
func state(t *testing.T, users []*directory.User, collabs []directory.Collaboration) *directory.State {
	t.Helper()
	return directorytest.Centre(time.Now(), users, collabs)
}

func user(uid string, optOuts ...string) *directory.User {
	return &directory.User{UID: uid, Mail: uid + "@example.org", OptOuts: optOuts}
}

func collab(name string, members []string, contacts ...string) directory.Collaboration {
	return directory.Collaboration{Name: name, Members: members, Contacts: map[directory.Role][]string{directory.RoleCollaboration: contacts}}
}

func settings(s *mailman.Server) *Settings {
	return &Settings{URL: s.URL, User: s.User, PasswordFile: s.PasswordFile, Timeout: duration.Duration(10 * time.Second),
		Domain: "lists.example.org", ListName: "{collaboration}", AllUsers: "hpc-users", Contacts: "hpc-contacts",
		Style: "private-default", ListSettings: map[string]string{"description": "managed by collabsync"},
		Inactive: InactiveEmpty, Foreign: ForeignKeep}
}

// counter counts REST calls by result, and the writes among them.
type counter struct{ calls, writes atomic.Int64 }

func (c *counter) env() engine.Env {
	return engine.Env{Call: func(string) { c.calls.Add(1) }}
}

// run plans and applies as the engine does, reading the lists whole.
func run(t *testing.T, tg *Target, st *directory.State) *engine.Plan {
	t.Helper()
	p, err := enginetest.Run(context.Background(), tg, st)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func members(t *testing.T, s *mailman.Server, id string) string {
	t.Helper()
	m, err := s.Members(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(m, ",")
}

// TestAgainstMailman: against a real Mailman core, the lists are created
// with their members (opt-outs honoured, inactive users left out), a
// second run changes nothing, a hand-made list and a foreign member are
// untouched, a member leaving is unsubscribed, and a collaboration that
// stops being active has its list emptied (or removed when configured).
func TestAgainstMailman(t *testing.T) {
	ctx := context.Background()
	s := mailman.StartT(t)
	// Made by hand: a list outside the domain, and one inside it with a
	// member from outside the directory.
	for _, l := range []string{"staff@other.example.org", "atlas@lists.example.org"} {
		if err := s.CreateList(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range [][2]string{{"staff.other.example.org", "alice@example.org"}, {"atlas.lists.example.org", "visitor@elsewhere.net"}} {
		if err := s.Subscribe(ctx, m[0], m[1]); err != nil {
			t.Fatal(err)
		}
	}
	users := []*directory.User{user("alice"), user("bob", "hpc-users"), user("carol", "atlas"), user("dave")}
	users[3].Suspended = true
	collabs := []directory.Collaboration{collab("atlas", []string{"alice", "bob", "carol", "dave"}, "alice"), collab("cms", []string{"bob"}, "bob")}
	var n counter
	tg := New("lists", settings(s), n.env())
	p := run(t, tg, state(t, users, collabs))
	if add, mod, del := p.Counts(); del != 0 || mod != 0 || add == 0 {
		t.Errorf("first plan: %d adds, %d modifies, %d deletes\n%+v", add, mod, del, p.Changes)
	}
	for id, want := range map[string]string{
		"atlas.lists.example.org":        "alice@example.org,bob@example.org,visitor@elsewhere.net",
		"cms.lists.example.org":          "bob@example.org",
		"hpc-users.lists.example.org":    "alice@example.org,carol@example.org",
		"hpc-contacts.lists.example.org": "alice@example.org,bob@example.org",
		"staff.other.example.org":        "alice@example.org",
	} {
		if got := members(t, s, id); got != want {
			t.Errorf("%s = %s, want %s", id, got, want)
		}
	}
	cfg, err := s.Get(ctx, "/3.1/lists/cms.lists.example.org/config")
	if err != nil || !strings.Contains(string(cfg), `"description": "managed by collabsync"`) {
		t.Errorf("list settings not applied: %v %s", err, cfg)
	}

	// A second run: the same state, no change, and no write.
	before := n.calls.Load()
	if p := run(t, New("lists", settings(s), n.env()), state(t, users, collabs)); len(p.Changes) != 0 {
		t.Errorf("second plan: %+v", p.Changes)
	}
	t.Logf("first run %d REST calls, second (a full read) %d", before, n.calls.Load()-before)

	// bob leaves atlas; cms stops being active: its list is emptied.
	collabs[0].Members = []string{"alice", "carol", "dave"}
	collabs[1].Status = directory.StatusSuspended
	p = run(t, tg, state(t, users, collabs))
	if got := members(t, s, "atlas.lists.example.org"); got != "alice@example.org,visitor@elsewhere.net" {
		t.Errorf("atlas after bob left = %s", got)
	}
	if got := members(t, s, "cms.lists.example.org"); got != "" {
		t.Errorf("cms after it stopped = %s", got)
	}
	if lists, _ := s.Lists(ctx); !slices.Contains(lists, "cms.lists.example.org") {
		t.Errorf("cms's list removed under inactive: empty: %v", lists)
	}
	// bob is in no active collaboration: pending, off the all-users list
	// (he had opted out anyway) and the contacts' list.
	if got := members(t, s, "hpc-contacts.lists.example.org"); got != "alice@example.org" {
		t.Errorf("contacts = %s", got)
	}

	// inactive: remove removes the list; the hand-made list elsewhere stays.
	rs := settings(s)
	rs.Inactive = InactiveRemove
	run(t, New("lists", rs, n.env()), state(t, users, collabs))
	lists, _ := s.Lists(ctx)
	if slices.Contains(lists, "cms.lists.example.org") || !slices.Contains(lists, "staff.other.example.org") {
		t.Errorf("lists after remove: %v", lists)
	}
	// foreign_members: remove takes the visitor off.
	rs.Foreign = ForeignRemove
	run(t, New("lists", rs, n.env()), state(t, users, collabs))
	if got := members(t, s, "atlas.lists.example.org"); got != "alice@example.org" {
		t.Errorf("atlas with foreign_members: remove = %s", got)
	}
}

// TestMailmanFailures: Mailman answering 500 for a while, then stopped:
// the apply fails naming the request, and once Mailman is back a run
// applies everything with no duplicate subscription.
func TestMailmanFailures(t *testing.T) {
	ctx := context.Background()
	s := mailman.StartT(t)
	backend, _ := url.Parse(s.URL)
	var failing atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/members") {
			http.Error(w, `{"title": "500 Internal Server Error"}`, http.StatusInternalServerError)
			return
		}
		proxy := httputil.NewSingleHostReverseProxy(backend)
		proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
		proxy.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	st := settings(s)
	st.URL = proxy.URL
	results := map[string]int{}
	env := engine.Env{Call: func(r string) { results[r]++ }}
	users := []*directory.User{user("alice"), user("bob")}
	collabs := []directory.Collaboration{collab("atlas", []string{"alice", "bob"}, "alice")}

	tg := New("lists", st, env)
	failing.Store(true)
	p, err := enginetest.Plan(ctx, tg, state(t, users, collabs))
	if err != nil {
		t.Fatal(err)
	}
	err = tg.Apply(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "POST /members") {
		t.Fatalf("apply while Mailman fails: %v", err)
	}
	if results["500"] == 0 {
		t.Errorf("500s not counted: %v", results)
	}
	// Stopped: no answer at all.
	failing.Store(false)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := enginetest.Plan(ctx, tg, state(t, users, collabs)); err == nil || results["502"]+results["error"] == 0 {
		t.Fatalf("read while Mailman is stopped: %v (%v)", err, results)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	run(t, tg, state(t, users, collabs))
	for id, want := range map[string]string{"atlas.lists.example.org": "alice@example.org,bob@example.org",
		"hpc-users.lists.example.org": "alice@example.org,bob@example.org"} {
		if got := members(t, s, id); got != want {
			t.Errorf("%s = %s, want %s", id, got, want)
		}
	}
	if p := run(t, tg, state(t, users, collabs)); len(p.Changes) != 0 {
		t.Errorf("after recovery: %+v", p.Changes)
	}
}

func TestSettings(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	ok := func() *Settings {
		s := Kind().NewSettings().(*Settings)
		s.URL, s.PasswordFile, s.Domain = "https://lists.example.org:8001", pw, "lists.example.org"
		return s
	}
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		keys string
	}{
		{"defaults", func(*Settings) {}, ""},
		{"no url", func(s *Settings) { s.URL = "lists.example.org" }, "url"},
		{"no password", func(s *Settings) { s.PasswordFile = "" }, "password_file"},
		{"password file missing", func(s *Settings) { s.PasswordFile = "/nonexistent/pw" }, "password_file"},
		{"password file empty", func(s *Settings) { s.PasswordFile = empty }, "password_file"},
		{"zero timeout", func(s *Settings) { s.Timeout = 0 }, "timeout"},
		{"domain", func(s *Settings) { s.Domain = "Lists Example" }, "domain"},
		{"template", func(s *Settings) { s.ListName = "users" }, "list_name"},
		{"prefix", func(s *Settings) { s.Prefix, s.ListName = "hpc-", "{collaboration}-users" }, "list_name"},
		{"list name", func(s *Settings) { s.AllUsers = "all users" }, "all_users"},
		{"inactive", func(s *Settings) { s.Inactive = "delete" }, "inactive"},
		{"foreign", func(s *Settings) { s.Foreign = "drop" }, "foreign_members"},
	} {
		s := ok()
		tc.edit(s)
		var keys []string
		for _, p := range s.Validate() {
			keys = append(keys, p.Key)
		}
		if strings.Join(keys, ",") != tc.keys {
			t.Errorf("%s: problems %v, want %q", tc.name, s.Validate(), tc.keys)
		}
	}
}

func TestOptedOut(t *testing.T) {
	for _, tc := range []struct {
		optOuts []string
		want    bool
	}{
		{[]string{"atlas-users"}, true},
		{[]string{"ATLAS-users@lists.example.org"}, true},
		{[]string{"atlas-users.lists.example.org"}, true},
		{[]string{"atlas"}, false},
		{[]string{"atlas-users@other.example.org"}, false},
		{nil, false},
	} {
		if got := optedOut(tc.optOuts, "atlas-users.lists.example.org", "lists.example.org"); got != tc.want {
			t.Errorf("optedOut(%v) = %v", tc.optOuts, got)
		}
	}
}

// TestListNames: one rule decides which lists the target manages, for
// creating and reading alike: a template name it would not read back is
// left out and noted with the DN (before: created, then never read, so a
// removed member stayed subscribed); a collaboration may not name another
// collaboration's list or the contacts list (before: its members joined
// them); the documented local@domain form is taken.
func TestListNames(t *testing.T) {
	s := Kind().NewSettings().(*Settings)
	s.URL, s.Domain, s.Contacts = "http://127.0.0.1:1", "lists.example.org", "hpc-contacts"
	tg := New("lists", s, engine.Env{})
	alice := directory.UserState{User: &directory.User{UID: "alice", Mail: "alice@example.org"}, Status: directory.StatusActive}
	collab := func(name string, lists ...string) directory.CollaborationState {
		return directory.CollaborationState{Collaboration: &directory.Collaboration{DN: "cn=" + name + ",ou=groups", Name: name, Lists: lists},
			Provisioned: true, ActiveMembers: []string{"alice"}}
	}
	st := &directory.State{Users: []directory.UserState{alice}, Collaborations: []directory.CollaborationState{
		collab("_under"),
		collab("atlas", "cms"),
		collab("cms"),
		collab("lsst", "lsst-news@lists.example.org", "hpc-contacts"),
		collab("hpc-contacts"), // named as the contacts' list
	}}
	recs, err := tg.Desired(st)
	if err != nil {
		t.Fatal(err)
	}
	var lists []string
	for _, r := range recs {
		if r.Kind == KindList {
			lists = append(lists, r.Key)
		}
	}
	if want := []string{"cms.lists.example.org", "hpc-contacts.lists.example.org", "lsst-news.lists.example.org"}; !slices.Equal(lists, want) {
		t.Errorf("lists %v, want %v", lists, want)
	}
	notes := strings.Join(tg.Notes(), "\n")
	for _, want := range []string{
		`cn=_under,ou=groups: list_name makes "_under.lists.example.org" of it, which is no list name this target manages; left out`,
		`cn=atlas,ou=groups: names "cms", which is collaboration cms's list: its members would join it; left out`,
		`cn=lsst,ou=groups: names "hpc-contacts", which is the list of all contacts: its members would join it; left out`,
		`cn=hpc-contacts,ou=groups: list_name makes "hpc-contacts.lists.example.org" of it, which is the list of all contacts: its members would join it; left out`,
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

// TestCollaborationNamedAsASpecialList: a collaboration whose name makes
// the contacts' list of it is refused it: its members do not join the
// contacts' list.
func TestCollaborationNamedAsASpecialList(t *testing.T) {
	s := Kind().NewSettings().(*Settings)
	s.URL, s.Domain, s.Contacts = "http://127.0.0.1:1", "lists.example.org", "hpc-contacts"
	tg := New("lists", s, engine.Env{})
	st := state(t, []*directory.User{user("alice"), user("bob")},
		[]directory.Collaboration{collab("atlas", []string{"alice"}, "alice"), collab("hpc-contacts", []string{"alice", "bob"}, "alice")})
	recs, err := tg.Desired(st)
	if err != nil {
		t.Fatal(err)
	}
	var contacts []string
	for _, r := range recs {
		if list, addr, _ := strings.Cut(r.Key, " "); r.Kind == KindMember && list == "hpc-contacts.lists.example.org" {
			contacts = append(contacts, addr)
		}
	}
	if want := []string{"alice@example.org"}; !slices.Equal(contacts, want) {
		t.Errorf("contacts' list %v, want %v", contacts, want)
	}
	if notes := strings.Join(tg.Notes(), "\n"); !strings.Contains(notes, "which is the list of all contacts") {
		t.Errorf("notes do not say why hpc-contacts has no list:\n%s", notes)
	}
}
