package directory

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func basePolicy() Policy {
	return Policy{
		Now: now, ReviewGrace: 30 * 24 * time.Hour, ReviewWarning: 30 * 24 * time.Hour,
		ProductionSeparator: "_", ProductionLabel: regexp.MustCompile(`^[a-z0-9]{1,16}$`),
	}
}

// fixture builds snapshots tersely: every user gets a mail in the member
// domain unless a test says otherwise; every collaboration is an active
// scientific one with alice as its collaboration contact.
type fixture struct{ snap Snapshot }

func (f *fixture) user(uid string, edit ...func(*User)) *fixture {
	u := User{DN: "uid=" + uid + ",ou=people", UID: uid, UIDNumber: uint32(10000 + len(f.snap.Users)), GIDNumber: 100, Mail: uid + "@lab.example.org"}
	for _, e := range edit {
		e(&u)
	}
	f.snap.Users = append(f.snap.Users, &u)
	return f
}

func (f *fixture) collab(name string, members []string, edit ...func(*Collaboration)) *fixture {
	c := Collaboration{DN: "cn=" + name + ",ou=groups", Name: name, GIDNumber: uint32(20000 + len(f.snap.Collaborations)),
		Members: members, Kind: KindScientific, Status: StatusActive,
		Contacts: map[Role][]string{RoleCollaboration: {"alice"}}}
	for _, e := range edit {
		e(&c)
	}
	f.snap.Collaborations = append(f.snap.Collaborations, &c)
	return f
}

func (f *fixture) production(name, owner string) *fixture {
	f.snap.ProductionAccounts = append(f.snap.ProductionAccounts, ProductionAccount{
		DN: "uid=" + name + ",ou=production", Name: name, UIDNumber: uint32(30000 + len(f.snap.ProductionAccounts)), GIDNumber: 100, Collaboration: owner})
	return f
}

func newFixture() *fixture { return &fixture{} }

func admin(c *Collaboration)     { c.Kind = KindAdministrative }
func noContact(c *Collaboration) { c.Contacts = nil }

func status(t *testing.T, st *State, uid string) Status {
	t.Helper()
	u, ok := st.User(uid)
	if !ok {
		t.Fatalf("no user %s", uid)
	}
	return u.Status
}

// kinds lists the violations, but for the primary group warnings every
// fixture user's gid 100 makes (TestPrimaryGroups' own).
func kinds(st *State) string {
	var out []string
	for _, v := range st.Violations {
		if v.Kind != KindPrimaryGroup {
			out = append(out, string(v.Kind)+":"+v.Name)
		}
	}
	return strings.Join(out, " ")
}

func withActions(p Policy, kind ViolationKind, action Action) Policy {
	p.Actions = map[ViolationKind]Action{kind: action}
	return p
}

// Rule 1: at most one administrative collaboration per user.
func TestRule1OneAdministrativeCollaboration(t *testing.T) {
	snap := newFixture().user("alice").user("bob").
		collab("lab1", []string{"alice", "bob"}, admin).
		collab("lab2", []string{"bob"}, admin).
		collab("lab3", []string{"alice"}, admin, func(c *Collaboration) { c.Status = StatusClosed }).snap
	tests := []struct {
		name       string
		action     Action
		prev       Previous
		wantBob    Status
		wantHeld   bool
		violations string
	}{
		{"hold keeps a provisioned user active", ActionHold, Previous{"user/bob": {Status: StatusActive}}, StatusActive, true, "multiple_administrative:bob"},
		{"hold never grants access", ActionHold, nil, StatusPending, true, "multiple_administrative:bob"},
		{"exclude leaves the user out", ActionExclude, Previous{"user/bob": {Status: StatusActive}}, StatusPending, false, "multiple_administrative:bob"},
		{"report only lists it", ActionReport, nil, StatusActive, false, "multiple_administrative:bob"},
		{"off does not check", ActionOff, nil, StatusActive, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Evaluate(&snap, withActions(basePolicy(), KindMultipleAdmin, tt.action), tt.prev)
			bob, _ := st.User("bob")
			if bob.Status != tt.wantBob || bob.Held != tt.wantHeld {
				t.Errorf("bob: %s held=%v, want %s held=%v", bob.Status, bob.Held, tt.wantBob, tt.wantHeld)
			}
			// alice is in one open and one closed administrative collaboration: fine.
			if status(t, st, "alice") != StatusActive {
				t.Errorf("alice: %s", status(t, st, "alice"))
			}
			if got := kinds(st); got != tt.violations {
				t.Errorf("violations %q, want %q", got, tt.violations)
			}
		})
	}
	st := Evaluate(&snap, basePolicy(), nil)
	if v := st.Violations[0]; !strings.Contains(v.Reason, "2 administrative collaborations (lab1, lab2)") || v.Subject != "uid=bob,ou=people" {
		t.Errorf("violation = %+v", v)
	}
}

// Rule 2: active only while a member of at least one active collaboration;
// suspended is suspended.
func TestRule2ActiveOnlyInActiveCollaboration(t *testing.T) {
	snap := newFixture().user("alice").user("pat").user("nora").user("sam", func(u *User) { u.Suspended = true }).user("eve").
		collab("active1", []string{"alice", "sam"}).
		collab("pending1", []string{"pat", "eve"}, func(c *Collaboration) { c.Status = StatusPending }).
		collab("suspended1", []string{"eve"}, func(c *Collaboration) { c.Status = StatusSuspended }).
		collab("expired1", []string{"eve"}, func(c *Collaboration) { c.ReviewedUntil = now.AddDate(-1, 0, 0) }).snap
	st := Evaluate(&snap, basePolicy(), nil)
	for uid, want := range map[string]Status{"alice": StatusActive, "pat": StatusPending, "nora": StatusPending, "sam": StatusSuspended, "eve": StatusPending} {
		if got := status(t, st, uid); got != want {
			t.Errorf("%s: %s, want %s", uid, got, want)
		}
	}
	c, _ := st.Collaboration("active1")
	if !reflect.DeepEqual(c.ActiveMembers, []string{"alice"}) {
		t.Errorf("active1 active members = %v (suspended sam must not be one)", c.ActiveMembers)
	}
}

// Rule 3: a collaboration is active while its review is current, plus the
// grace period; warnings come before.
func TestRule3YearlyReview(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name      string
		until     time.Time
		tracked   bool
		want      Status
		violation ViolationKind
	}{
		{"far in the future", now.Add(200 * day), true, StatusActive, ""},
		{"due within the warning period", now.Add(10 * day), true, StatusActive, "review_due_soon"},
		{"overdue but within grace", now.Add(-10 * day), true, StatusActive, "review_due_soon"},
		{"overdue past grace", now.Add(-31 * day), true, StatusExpired, "review_overdue"},
		{"no date while reviews are tracked", time.Time{}, true, StatusExpired, "review_overdue"},
		{"no date, reviews not tracked", time.Time{}, false, StatusActive, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := newFixture().user("alice").collab("p", []string{"alice"}, func(c *Collaboration) { c.ReviewedUntil = tt.until }).snap
			p := basePolicy()
			p.ReviewTracked = tt.tracked
			st := Evaluate(&snap, p, nil)
			c, _ := st.Collaboration("p")
			if c.Status != tt.want || c.Provisioned != (tt.want == StatusActive) {
				t.Errorf("status %s provisioned %v, want %s", c.Status, c.Provisioned, tt.want)
			}
			var got ViolationKind
			for _, v := range st.Violations {
				if v.Kind == KindPrimaryGroup {
					continue
				}
				got = v.Kind
				if v.Kind == KindReviewDueSoon && v.Severity != SeverityWarning {
					t.Errorf("due-soon is not a warning: %+v", v)
				}
			}
			if got != tt.violation {
				t.Errorf("violation %q, want %q", got, tt.violation)
			}
			// The member follows: an expired collaboration's only member is pending.
			if want := map[bool]Status{true: StatusActive, false: StatusPending}[tt.want == StatusActive]; status(t, st, "alice") != want {
				t.Errorf("alice %s, want %s", status(t, st, "alice"), want)
			}
		})
	}
}

// Rule 4: external users need validation by a validator contact; e-mail
// domains outside the institutional list are rejected.
func TestRule4ExternalUsers(t *testing.T) {
	ext := func(mail string) func(*User) { return func(u *User) { u.Mail = mail } }
	validated := func(by string) func(*User) { return func(u *User) { u.ValidatedBy = by } }
	snap := newFixture().
		user("alice").
		user("ivan", ext("ivan@cern.example.ch"), validated("alice")).
		user("oscar", ext("oscar@uni.example.es")).
		user("olga", ext("olga@uni.example.es"), validated("bob")).
		user("bob").
		user("mal", ext("mal@gmail.example.com"), validated("alice")).
		user("sub", ext("sub@physics.cern.example.ch"), validated("alice")).
		user("aff", ext("aff@uni.example.es"), func(u *User) { u.Affiliation = "LAB" }).
		user("nomail", ext("")).
		collab("p", []string{"alice", "ivan", "oscar", "olga", "bob", "mal", "sub", "aff", "nomail"}, func(c *Collaboration) {
			c.Contacts = map[Role][]string{RoleCollaboration: {"alice", "bob"}, RoleValidator: {"alice"}}
		}).snap
	p := basePolicy()
	p.MemberDomains = []string{"lab.example.org"}
	p.MemberAffiliations = []string{"lab"}
	p.AcceptedDomains = []string{"cern.example.ch", "uni.example.es"}
	st := Evaluate(&snap, p, nil)
	want := map[string]Status{
		"alice": StatusActive, "bob": StatusActive, // internal
		"ivan":   StatusActive,  // external, validated by a validator
		"sub":    StatusActive,  // subdomain of an accepted domain
		"aff":    StatusActive,  // internal by affiliation
		"oscar":  StatusPending, // external, not validated
		"olga":   StatusPending, // validated by someone who is not a validator
		"mal":    StatusPending, // non-institutional domain
		"nomail": StatusPending,
	}
	for uid, w := range want {
		if got := status(t, st, uid); got != w {
			t.Errorf("%s: %s, want %s", uid, got, w)
		}
	}
	wantViolations := "mail_domain:mal mail_domain:nomail unvalidated_external:nomail unvalidated_external:olga unvalidated_external:oscar"
	if got := kinds(st); got != wantViolations {
		t.Errorf("violations:\n %s\nwant\n %s", got, wantViolations)
	}
	for _, v := range st.Violations {
		if v.Name == "mal" && !strings.Contains(v.Reason, `e-mail domain "gmail.example.com" is not an institutional domain`) {
			t.Errorf("reason = %q", v.Reason)
		}
		if v.Name == "olga" && !strings.Contains(v.Reason, "validated by bob, who is not a validator contact") {
			t.Errorf("reason = %q", v.Reason)
		}
	}
	// A site without member institutions treats everyone as internal.
	if st := Evaluate(&snap, basePolicy(), nil); status(t, st, "oscar") != StatusActive || kinds(st) != "" {
		t.Errorf("no institution lists: oscar %s, violations %q", status(t, st, "oscar"), kinds(st))
	}
}

// Rule 5: every collaboration has a collaboration contact; computing,
// storage and collaboration contacts also hold the reporting role.
func TestRule5Contacts(t *testing.T) {
	snap := newFixture().user("alice").user("bob").user("carol").user("dave").
		collab("p", []string{"alice"}, func(c *Collaboration) {
			c.Contacts = map[Role][]string{RoleCollaboration: {"alice"}, RoleComputing: {"bob"}, RoleStorage: {"carol", "bob"}, RoleReporting: {"dave"}}
		}).
		collab("orphan", []string{"bob"}, noContact).snap
	st := Evaluate(&snap, basePolicy(), nil)
	p, _ := st.Collaboration("p")
	if got := p.Contacts[RoleReporting]; !reflect.DeepEqual(got, []string{"alice", "bob", "carol", "dave"}) {
		t.Errorf("reporting = %v", got)
	}
	if snap.Collaborations[0].Contacts[RoleReporting][0] != "dave" || len(snap.Collaborations[0].Contacts[RoleReporting]) != 1 {
		t.Errorf("the snapshot was modified: %v", snap.Collaborations[0].Contacts)
	}
	if got := kinds(st); got != "no_collaboration_contact:orphan" {
		t.Errorf("violations %q", got)
	}
	o, _ := st.Collaboration("orphan")
	if !o.Provisioned {
		t.Error("report action left the collaboration out")
	}
	st = Evaluate(&snap, withActions(basePolicy(), KindNoCollabContact, ActionExclude), nil)
	if o, _ := st.Collaboration("orphan"); o.Provisioned || status(t, st, "bob") != StatusPending {
		t.Errorf("exclude: orphan provisioned %v, bob %s", o.Provisioned, status(t, st, "bob"))
	}
}

// Rule 6: production accounts follow the naming syntax and their
// collaboration's state.
func TestRule6ProductionAccounts(t *testing.T) {
	snap := newFixture().user("alice").
		collab("atlas", []string{"alice"}).
		collab("old", []string{"alice"}, func(c *Collaboration) { c.Status = StatusClosed }).
		production("atlas", "atlas").
		production("atlas_transfer", "").       // owner from the name
		production("atlas_Bad-Label", "atlas"). // label syntax
		production("robot", "atlas").           // prefix syntax
		production("old_sync", "old").          // follows its closed collaboration
		production("ghost_x", "ghost").         // unknown owner
		production("nobody", "").snap
	st := Evaluate(&snap, basePolicy(), nil)
	want := map[string]bool{"atlas": true, "atlas_transfer": true, "atlas_Bad-Label": false, "robot": false, "old_sync": false, "ghost_x": false, "nobody": false}
	for _, p := range st.ProductionAccounts {
		if p.Active != want[p.Name] {
			t.Errorf("%s active=%v, want %v", p.Name, p.Active, want[p.Name])
		}
		if p.Name == "atlas_transfer" && p.Collaboration != "atlas" {
			t.Errorf("owner from name = %q", p.Collaboration)
		}
	}
	// "atlas" is the collaboration's own account: sharing the group's name is the syntax, not a clash.
	wantV := "production_name:atlas_Bad-Label production_name:robot production_owner:ghost_x production_owner:nobody"
	if got := kinds(st); got != wantV {
		t.Errorf("violations:\n %s\nwant\n %s", got, wantV)
	}
}

// Rule 7: uid/gid numbers and names unique across users, collaborations
// and production accounts.
func TestRule7Unique(t *testing.T) {
	snap := newFixture().
		user("alice").
		user("bob", func(u *User) { u.UIDNumber = 10000 }). // alice's uidNumber
		user("carol").
		user("carol", func(u *User) { u.DN = "cn=Carol Two,ou=people" }).
		user("dave").
		collab("p", []string{"alice", "bob", "carol", "dave"}).
		collab("q", []string{"dave"}, func(c *Collaboration) { c.GIDNumber = 20000 }). // p's gidNumber
		collab("dave", nil).                                                           // a user's name
		production("p_robot", "p").
		production("p_copy", "p").snap
	snap.ProductionAccounts[1].UIDNumber = snap.ProductionAccounts[0].UIDNumber
	st := Evaluate(&snap, basePolicy(), nil)
	for uid, want := range map[string]Status{"alice": StatusPending, "bob": StatusPending, "carol": StatusPending, "dave": StatusPending} {
		if got := status(t, st, uid); got != want {
			t.Errorf("%s: %s, want %s", uid, got, want)
		}
	}
	// Ordered by kind, then subject DN.
	wantV := "duplicate_id:p duplicate_id:q duplicate_id:alice duplicate_id:bob duplicate_id:p_copy duplicate_id:p_robot " +
		"duplicate_name:carol duplicate_name:dave duplicate_name:carol duplicate_name:dave"
	if got := kinds(st); got != wantV {
		t.Errorf("violations:\n %s\nwant\n %s", got, wantV)
	}
	for _, c := range st.Collaborations {
		if c.Provisioned {
			t.Errorf("%s provisioned despite a clash", c.Name)
		}
	}
	for _, v := range st.Violations {
		if v.Name == "bob" && v.Reason != "uidNumber 10000 is also used by uid=alice,ou=people" {
			t.Errorf("reason = %q", v.Reason)
		}
	}
	// With report, the clash is listed but nobody is left out.
	p := basePolicy()
	p.Actions = map[ViolationKind]Action{KindDuplicateID: ActionReport, KindDuplicateName: ActionReport}
	if st := Evaluate(&snap, p, nil); status(t, st, "alice") != StatusActive {
		t.Errorf("report: alice %s", status(t, st, "alice"))
	}
}

func TestMalformedEntriesAreViolations(t *testing.T) {
	snap := Snapshot{Problems: []Problem{{DN: "uid=x,ou=people", Reason: `uidNumber "abc" is not a number`}}}
	st := Evaluate(&snap, basePolicy(), nil)
	if len(st.Violations) != 1 || st.Violations[0].Kind != KindMalformedEntry || st.Violations[0].Subject != "uid=x,ou=people" {
		t.Errorf("violations = %+v", st.Violations)
	}
}

func TestEvaluateIsDeterministic(t *testing.T) {
	snap := newFixture().user("a").user("b", func(u *User) { u.UIDNumber = 10000 }).user("c", func(u *User) { u.UIDNumber = 10000 }).
		collab("x", []string{"a", "b", "c"}).collab("y", nil, func(c *Collaboration) { c.GIDNumber = 20000 }).snap
	first := Evaluate(&snap, basePolicy(), nil)
	for i := 0; i < 20; i++ {
		if again := Evaluate(&snap, basePolicy(), nil); !reflect.DeepEqual(first.Violations, again.Violations) {
			t.Fatalf("run %d differs:\n%v\n%v", i, first.Violations, again.Violations)
		}
	}
}

func TestStatusesRoundTrip(t *testing.T) {
	snap := newFixture().user("alice").user("bob").collab("p", []string{"alice"}).production("p_robot", "p").snap
	got := Evaluate(&snap, basePolicy(), nil).Statuses()
	want := Previous{
		"user/alice":         {Status: StatusActive, DN: "uid=alice,ou=people", ID: 10000},
		"user/bob":           {Status: StatusPending, DN: "uid=bob,ou=people", ID: 10001},
		"collaboration/p":    {Status: StatusActive, DN: "cn=p,ou=groups", ID: 20000},
		"production/p_robot": {Status: StatusActive, DN: "uid=p_robot,ou=production", ID: 30000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statuses = %v", got)
	}
}

// TestReservedNamesAndNumbers: the machine's own names and numbers, and
// numbers outside the ranges, are never provisioned, whatever the actions.
func TestReservedNamesAndNumbers(t *testing.T) {
	snap := newFixture().
		user("alice", func(u *User) { u.UIDNumber, u.GIDNumber = 10000, 20000 }).
		user("root", func(u *User) { u.UIDNumber, u.GIDNumber = 40011, 20000 }).
		user("lowuid", func(u *User) { u.UIDNumber, u.GIDNumber = 1, 20000 }).
		user("wheel", func(u *User) { u.UIDNumber, u.GIDNumber = 40012, 0 }). // root's group as primary group
		collab("p", []string{"alice", "root", "lowuid", "wheel"}).
		collab("sudo", []string{"alice"}, func(c *Collaboration) { c.GIDNumber = 20027 }).
		collab("shadowroot", []string{"alice"}, func(c *Collaboration) { c.GIDNumber = 42 }).
		collab("nogrp", []string{"alice"}, func(c *Collaboration) { c.GIDNumber = 65534 }).snap
	p := basePolicy()
	p.UIDRange, p.GIDRange = &IDRange{Min: 1000, Max: 60000}, &IDRange{Min: 1000, Max: 60000}
	p.Reserved = &Reserved{
		Names: map[string]string{"root": "/etc/passwd", "sudo": "/etc/group"},
		UIDs:  map[uint32]string{0: "root in /etc/passwd"},
		GIDs:  map[uint32]string{0: "root in /etc/group", 65534: "nogroup in /etc/group"},
	}
	p.Actions = map[ViolationKind]Action{KindDuplicateName: ActionReport} // no action lets a reserved subject in
	st := Evaluate(&snap, p, nil)
	if got := status(t, st, "alice"); got != StatusActive {
		t.Errorf("alice: %s", got)
	}
	for _, uid := range []string{"root", "lowuid", "wheel"} {
		if got := status(t, st, uid); got != StatusPending {
			t.Errorf("%s: %s, want pending (left out)", uid, got)
		}
	}
	for _, c := range st.Collaborations {
		if want := c.Name == "p"; c.Provisioned != want {
			t.Errorf("collaboration %s provisioned = %v", c.Name, c.Provisioned)
		}
	}
	reasons := map[string]string{}
	for _, v := range st.Violations {
		if v.Kind == KindReserved {
			reasons[v.Name] = v.Reason
			if v.Action != ActionExclude {
				t.Errorf("%s: action %s", v.Name, v.Action)
			}
		}
	}
	want := map[string]string{
		"root":       `name "root" is reserved (/etc/passwd)`,
		"lowuid":     "uidNumber 1 is outside rules.uid_range 1000-60000",
		"wheel":      "primary gidNumber 0 is reserved (root in /etc/group)",
		"sudo":       `name "sudo" is reserved (/etc/group)`,
		"shadowroot": "gidNumber 42 is outside rules.gid_range 1000-60000",
		"nogrp":      "gidNumber 65534 is reserved (nogroup in /etc/group)",
	}
	if !reflect.DeepEqual(reasons, want) {
		t.Errorf("reasons:\n got %v\nwant %v", reasons, want)
	}
}

// TestIncumbentKeepsItsNameAndNumber: a new entry taking a provisioned
// user's uidNumber, a provisioned collaboration's gidNumber, or a
// provisioned user's very uid does not revoke them: the newcomer is left
// out, the incumbent is held. Without history, both are left out.
func TestIncumbentKeepsItsNameAndNumber(t *testing.T) {
	before := newFixture().user("alice").user("bob").collab("p", []string{"alice", "bob"}).collab("q", []string{"bob"}).snap
	prev := Evaluate(&before, basePolicy(), nil).Statuses()

	after := newFixture().user("alice").user("bob").
		user("mallory", func(u *User) { u.UIDNumber = 10000 }).                         // alice's uidNumber
		user("bob", func(u *User) { u.DN = "uid=bob,ou=guests"; u.UIDNumber = 10500 }). // bob's uid, another entry
		collab("p", []string{"alice", "bob", "mallory"}).collab("q", []string{"bob"}).
		collab("r", []string{"mallory"}, func(c *Collaboration) { c.GIDNumber = 20001 }). // q's gidNumber
		snap
	st := Evaluate(&after, basePolicy(), prev)
	users := map[string]Status{}
	for _, u := range st.Users {
		users[u.DN] = u.Status
	}
	for dn, want := range map[string]Status{"uid=alice,ou=people": StatusActive, "uid=bob,ou=people": StatusActive,
		"uid=mallory,ou=people": StatusPending, "uid=bob,ou=guests": StatusPending} {
		if users[dn] != want {
			t.Errorf("%s: %s, want %s", dn, users[dn], want)
		}
	}
	for _, c := range st.Collaborations {
		if want := c.Name != "r"; c.Provisioned != want {
			t.Errorf("collaboration %s provisioned = %v", c.Name, c.Provisioned)
		}
	}
	actions := map[string]Action{}
	for _, v := range st.Violations {
		actions[string(v.Kind)+" "+v.Subject] = v.Action
		if v.Subject == "uid=mallory,ou=people" && v.Reason != "uidNumber 10000 is already provisioned for uid=alice,ou=people; this newcomer is left out" {
			t.Errorf("mallory's reason: %q", v.Reason)
		}
	}
	for k, want := range map[string]Action{
		"duplicate_id uid=alice,ou=people": ActionHold, "duplicate_id uid=mallory,ou=people": ActionExclude,
		"duplicate_name uid=bob,ou=people": ActionHold, "duplicate_name uid=bob,ou=guests": ActionExclude,
		"duplicate_id cn=q,ou=groups": ActionHold, "duplicate_id cn=r,ou=groups": ActionExclude,
	} {
		if actions[k] != want {
			t.Errorf("%s: action %q, want %q (all: %v)", k, actions[k], want, actions)
		}
	}
	// The history this run leaves keeps the incumbents, so the next run
	// decides the same.
	again := Evaluate(&after, basePolicy(), st.Statuses())
	if !reflect.DeepEqual(again.Statuses(), st.Statuses()) {
		t.Errorf("the next run decides otherwise:\n%v\n%v", st.Statuses(), again.Statuses())
	}
	// Without history nobody can tell who came first: both are left out.
	if st := Evaluate(&after, basePolicy(), nil); status(t, st, "alice") != StatusPending {
		t.Errorf("no history: alice %s", status(t, st, "alice"))
	}
}

// TestStatusChangesIsADiff: applied to the history, StatusChanges gives
// exactly Statuses, through random directories (duplicate names included)
// evaluated against the history of the one before, as a map or as the
// state itself (State.History, which holds what Statuses does).
func TestStatusChangesIsADiff(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	var prev Previous
	var last *State
	var asState int
	for round := 0; round < 300; round++ {
		f := newFixture()
		names := []string{"alice", "bob", "carol", "dave", "erin"}
		var uids []string
		for _, n := range names {
			if rnd.IntN(4) == 0 {
				continue
			}
			f.user(n, func(u *User) { u.Suspended = rnd.IntN(5) == 0 })
			uids = append(uids, n)
			if rnd.IntN(6) == 0 { // a second entry of one name
				f.user(n, func(u *User) { u.DN = "uid=" + u.UID + ",ou=other" })
			}
		}
		for _, c := range []string{"p", "q", "r"} {
			if rnd.IntN(3) == 0 {
				continue
			}
			var members []string
			for _, u := range uids {
				if rnd.IntN(2) == 0 {
					members = append(members, u)
				}
			}
			f.collab(c, members)
			if rnd.IntN(3) == 0 {
				f.production(c+"_robot", c)
			}
		}
		snap := f.snap
		snap.Sort()
		var hist History = prev
		if last != nil && rnd.IntN(2) == 0 {
			hist = last.History()
			asState++
		}
		st := Evaluate(&snap, basePolicy(), hist)
		changed, gone := st.StatusChanges()
		got := Previous{}
		for k, v := range prev {
			got[k] = v
		}
		for _, k := range gone {
			delete(got, k)
		}
		for k, v := range changed {
			got[k] = v
		}
		want := st.Statuses()
		if len(want) == 0 {
			want = Previous{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: history %v\nchanged %v gone %v\ngot  %v\nwant %v", round, prev, changed, gone, got, want)
		}
		// StatusDiff: the same difference, as a history.
		diff, diffGone := st.StatusDiff()
		applied := maps.Clone(prev)
		if applied == nil {
			applied = Previous{}
		}
		for _, k := range diffGone {
			delete(applied, k)
		}
		diff.All(func(k string, p Provisioned) { applied[k] = p })
		if !reflect.DeepEqual(applied, want) {
			t.Fatalf("round %d: history %v with StatusDiff %v gone %v applied is %v, want %v", round, prev, diff, diffGone, applied, want)
		}
		h, all := st.History(), Previous{}
		h.All(func(k string, p Provisioned) {
			if _, twice := all[k]; twice {
				t.Fatalf("round %d: the state as a history gives %s twice", round, k)
			}
			all[k] = p
		})
		if !reflect.DeepEqual(all, want) || h.Len() != len(want) {
			t.Fatalf("round %d: the state as a history holds %d %v, its statuses are %v", round, h.Len(), all, want)
		}
		for k, p := range want {
			if q, ok := h.Provisioned(k); !ok || q != p {
				t.Fatalf("round %d: the state as a history has %s %v %v, its statuses %v", round, k, q, ok, p)
			}
		}
		if _, ok := h.Provisioned("user/nobody"); ok {
			t.Fatalf("round %d: the state as a history has user/nobody", round)
		}
		prev, last = want, st
	}
	if asState < 100 {
		t.Errorf("only %d rounds evaluated against a state as the history", asState)
	}
}

// TestUIDIndex: sorted and unsorted users find the same index; of several
// entries with one uid, the first kept one, else the last; sorted users
// the same with their uid keys (uids of one key compared).
func TestUIDIndex(t *testing.T) {
	for _, c := range []struct {
		uids     []string
		excluded map[int]bool
		want     map[string]int
	}{
		{[]string{"a", "b", "c"}, nil, map[string]int{"a": 0, "b": 1, "c": 2, "d": -1, "": -1}},
		{[]string{"a", "b", "b", "b", "c"}, nil, map[string]int{"b": 1, "c": 4}},
		{[]string{"a", "b", "b", "b", "c"}, map[int]bool{1: true}, map[string]int{"b": 2}},
		{[]string{"a", "b", "b", "b", "c"}, map[int]bool{1: true, 2: true, 3: true}, map[string]int{"b": 3}},
		{[]string{"c", "b", "a", "b"}, map[int]bool{1: true}, map[string]int{"a": 2, "b": 3, "c": 0, "z": -1}},
		{[]string{"c", "b", "a", "b"}, nil, map[string]int{"b": 1}},
		{nil, nil, map[string]int{"a": -1}},
		{[]string{"longname1", "longname1", "longname2"}, map[int]bool{0: true}, map[string]int{"longname1": 1, "longname2": 2}},
		{[]string{"longname1", "longname2", "longname2", "x"}, nil, map[string]int{"longname1": 0, "longname2": 1, "x": 3}},
	} {
		users := usersOf(c.uids)
		indexes := map[string]uidIndex{"without keys": newUIDIndex(users, UIDKeys{}, func(i int) bool { return !c.excluded[i] })}
		if slices.IsSorted(c.uids) {
			indexes["with keys"] = newUIDIndex(users, KeysOf(users), func(i int) bool { return !c.excluded[i] })
		}
		for how, x := range indexes {
			for uid, want := range c.want {
				i, ok := x.find(uid)
				if !ok {
					i = -1
				}
				if i != want {
					t.Errorf("%v without %v, %s: %q at %d, want %d", c.uids, c.excluded, how, uid, i, want)
				}
			}
		}
	}
}

func usersOf(uids []string) []*User {
	out := make([]*User, len(uids))
	for i, uid := range uids {
		out[i] = &User{UID: uid}
	}
	return out
}

// TestUIDIndexFindFrom: galloping through a list of uids finds what find
// finds, for lists in order or not, with uids twice, unknown and empty,
// over users in order (with duplicate uids) or not.
func TestUIDIndexFindFrom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	uid := func(k int) string { return fmt.Sprintf("u%04d", k) }
	for round := range 300 {
		n := rng.IntN(400)
		var uids []string
		for range n {
			uids = append(uids, uid(rng.IntN(2*n+1)))
		}
		if round%3 != 0 {
			slices.Sort(uids)
		}
		excluded := map[int]bool{}
		for i := range uids {
			excluded[i] = rng.IntN(4) == 0
		}
		x := newUIDIndex(usersOf(uids), UIDKeys{}, func(i int) bool { return !excluded[i] })
		var list []string
		for range rng.IntN(3 * (n + 1)) {
			list = append(list, uid(rng.IntN(2*n+2)))
		}
		if rng.IntN(4) != 0 {
			slices.Sort(list)
		}
		if rng.IntN(5) == 0 {
			list = append(list, "")
		}
		from, prev := 0, ""
		for _, u := range list {
			if u < prev {
				from = 0
			}
			prev = u
			wantI, wantOK := x.find(u)
			var i int
			var ok bool
			i, ok, from = x.findFrom(u, from)
			if ok != wantOK || (ok && i != wantI) {
				t.Fatalf("round %d: users %v, list %v: %q found at %d (%v), find says %d (%v)", round, uids, list, u, i, ok, wantI, wantOK)
			}
		}
	}
}

// TestExpiredAccountsSuspended: an account whose expiry has passed is
// suspended like one the directory suspends; the earliest expiry still to
// come is the state's NextExpiry, when it becomes wrong.
func TestExpiredAccountsSuspended(t *testing.T) {
	soon, later := now.Add(time.Hour), now.Add(48*time.Hour)
	snap := newFixture().
		user("alice").
		user("bob", func(u *User) { u.Expires = now.Add(-time.Second).Unix() }).
		user("carol", func(u *User) { u.Expires = later.Unix() }).
		user("dave", func(u *User) { u.Expires = soon.Unix() }).
		user("erin", func(u *User) { u.Expires = now.Unix() }). // at its expiry: gone
		collab("atlas", []string{"alice", "bob", "carol", "dave", "erin"}).snap
	st := Evaluate(&snap, basePolicy(), nil)
	for uid, want := range map[string]Status{"alice": StatusActive, "bob": StatusSuspended, "carol": StatusActive,
		"dave": StatusActive, "erin": StatusSuspended} {
		if got := status(t, st, uid); got != want {
			t.Errorf("%s: %s, want %s", uid, got, want)
		}
	}
	if !st.NextExpiry.Equal(time.Unix(soon.Unix(), 0)) {
		t.Errorf("next expiry %v, want %v", st.NextExpiry, soon)
	}
	p := basePolicy()
	p.Now = later
	if st := Evaluate(&snap, p, nil); status(t, st, "carol") != StatusSuspended || !st.NextExpiry.IsZero() {
		t.Errorf("at carol's expiry: %s, next %v", status(t, st, "carol"), st.NextExpiry)
	}
}

// TestPrimaryGroups: an active user's private group is provisioned unless
// a collaboration holds its name or gid (a warning then); an active user
// whose primary gid names no provisioned group is warned of; pending
// users are not.
func TestPrimaryGroups(t *testing.T) {
	snap := newFixture().
		user("alice", func(u *User) { u.GIDNumber = 20000 }). // atlas's
		user("bob", func(u *User) { u.GIDNumber, u.PrivateGroup = 10001, "bob" }).
		user("carol", func(u *User) { u.GIDNumber = 555 }).
		user("dave", func(u *User) { u.GIDNumber, u.PrivateGroup = 20001, "dave" }). // cms's gid
		user("erin", func(u *User) { u.GIDNumber, u.PrivateGroup = 10004, "atlas" }).
		user("frank", func(u *User) { u.GIDNumber = 777 }). // in no collaboration: pending
		collab("atlas", []string{"alice", "bob", "carol", "dave", "erin"}).
		collab("cms", []string{"alice"}).snap
	st := Evaluate(&snap, basePolicy(), nil)
	var got []string
	for _, v := range st.Violations {
		if v.Kind == KindPrimaryGroup {
			if v.Severity != SeverityWarning || v.Action != ActionWarn {
				t.Errorf("not a warning: %+v", v)
			}
			got = append(got, v.Name+": "+v.Reason)
		}
	}
	want := []string{
		"carol: primary gidNumber 555 names no provisioned group: getent shows the number without a name",
		"dave: private group dave (gid 20001) clashes with collaboration cms; the private group is not provisioned",
		"erin: private group atlas (gid 10004) clashes with collaboration atlas; the private group is not provisioned",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	own := map[string]bool{}
	for _, u := range st.Users {
		own[u.UID] = u.OwnGroup
	}
	if !reflect.DeepEqual(own, map[string]bool{"alice": false, "bob": true, "carol": false, "dave": false, "erin": false, "frank": false}) {
		t.Errorf("private groups provisioned: %v", own)
	}
}

// TestNamesIgnoreCase: names that differ only in case are one name (Slurm,
// Mailman and mail aliases fold case): a newcomer "Alice" is left out and
// the provisioned alice keeps hers; "LPNHE" beside lpnhe clashes; "Root"
// is reserved like root. Before, Alice was provisioned beside alice, and
// got alice's Slurm association.
func TestNamesIgnoreCase(t *testing.T) {
	snap := newFixture().
		user("alice").
		user("Alice", func(u *User) { u.UIDNumber = 10050 }).
		user("Root", func(u *User) { u.UIDNumber = 10060 }).
		collab("lpnhe", []string{"alice", "Alice", "Root"}).
		collab("LPNHE", []string{"alice"}, func(c *Collaboration) { c.GIDNumber = 20050 }).snap
	p := basePolicy()
	p.Reserved = &Reserved{Names: map[string]string{"root": "/etc/passwd"}}
	prev := Previous{"user/alice": {Status: StatusActive, DN: "uid=alice,ou=people", ID: 10000}}
	st := Evaluate(&snap, p, prev)
	if got, want := status(t, st, "alice"), StatusPending; got != want {
		// alice keeps her name, but lpnhe and LPNHE clash (no incumbent):
		// neither is provisioned, so she is in no active collaboration.
		t.Errorf("alice: %s, want %s", got, want)
	}
	reasons := map[string]string{}
	for _, v := range st.Violations {
		reasons[string(v.Kind)+" "+v.Subject] = v.Reason
	}
	for key, want := range map[string]string{
		"duplicate_name uid=Alice,ou=people": `name "alice" (names that differ only in case are one name downstream) is already provisioned for uid=alice,ou=people; this newcomer is left out`,
		"duplicate_name uid=alice,ou=people": `keeps it, as the one already provisioned`,
		"duplicate_name cn=LPNHE,ou=groups":  `name "lpnhe" (names that differ only in case are one name downstream) is also used by cn=lpnhe,ou=groups`,
		"reserved uid=Root,ou=people":        `name "Root" is reserved (/etc/passwd), whatever its case`,
	} {
		if !strings.Contains(reasons[key], want) {
			t.Errorf("%s: %q, want %q", key, reasons[key], want)
		}
	}
	if status(t, st, "Alice") == StatusActive || status(t, st, "Root") == StatusActive {
		t.Error("a name differing only in case was provisioned")
	}
}

// TestNumberClashes: the numbers held twice, with their holders in order,
// by the bit set (dense numbers) and by the map (sparse ones), at the ends
// of the uint32 range too.
func TestNumberClashes(t *testing.T) {
	const top = ^uint32(0)
	for _, tc := range []struct {
		name string
		nums []uint32
		want map[uint32][]int
	}{
		{"none", nil, nil},
		{"one", []uint32{0}, nil},
		{"distinct dense", []uint32{1000, 1001, 1003, 1002}, nil},
		{"twice dense", []uint32{1000, 1001, 1000, 1002, 1001, 1000}, map[uint32][]int{1000: {0, 2, 5}, 1001: {1, 4}}},
		{"zero and 27", []uint32{27, 0, 27, 0}, map[uint32][]int{0: {1, 3}, 27: {0, 2}}},
		{"distinct sparse", []uint32{0, top, 1 << 31}, nil},
		{"twice sparse", []uint32{top, 0, 1 << 31, top, 5}, map[uint32][]int{top: {0, 3}}},
		{"top twice dense", []uint32{top - 1, top, top}, map[uint32][]int{top: {1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := numberClashes(func(yield func(uint32, int)) {
				for i, n := range tc.nums {
					yield(n, i)
				}
			})
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("numberClashes(%v) = %v, want %v", tc.nums, got, tc.want)
			}
		})
	}
}
