package notices

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/postfix"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

// centre is the test's directory on a day: users and collaborations as
// directorytest.Centre evaluates them.
type centre struct {
	day     time.Time
	users   map[string]directory.User
	collabs map[string]directory.Collaboration
	prods   []directory.ProductionAccount
}

func (c *centre) state() *directory.State {
	var users []*directory.User
	for _, u := range c.users {
		u := u
		users = append(users, &u)
	}
	slices.SortFunc(users, func(a, b *directory.User) int { return strings.Compare(a.UID, b.UID) })
	var collabs []directory.Collaboration
	for _, cl := range c.collabs {
		collabs = append(collabs, cl)
	}
	slices.SortFunc(collabs, func(a, b directory.Collaboration) int { return strings.Compare(a.Name, b.Name) })
	for i, u := range users {
		u.UIDNumber = uint32(10000 + int(u.UID[0])*10 + i%10) // stable: by the first letter
		u.DN = "uid=" + u.UID + ",ou=people"
	}
	for i := range collabs {
		collabs[i].GIDNumber = uint32(20000 + int(collabs[i].Name[0]))
	}
	st := directorytest.Centre(c.day, users, collabs)
	if len(c.prods) > 0 {
		snap := &directory.Snapshot{Users: users, Collaborations: directory.CollaborationsOf(collabs...), ProductionAccounts: c.prods}
		st = directory.Evaluate(snap, directorytest.Policy(c.day), nil)
	}
	return st
}

func user(uid, name string, optOuts ...string) directory.User {
	return directory.User{UID: uid, Name: name, Mail: uid + "@" + postfix.Domain, Home: "/home/" + uid, Shell: "/bin/bash", OptOuts: optOuts}
}

// newTarget builds a target named mail on a state store of its own.
func newTarget(t testing.TB, s *Settings) *Target {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "collabsync.db"), store.Schema{Name: SchemaName, Migrations: Migrations()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tg := New("mail", s, engine.Env{})
	tg.SetStateStore(st.DB)
	return tg
}

// run plans the target against the state and applies the plan, as a
// run of the engine does.
func run(t *testing.T, tg *Target, st *directory.State) (*engine.Plan, error) {
	t.Helper()
	p, err := enginetest.Plan(context.Background(), tg, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) == 0 {
		return p, nil
	}
	return p, tg.Apply(context.Background(), p)
}

// waitMails waits until the server delivered n mails, and a little
// longer to see that no more come.
func waitMails(t *testing.T, s *postfix.Server, n int) []postfix.Mail {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, err := s.Mails()
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) >= n || time.Now().After(deadline) {
			time.Sleep(300 * time.Millisecond)
			if ms, err = s.Mails(); err != nil {
				t.Fatal(err)
			}
			if len(ms) != n {
				var got []string
				for _, m := range ms {
					got = append(got, m.To+": "+m.Subject)
				}
				t.Fatalf("%d mails delivered, want %d:\n%s\npostfix log:\n%s", len(ms), n, strings.Join(got, "\n"), s.Log())
			}
			return ms
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNoticesThroughPostfix drives the notices target through a real
// Postfix delivering to a Maildir: the first run sends nothing; each
// fact is mailed once to the right people, a contact's notices of a day
// in one mail; an opt-out is respected; a relay that is down fails the
// apply and loses nothing, and the notice is delivered once when it is
// back; the end of a production account is told.
func TestNoticesThroughPostfix(t *testing.T) {
	pf := postfix.StartT(t)
	s := Kind().NewSettings().(*Settings)
	s.SMTP.Host, s.SMTP.Port, s.SMTP.TLS = "127.0.0.1", pf.Port, TLSNone
	s.From, s.Site, s.PerMinute = "collabsync@example.org", "Test Centre", 0
	if probs := s.Validate(); len(probs) > 0 {
		t.Fatalf("settings: %v", probs)
	}
	tg := newTarget(t, s)
	day0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	review := day0.AddDate(0, 0, 45)
	c := &centre{day: day0, users: map[string]directory.User{
		"alice": user("alice", "Alice Liddell"),
		"bob":   user("bob", "Bob Marley"),
		"eve":   user("eve", "Eve Optout", "notices"),
	}, collabs: map[string]directory.Collaboration{
		"atlas": {Name: "atlas", Members: []string{"alice", "bob", "eve"}, ReviewedUntil: review,
			Contacts: map[directory.Role][]string{directory.RoleCollaboration: {"alice"}, directory.RoleValidator: {"bob"}}},
		"cms": {Name: "cms", Members: []string{"alice"}, ReviewedUntil: review,
			Contacts: map[directory.Role][]string{directory.RoleComputing: {"alice"}}},
	}}
	setNow := func(d time.Time) { c.day = d; tg.now = func() time.Time { return d } }
	setNow(day0)

	// A first run: what is true is recorded, nothing is sent.
	p, err := run(t, tg, c.state())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "none is sent") {
		t.Errorf("first run's notes %q, want one saying none is sent", p.Notes)
	}
	if _, begun, err := (ledger{db: tg.db, target: "mail"}).read(context.Background()); err != nil || !begun {
		t.Fatalf("no ledger after the first run: %v", err)
	}

	// carol joins atlas: her account is active. dave, external, waits for
	// a validator: bob validates for atlas.
	c.users["carol"] = user("carol", "Carol Danvers")
	c.users["dave"] = directory.User{UID: "dave", Name: "Dave Guest", Mail: "dave@" + postfix.Domain, Affiliation: "guest", Home: "/home/dave", Shell: "/bin/sh"}
	atlas := c.collabs["atlas"]
	atlas.Members = []string{"alice", "bob", "carol", "dave", "eve"}
	c.collabs["atlas"] = atlas
	st := c.state()
	if u, _ := st.User("dave"); u.Status != directory.StatusPending {
		t.Fatalf("dave is %s, the test wants an external user pending validation", u.Status)
	}
	if _, err := run(t, tg, st); err != nil {
		t.Fatal(err)
	}
	ms := waitMails(t, pf, 3)
	want := map[string]string{
		"carol@example.org": "Test Centre: your account carol is active",
		"bob@example.org":   "Test Centre: dave waits for your validation",
		"dave@example.org":  "Test Centre: your account dave waits for a validator",
	}
	for _, m := range ms {
		if want[m.To] != m.Subject {
			t.Errorf("mail to %s: subject %q, want %q", m.To, m.Subject, want[m.To])
		}
	}
	if d := mailTo(ms, "dave@example.org").Body; !strings.Contains(d, "a validator of atlas") || !strings.Contains(d, "Bob Marley <bob@example.org>") {
		t.Errorf("dave's mail:\n%s", d)
	}
	if !strings.Contains(mailTo(ms, "carol@example.org").Body, "Dear Carol Danvers") || !strings.Contains(mailTo(ms, "carol@example.org").Body, "in atlas") {
		t.Errorf("carol's mail:\n%s", mailTo(ms, "carol@example.org").Body)
	}
	// The same state again: nothing more.
	if p, err := run(t, tg, st); err != nil || len(p.Changes) != 0 {
		t.Fatalf("the same state again: %d changes, %v", len(p.Changes), err)
	}

	// 29 days before both reviews: alice, contact of atlas and cms, gets
	// one mail telling both.
	setNow(review.AddDate(0, 0, -29))
	if _, err := run(t, tg, c.state()); err != nil {
		t.Fatal(err)
	}
	ms = waitMails(t, pf, 4)
	m := ms[3]
	if m.To != "alice@example.org" || !strings.Contains(m.Subject, "2 notices") ||
		!strings.Contains(m.Body, "review of the collaboration atlas is due on 2026-04-16") ||
		!strings.Contains(m.Body, "review of the collaboration cms is due on 2026-04-16") || !strings.Contains(m.Body, "in 29 days") {
		t.Errorf("the combined review mail: to %s, %q:\n%s", m.To, m.Subject, m.Body)
	}
	// The next day: still within 30 days, already told.
	setNow(review.AddDate(0, 0, -28))
	if p, err := run(t, tg, c.state()); err != nil {
		t.Fatal(err)
	} else if add, _, _ := p.Counts(); add != 0 {
		t.Fatalf("the next day: %d notices to send, want none", add)
	}

	// The relay is down when the 14-day notice is due: the apply fails,
	// the ledger keeps it unsent; once the relay is back it goes, once.
	setNow(review.AddDate(0, 0, -13))
	if err := pf.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, tg, c.state()); err == nil {
		t.Fatal("apply with the relay down succeeded")
	} else if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("the error does not name the relay: %v", err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, tg, c.state()); err != nil {
		t.Fatal(err)
	}
	if p, err := run(t, tg, c.state()); err != nil || len(p.Changes) != 0 {
		t.Fatalf("after the retry: %d changes, %v", len(p.Changes), err)
	}
	ms = waitMails(t, pf, 5)
	if m := ms[4]; m.To != "alice@example.org" || !strings.Contains(m.Body, "in 13 days") {
		t.Errorf("the 14-day notice: to %s:\n%s", m.To, m.Body)
	}

	// A production account of atlas, bob its manager: created, removed.
	c.prods = []directory.ProductionAccount{{DN: "uid=atlas_robot,ou=prod", Name: "atlas_robot", UIDNumber: 30000, GIDNumber: 100,
		Home: "/home/atlas_robot", Shell: "/bin/sh", Collaboration: "atlas", Managers: []string{"bob"}}}
	if _, err := run(t, tg, c.state()); err != nil {
		t.Fatal(err)
	}
	c.prods = nil
	if _, err := run(t, tg, c.state()); err != nil {
		t.Fatal(err)
	}
	ms = waitMails(t, pf, 7)
	if ms[5].Subject != "Test Centre: production account atlas_robot created" || ms[6].Subject != "Test Centre: production account atlas_robot removed" ||
		ms[5].To != "bob@example.org" || ms[6].To != "bob@example.org" {
		t.Errorf("production mails: %s %q, %s %q", ms[5].To, ms[5].Subject, ms[6].To, ms[6].Subject)
	}
	// atlas's core-hours: 85 of 100 used, then 120; cms has no allocation
	// told. alice, its collaboration contact (it has no computing one), is
	// told once at 80 %, once at 100 %.
	used := 85.0
	tg.SetUsage(func(context.Context, time.Time) ([]Use, error) {
		return []Use{{Collaboration: "atlas", Resource: "core-hours", PeriodStart: "2026-01-01", PeriodEnd: "2027-01-01", Used: used, Allocated: 100},
			{Collaboration: "cms", Resource: "core-hours", PeriodStart: "2026-01-01", PeriodEnd: "2027-01-01", Used: 10, Allocated: 100}}, nil
	})
	for _, u := range []float64{85, 90, 120, 130} {
		used = u
		if _, err := run(t, tg, c.state()); err != nil {
			t.Fatal(err)
		}
	}
	ms = waitMails(t, pf, 9)
	for i, want := range []string{"Test Centre: atlas has used 80% of its core-hours", "Test Centre: atlas has used 100% of its core-hours"} {
		if m := ms[7+i]; m.To != "alice@example.org" || m.Subject != want {
			t.Errorf("allocation mail %d: to %s %q, want %q", i, m.To, m.Subject, want)
		}
	}
	if m := ms[8]; !strings.Contains(m.Body, "has used 120 of the 100 core-hours") || !strings.Contains(m.Body, "used up") {
		t.Errorf("the 100%% mail:\n%s", m.Body)
	}

	// bob is suspended; the reviews lapse: alice, contact of both, is
	// told in one mail.
	b := c.users["bob"]
	b.Suspended = true
	c.users["bob"] = b
	setNow(review.AddDate(0, 0, 1))
	if _, err := run(t, tg, c.state()); err != nil {
		t.Fatal(err)
	}
	ms = waitMails(t, pf, 11)
	if m := mailTo(ms[9:], "bob@example.org"); m.Subject != "Test Centre: your account bob is suspended" {
		t.Errorf("bob's suspension: %q", m.Subject)
	}
	if m := mailTo(ms[9:], "alice@example.org"); !strings.Contains(m.Body, "review of the collaboration atlas was due on 2026-04-16") ||
		!strings.Contains(m.Body, "review of the collaboration cms was due on 2026-04-16") || !strings.Contains(m.Body, "has expired") {
		t.Errorf("the lapsed reviews to alice: %q\n%s", m.Subject, m.Body)
	}

	ids := map[string]bool{}
	for _, m := range ms {
		if m.To == "eve@example.org" {
			t.Errorf("eve opted out and got %q", m.Subject)
		}
		if ids[m.MessageID] {
			t.Errorf("message %s delivered twice", m.MessageID)
		}
		ids[m.MessageID] = true
		if !strings.Contains(m.Raw, "Auto-Submitted: auto-generated") {
			t.Errorf("mail to %s is not marked auto-generated", m.To)
		}
	}
}

func mailTo(ms []postfix.Mail, to string) postfix.Mail {
	for _, m := range ms {
		if m.To == to {
			return m
		}
	}
	return postfix.Mail{}
}

// TestMaintenanceAnnounced: a window of the calendar is announced to the
// all-users address days_ahead days before it starts, with its services
// and end, and reminded the day before; on no other day.
func TestMaintenanceAnnounced(t *testing.T) {
	pf := postfix.StartT(t)
	dir := t.TempDir()
	cal := filepath.Join(dir, "downtimes.ics")
	if err := os.WriteFile(cal, []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:spring@example.org\r\n"+
		"DTSTAMP:20260101T000000Z\r\nDTSTART:20260520T080000Z\r\nDTEND:20260521T180000Z\r\nSUMMARY:Spring downtime\r\n"+
		"CATEGORIES:slurm,lists\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Kind().NewSettings().(*Settings)
	s.SMTP.Host, s.SMTP.Port, s.SMTP.TLS = "127.0.0.1", pf.Port, TLSNone
	s.From, s.Site, s.PerMinute = "collabsync@example.org", "Test Centre", 0
	s.Announce.To, s.Announce.Calendar = "hpc-users@example.org", cal
	if probs := s.Validate(); len(probs) > 0 {
		t.Fatalf("settings: %v", probs)
	}
	tg := newTarget(t, s)
	start := time.Date(2026, 5, 20, 8, 0, 0, 0, time.UTC)
	c := &centre{users: map[string]directory.User{"alice": user("alice", "Alice")},
		collabs: map[string]directory.Collaboration{"atlas": {Name: "atlas", Members: []string{"alice"}}}}
	sent := 0
	for _, step := range []struct {
		at   time.Time
		want string // the subject mailed that day; "" none
	}{
		{start.AddDate(0, 0, -30), ""}, // the first run: nothing
		{start.AddDate(0, 0, -11), ""},
		{start.AddDate(0, 0, -10), "Test Centre: maintenance from Wednesday 20 May 2026 08:00 UTC (Spring downtime)"},
		{start.AddDate(0, 0, -9), ""},
		{start.AddDate(0, 0, -5), ""},
		{start.Add(-22 * time.Hour), "Test Centre: reminder, maintenance from Wednesday 20 May 2026 08:00 UTC (Spring downtime)"},
		{start.Add(-time.Hour), ""},
		{start.Add(time.Hour), ""},
	} {
		c.day = step.at
		tg.now = func() time.Time { return step.at }
		if _, err := run(t, tg, c.state()); err != nil {
			t.Fatalf("%s: %v", step.at, err)
		}
		if step.want == "" {
			continue
		}
		sent++
		ms := waitMails(t, pf, sent)
		m := ms[sent-1]
		if m.To != "hpc-users@example.org" || m.Subject != step.want {
			t.Errorf("%s: mail to %s %q, want %q", step.at.Format(time.DateOnly), m.To, m.Subject, step.want)
		}
		for _, part := range []string{"Dear users", "ends Thursday 21 May 2026 18:00 UTC", "Affected: slurm, lists."} {
			if !strings.Contains(m.Body, part) {
				t.Errorf("%s: the mail does not say %q:\n%s", step.at.Format(time.DateOnly), part, m.Body)
			}
		}
	}
	waitMails(t, pf, 2)
}

// fakeReports hands out one report per collaboration and month.
type fakeReports struct{ used []string }

func (f fakeReports) Used(context.Context, string) ([]string, error) { return f.used, nil }
func (f fakeReports) Files(_ context.Context, collab, month string) ([]File, error) {
	return []File{{Name: collab + "-" + month + ".csv", ContentType: "text/csv", Data: []byte("USER,CORE_HOURS\nalice,12.5\n")}}, nil
}

// TestUsageReportMailed: a collaboration's reporting contacts get its
// report of the last month, with the files attached, once a month; the
// first run records the month already begun.
func TestUsageReportMailed(t *testing.T) {
	pf := postfix.StartT(t)
	s := Kind().NewSettings().(*Settings)
	s.SMTP.Host, s.SMTP.Port, s.SMTP.TLS = "127.0.0.1", pf.Port, TLSNone
	s.From, s.Site, s.PerMinute = "collabsync@example.org", "Test Centre", 0
	tg := newTarget(t, s)
	tg.SetReports(fakeReports{used: []string{"atlas", "cms"}})
	c := &centre{users: map[string]directory.User{"alice": user("alice", "Alice"), "bob": user("bob", "Bob")},
		collabs: map[string]directory.Collaboration{
			"atlas": {Name: "atlas", Members: []string{"alice", "bob"}, Contacts: map[directory.Role][]string{directory.RoleReporting: {"bob"}}},
			"cms":   {Name: "cms", Members: []string{"alice"}}, // no reporting contact
		}}
	sent := 0
	for _, step := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 3, 3, 0, 0, 0, time.UTC), ""}, // the first run: October's, recorded
		{time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC), ""},
		{time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC), "Test Centre: usage of atlas in 2026-11"},
		{time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC), ""},
		{time.Date(2027, 1, 1, 3, 0, 0, 0, time.UTC), "Test Centre: usage of atlas in 2026-12"},
	} {
		c.day = step.at
		tg.now = func() time.Time { return step.at }
		if _, err := run(t, tg, c.state()); err != nil {
			t.Fatalf("%s: %v", step.at, err)
		}
		if step.want == "" {
			continue
		}
		sent++
		m := waitMails(t, pf, sent)[sent-1]
		if m.To != "bob@example.org" || m.Subject != step.want {
			t.Errorf("%s: mail to %s %q, want bob %q", step.at.Format(time.DateOnly), m.To, m.Subject, step.want)
		}
		csv := "atlas-" + strings.TrimPrefix(step.want, "Test Centre: usage of atlas in ") + ".csv"
		if !strings.Contains(m.Raw, `filename="`+csv+`"`) || !strings.Contains(m.Raw, "Content-Type: text/csv") {
			t.Errorf("%s: no %s attached:\n%s", step.at.Format(time.DateOnly), csv, m.Raw)
		}
	}
}

// TestSTARTTLSVerified: the default tls: starttls delivers through a
// relay whose certificate the ca_file verifies, and refuses one it cannot
// verify (no ca_file: the system's roots) and a relay offering no
// STARTTLS; nothing is recorded as sent when it refuses.
func TestSTARTTLSVerified(t *testing.T) {
	certs, err := testharness.NewCertFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	withTLS := postfix.StartTLST(t, certs)
	plain := postfix.StartT(t)
	c := &centre{day: time.Now(), users: map[string]directory.User{"bob": user("bob", "Bob")},
		collabs: map[string]directory.Collaboration{"atlas": {Name: "atlas", Members: []string{"bob"}}}}
	for _, tc := range []struct {
		name   string
		port   int
		caFile string
		err    string // "" delivered
	}{
		{"verified", withTLS.Port, certs.CA, ""},
		{"unknown authority", withTLS.Port, "", "certificate"},
		{"no STARTTLS", plain.Port, certs.CA, "STARTTLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Kind().NewSettings().(*Settings)
			s.SMTP.Host, s.SMTP.Port, s.SMTP.CAFile = "127.0.0.1", tc.port, tc.caFile
			s.From, s.PerMinute = "collabsync@example.org", 0
			if s.SMTP.TLS != TLSStartTLS {
				t.Fatalf("the default tls is %q", s.SMTP.TLS)
			}
			tg := newTarget(t, s)
			delete(c.users, "alice")
			if _, err := run(t, tg, c.state()); err != nil { // the baseline: no alice yet
				t.Fatal(err)
			}
			c.users["alice"] = user("alice", "Alice")
			c.collabs["atlas"] = directory.Collaboration{Name: "atlas", Members: []string{"alice", "bob"}}
			defer func() { c.collabs["atlas"] = directory.Collaboration{Name: "atlas", Members: []string{"bob"}} }()
			_, err := run(t, tg, c.state())
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				m := waitMails(t, withTLS, 1)[0]
				if !strings.Contains(m.Raw, "using TLS") {
					t.Errorf("delivered without TLS:\n%s", m.Raw)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("apply: %v, want an error saying %q", err, tc.err)
			}
			if p, err := enginetest.Plan(context.Background(), tg, c.state()); err != nil || len(p.Changes) != 1 {
				t.Errorf("after the refusal the notice is not pending: %v, %v", p, err)
			}
		})
	}
}
