package aliases

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testState evaluates a directory with contacts of every role, a contact
// whose account is suspended, one whose mail would inject a command, a
// collaboration that is not active and production accounts.
func testState(t *testing.T) *directory.State {
	t.Helper()
	id := uint32(10000)
	user := func(uid, mail string, suspended bool) *directory.User {
		id++
		return &directory.User{DN: "uid=" + uid + ",ou=people", UID: uid, UIDNumber: id, GIDNumber: 100, Mail: mail, Suspended: suspended, Affiliation: "staff"}
	}
	collab := func(name string, status directory.Status, members []string, contacts map[directory.Role][]string) *directory.Collaboration {
		id++
		return &directory.Collaboration{DN: "cn=" + name + ",ou=groups", Name: name, GIDNumber: id + 10000, Members: members,
			Kind: directory.KindScientific, Status: status, Contacts: contacts}
	}
	snap := &directory.Snapshot{
		Users: []*directory.User{
			user("alice", "alice@lab.example.org", false),
			user("bob", "bob@lab.example.org", false),
			user("carol", "carol@lab.example.org", true),
			user("mallory", "m@lab.example.org, |/bin/sh -c id", false),
			user("nomail", "", false),
		},
		Collaborations: []*directory.Collaboration{
			collab("Atlas", directory.StatusActive, []string{"alice", "bob", "carol", "mallory", "nomail"}, map[directory.Role][]string{
				directory.RoleCollaboration: {"alice", "carol"}, directory.RoleComputing: {"bob", "mallory"},
				directory.RoleStorage: {"nomail"}}),
			collab("cms", directory.StatusActive, []string{"alice", "bob"}, map[directory.Role][]string{
				directory.RoleCollaboration: {"bob"}, directory.RoleStorage: {"alice", "bob"}}),
			collab("old", directory.StatusClosed, []string{"alice"}, map[directory.Role][]string{directory.RoleCollaboration: {"alice"}}),
		},
		ProductionAccounts: []directory.ProductionAccount{
			{DN: "uid=cms_robot,ou=production", Name: "cms_robot", UIDNumber: 30001, GIDNumber: 100, Collaboration: "cms",
				Managers: []string{"ops@lab.example.org", "/etc/passwd"}},
			{DN: "uid=old_robot,ou=production", Name: "old_robot", UIDNumber: 30002, GIDNumber: 100, Collaboration: "old",
				Managers: []string{"ops@lab.example.org"}},
		},
	}
	return directory.Evaluate(snap, directorytest.Policy(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)), nil)
}

func plan(t *testing.T, tg *Target, st *directory.State) *engine.Plan {
	t.Helper()
	p, err := enginetest.Plan(context.Background(), tg, st)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGolden: the file holds an alias per role with contacts who can
// receive mail, per active production account its valid managers, and
// nothing for a closed collaboration, a suspended contact or an address
// that is no plain address.
func TestGolden(t *testing.T) {
	tg := &Target{InstanceName: "aliases", Path: filepath.Join(t.TempDir(), "aliases")}
	p := plan(t, tg, testState(t))
	if err := tg.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(tg.Path)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "aliases.golden")
	if *update {
		os.WriteFile(golden, got, 0o644)
	}
	want, _ := os.ReadFile(golden)
	if string(got) != string(want) {
		t.Errorf("aliases:\n%s\nwant:\n%s", got, want)
	}
	for _, bad := range []string{"|", "/etc/passwd", "carol", "old", "nomail"} {
		if strings.Contains(string(got), bad) {
			t.Errorf("the file holds %q:\n%s", bad, got)
		}
	}
	if again := plan(t, tg, testState(t)); len(again.Changes) != 0 {
		t.Errorf("a second plan changes %+v", again.Changes)
	}
}

// TestCaseCollision: two collaborations whose names differ only in case
// would share their aliases: an error naming both, not one silently
// taking the other's mail.
func TestCaseCollision(t *testing.T) {
	st := testState(t)
	dup := st.Collaborations[0]
	c := *dup.Collaboration // the state's collaborations are shared: a copy to change
	c.Name, c.DN = "ATLAS", "cn=ATLAS,ou=groups"
	dup.Collaboration = &c
	st.Collaborations = append(st.Collaborations, dup)
	tg := &Target{InstanceName: "aliases", Path: filepath.Join(t.TempDir(), "aliases")}
	_, err := tg.Desired(st)
	if err == nil || !strings.Contains(err.Error(), "cn=Atlas,ou=groups") || !strings.Contains(err.Error(), "cn=ATLAS,ou=groups") {
		t.Fatalf("err = %v", err)
	}
}

// TestCommand: the command runs after a write, not when nothing changed;
// when it fails the error names it and the file, and the next plan runs
// it again (also after a restart: the state is on disk) until it succeeds.
func TestCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	log := filepath.Join(dir, "ran")
	script := filepath.Join(dir, "post")
	write := func(exit int) {
		os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+log+"\necho oops >&2\nexit "+string(rune('0'+exit))+"\n"), 0o755)
	}
	runs := func() int { data, _ := os.ReadFile(log); return strings.Count(string(data), "\n") }
	var calls []string
	newTarget := func() *Target {
		return &Target{InstanceName: "mail", Path: filepath.Join(dir, "aliases"), Command: []string{script, filepath.Join(dir, "aliases")}, CommandTimeout: 5 * time.Second,
			Call: func(result string) { calls = append(calls, result) }}
	}
	tg := newTarget()
	write(1)
	p := plan(t, tg, testState(t))
	err := tg.Apply(ctx, p)
	if err == nil || !strings.Contains(err.Error(), script) || !strings.Contains(err.Error(), "oops") || !strings.Contains(err.Error(), tg.Path) {
		t.Fatalf("failing command: %v", err)
	}
	// A restarted daemon reads the target: the command is still to run.
	p = plan(t, newTarget(), testState(t))
	if len(p.Changes) != 1 || p.Changes[0].Kind != KindCommand || p.Changes[0].Old != "pending" {
		t.Fatalf("after the failure: %+v", p.Changes)
	}
	write(0)
	if err := tg.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 2 {
		t.Errorf("command ran %d times, want 2", n)
	}
	if p := plan(t, newTarget(), testState(t)); len(p.Changes) != 0 {
		t.Errorf("after success: %+v", p.Changes)
	}
	// A file edited by hand is rewritten and the command runs again.
	os.WriteFile(tg.Path, []byte("atlas-contacts: someone@else.org\n"), 0o644)
	p = plan(t, newTarget(), testState(t))
	if err := tg.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 3 {
		t.Errorf("command ran %d times, want 3", n)
	}
	if got := strings.Join(calls, ","); got != "exit 1,exit 0,exit 0" {
		t.Errorf("calls counted: %s", got)
	}
}

// TestCommandTimeout: a command that hangs is stopped and reported.
func TestCommandTimeout(t *testing.T) {
	dir := t.TempDir()
	tg := &Target{InstanceName: "mail", Path: filepath.Join(dir, "aliases"), Command: []string{"/bin/sleep", "30"}, CommandTimeout: 200 * time.Millisecond}
	start := time.Now()
	err := tg.Apply(context.Background(), plan(t, tg, testState(t)))
	if err == nil || !strings.Contains(err.Error(), "timed out") || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

// TestCommandGrandchild: a command whose child keeps its output open is
// stopped at the timeout with everything it started, and one that exits
// having left such a child answered: neither waits for the child (before:
// "timed out after 200ms" after the child's 30 s).
func TestCommandGrandchild(t *testing.T) {
	for _, c := range []struct {
		script, want string
	}{
		{"sleep 30 & sleep 60", "timed out after 200ms"},
		{"sleep 30 & exit 0", ""},
	} {
		dir := t.TempDir()
		tg := &Target{InstanceName: "mail", Path: filepath.Join(dir, "aliases"), Command: []string{"/bin/sh", "-c", c.script}, CommandTimeout: 200 * time.Millisecond}
		start := time.Now()
		err := tg.Apply(context.Background(), plan(t, tg, testState(t)))
		if took := time.Since(start); took > 3*time.Second || c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err = %v after %v", c.script, err, took)
		}
	}
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		keys string
	}{
		{Settings{Path: "/etc/aliases.d/x", CommandTimeout: 1}, ""},
		{Settings{Path: "aliases", CommandTimeout: 1}, "path"},
		{Settings{Path: "/x", Command: []string{"postalias"}, CommandTimeout: 1}, "command"},
		{Settings{Path: "/x", Command: []string{"/nonexistent/postalias"}, CommandTimeout: 1}, "command"}, // missing: said at check-config
		{Settings{Path: "/x", Command: []string{"/bin/sh"}, CommandTimeout: 1}, ""},
		{Settings{Path: "/x"}, "command_timeout"},
	} {
		var keys []string
		for _, p := range tc.s.Validate() {
			keys = append(keys, p.Key)
		}
		if strings.Join(keys, ",") != tc.keys {
			t.Errorf("%+v: problems %v, want %q", tc.s, tc.s.Validate(), tc.keys)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("a: b@c\n  d@e\n# x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := parse("f", data)
		if err != nil {
			return
		}
		for i := 1; i < len(recs); i++ {
			if recs[i-1].Key > recs[i].Key {
				t.Fatalf("records out of order: %q after %q", recs[i].Key, recs[i-1].Key)
			}
		}
	})
}
