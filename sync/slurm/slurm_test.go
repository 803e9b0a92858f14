package slurm

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/internal/duration"
	slurmtest "github.com/collabsync/collabsync/internal/testharness/slurm"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

// centre evaluates a directory: every user internal, so active while in
// an active collaboration, each collaboration's first member its contact.
func centre(t *testing.T, users []string, collabs []directory.Collaboration) *directory.State {
	t.Helper()
	us := make([]*directory.User, len(users))
	for i, uid := range users {
		us[i] = &directory.User{UID: uid, Mail: uid + "@example.org"}
	}
	for i := range collabs {
		collabs[i].Contacts = map[directory.Role][]string{directory.RoleCollaboration: collabs[i].Members[:1]}
	}
	return directorytest.Centre(time.Now(), us, collabs)
}

// counter counts sacctmgr runs and, among them, the changing ones.
type counter struct{ runs int }

func (c *counter) target(cl *slurmtest.Cluster) *Target {
	s := Kind().NewSettings().(*Settings)
	s.SlurmConf, s.Cluster, s.Timeout = cl.Conf, cl.Name, duration.Duration(30*time.Second)
	s.Fairshare = 10
	s.LoadThreshold = 1 // every addition through a load file (TestSlurmTarget takes the commands)
	return New("slurm", s, engine.Env{Call: func(string) { c.runs++ }})
}

// reconcile plans (reading sacctmgr) and applies, returning the apply's error.
func reconcile(t *testing.T, tg *Target, st *directory.State) (*engine.Plan, error) {
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

func assocs(t *testing.T, c *slurmtest.Cluster) string {
	t.Helper()
	out, err := c.Run("sacctmgr", "-P", "-n", "show", "assoc", "where", "cluster="+c.Name, "format=Account,User,ParentName,Fairshare")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func defaultOf(t *testing.T, c *slurmtest.Cluster, user string) string {
	t.Helper()
	out, _ := c.Run("sacctmgr", "-P", "-n", "show", "user", "where", "name="+user, "format=DefaultAccount")
	return strings.TrimSpace(out)
}

// TestAgainstSlurm: against a real slurmdbd (with slurmctld and slurmd,
// associations enforced): the accounts and associations match the
// directory, sshare shows the fairshare, a member's job under the
// collaboration's account is accepted and one under another account is
// rejected, a user leaving their administrative collaboration gets a new
// default account with no error, a user with a running job who leaves a
// collaboration keeps the association until the job ends, a hand-made
// account is untouched, and a second sync runs no changing command.
func TestAgainstSlurm(t *testing.T) {
	c := slurmtest.StartT(t, slurmtest.Options{})
	must := func(name string, args ...string) string { t.Helper(); return c.Must(t, name, args...) }
	// Made by hand: an account under root with a user, the user's default.
	must("sacctmgr", "-i", "add", "account", "physics", "parent=root", "cluster="+c.Name, "description=hand", "organization=lab")
	must("sacctmgr", "-i", "add", "user", "bin", "account=physics", "cluster="+c.Name, "defaultaccount=physics")

	// daemon and bin exist on this machine, so sbatch --uid can run as them.
	users := []string{"alice", "bin", "daemon", "sys"}
	collabs := func() []directory.Collaboration {
		return []directory.Collaboration{
			{Name: "atlas", Members: []string{"alice", "bin", "daemon", "sys"}, Fairshare: 300},
			{Name: "cms", Members: []string{"alice", "bin"}},
			{Name: "lab", Members: []string{"daemon"}, Kind: directory.KindAdministrative},
			{Name: "lab2", Members: []string{"sys"}, Kind: directory.KindAdministrative},
		}
	}
	var n counter
	tg := n.target(c)
	if _, err := reconcile(t, tg, centre(t, users, collabs())); err != nil {
		t.Fatal(err)
	}
	// Two reads, the parent account, one load of the rest.
	if n.runs != 4 {
		t.Errorf("first sync: %d sacctmgr runs, want 4", n.runs)
	}
	got := assocs(t, c)
	for _, want := range []string{"collaborations||root|1", "atlas||collaborations|300", "cms||collaborations|10", "lab||collaborations|10",
		"atlas|alice||parent", "atlas|bin||parent", "atlas|daemon||parent", "cms|alice||parent", "cms|bin||parent", "lab|daemon||parent",
		"physics||root|1", "physics|bin||1"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("sacctmgr show assoc lacks %q:\n%s", want, got)
		}
	}
	if d := defaultOf(t, c, "daemon"); d != "lab" {
		t.Errorf("daemon's default account = %q, want lab (administrative)", d)
	}
	if d := defaultOf(t, c, "bin"); d != "physics" {
		t.Errorf("bin's default account set by hand became %q", d)
	}
	if share := must("sshare", "-P", "-n", "-A", "atlas", "-o", "Account,User,RawShares"); !strings.Contains(share, "atlas||300") {
		t.Errorf("sshare: %s", share)
	}

	// A second sync: two reads, nothing else.
	n.runs = 0
	if p, err := reconcile(t, n.target(c), centre(t, users, collabs())); err != nil || len(p.Changes) != 0 || n.runs != 2 {
		t.Errorf("second sync: %d sacctmgr runs, changes %+v, err %v", n.runs, p.Changes, err)
	}

	// Enforced associations: daemon may use atlas, not cms.
	if _, err := c.Run("sbatch", "--uid=daemon", "-A", "cms", "-o", "/dev/null", "--chdir=/tmp", "--wrap", "true"); err == nil ||
		!strings.Contains(err.Error(), "Invalid account") {
		t.Errorf("a job under a foreign account: %v", err)
	}
	var jobs []string
	for _, uid := range []string{"bin", "sys"} {
		job := strings.TrimSpace(strings.TrimPrefix(must("sbatch", "--uid="+uid, "-A", "atlas", "-o", "/dev/null", "--chdir=/tmp", "--wrap", "sleep 60"), "Submitted batch job "))
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(must("squeue", "-h", "-j", job, "-o", "%T"), "RUNNING") {
			if time.Now().After(deadline) {
				t.Fatalf("job %s not running: %s", job, must("squeue"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		jobs = append(jobs, job)
	}

	// daemon leaves lab, his administrative collaboration and default
	// account; bin leaves atlas, where his job runs; sys leaves both his
	// collaborations, his job running in atlas: he keeps lab2, his default,
	// with it (a user is never left without a default account).
	next := collabs()
	next[0].Members = []string{"alice", "daemon"}
	next[2].Members = []string{"alice"}
	next[3].Members = []string{"alice"}
	_, err := reconcile(t, tg, centre(t, users, next))
	if !errors.Is(err, ErrRunningJobs) || !strings.Contains(err.Error(), "atlas/bin") {
		t.Fatalf("removal under a running job: %v", err)
	}
	if got := assocs(t, c); !strings.Contains(got, "atlas|bin||parent\n") || strings.Contains(got, "lab|daemon") {
		t.Errorf("while the job runs:\n%s", got)
	}
	if d := defaultOf(t, c, "daemon"); d != "atlas" {
		t.Errorf("daemon's default after leaving lab = %q, want atlas (what he still has)", d)
	}
	if got := assocs(t, c); !strings.Contains(got, "atlas|sys||parent\n") || !strings.Contains(got, "lab2|sys||parent\n") || defaultOf(t, c, "sys") != "lab2" {
		t.Errorf("sys while his job runs (default %q):\n%s", defaultOf(t, c, "sys"), got)
	}
	if p, _ := enginetest.Plan(context.Background(), tg, centre(t, users, next)); len(p.Notes) == 0 || !strings.Contains(p.Notes[0], "atlas/bin") {
		t.Errorf("plan does not report the kept association: %+v", p)
	}
	must("scancel", jobs...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := reconcile(t, tg, centre(t, users, next))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrRunningJobs) || time.Now().After(deadline) {
			t.Fatalf("after the job ended: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	got = assocs(t, c)
	if strings.Contains(got, "atlas|bin|") || !strings.Contains(got, "cms|bin||parent\n") || strings.Contains(got, "|sys|") {
		t.Errorf("bin's and sys's associations after the jobs ended:\n%s", got)
	}
	if !strings.Contains(got, "physics||root|1\n") || !strings.Contains(got, "physics|bin||1\n") {
		t.Errorf("the hand-made account changed:\n%s", got)
	}
}

func TestParseState(t *testing.T) {
	st, err := parseState("root|||1\nroot|root||1\ncollaborations||root|1\nAtlas||collaborations|300\natlas|alice||parent\n"+
		"physics||root|1\nphysics|bob||1\nsub||atlas|5\n", "alice|atlas\nbob|physics\nroot|root\n", "collaborations")
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.Record{{Kind: KindAccount, Key: "atlas", Value: "fairshare=300"}, {Kind: KindAssoc, Key: "atlas alice", Value: "fairshare=parent"},
		{Kind: KindDefault, Key: "alice", Value: "atlas"}}
	if !reflect.DeepEqual(st.recs, want) {
		t.Errorf("records %+v", st.recs)
	}
	if !st.foreign["physics"] || !st.foreign["sub"] || !st.foreign["collaborations"] || st.foreign["atlas"] || !st.ownDefault["bob"] {
		t.Errorf("foreign %v, own default %v", st.foreign, st.ownDefault)
	}
	if _, err := parseState("a|b|c\n", "", "collaborations"); err == nil || !strings.Contains(err.Error(), "line 1: 3 fields") {
		t.Errorf("a short line: %v", err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add("collaborations||root|1\natlas||collaborations|300\natlas|alice||parent\n", "alice|atlas\n")
	f.Fuzz(func(t *testing.T, assocs, users string) {
		st, err := parseState(assocs, users, "collaborations")
		if err != nil {
			return
		}
		for i := 1; i < len(st.recs); i++ {
			a, b := st.recs[i-1], st.recs[i]
			if a.Kind > b.Kind || a.Kind == b.Kind && a.Key >= b.Key {
				t.Fatalf("records not in order or repeated: %+v then %+v", a, b)
			}
		}
	})
}

func TestSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		keys string
	}{
		{"defaults", func(*Settings) {}, ""},
		{"relative sacctmgr", func(s *Settings) { s.Sacctmgr = "sacctmgr" }, "sacctmgr"},
		{"missing sacctmgr", func(s *Settings) { s.Sacctmgr = "/nonexistent/sacctmgr" }, "sacctmgr"},
		{"cluster", func(s *Settings) { s.Cluster = "My Cluster" }, "cluster"},
		{"root as parent", func(s *Settings) { s.Parent = "root" }, "parent"},
		{"fairshare", func(s *Settings) { s.Fairshare = 0 }, "fairshare"},
		{"user fairshare", func(s *Settings) { s.UserFairshare = "half" }, "user_fairshare"},
		{"timeout", func(s *Settings) { s.Timeout = 0 }, "timeout"},
		{"organization", func(s *Settings) { s.Organization = "a,b" }, "organization"},
		{"organization with a colon (the load file's separator)", func(s *Settings) { s.Organization = "a:b" }, "organization"},
		{"load threshold", func(s *Settings) { s.LoadThreshold = -1 }, "load_threshold"},
		{"load timeout", func(s *Settings) { s.LoadTimeout = 0 }, "load_timeout"},
	} {
		s := Kind().NewSettings().(*Settings)
		s.Cluster, s.Sacctmgr = "hpc", "/bin/sh" // a program that exists and root owns
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

// TestHandMadeUsersKept: an association on a managed account of a user
// the directory does not have (made by hand), and that user's default
// account, stay under foreign_users: keep, while the account stays; a
// directory user's stray association goes; with remove, all go (before:
// always removed, a whole hand-made user deleted without the guard).
func TestHandMadeUsersKept(t *testing.T) {
	st, err := parseState("collaborations||root|1\natlas||collaborations|1\natlas|alice|collaborations|1\natlas|bob|collaborations|1\n"+
		"atlas|ops-robot|collaborations|1\nold||collaborations|1\nold|legacy|collaborations|1\n",
		"alice|atlas\nbob|atlas\nops-robot|atlas\nlegacy|old\n", "collaborations")
	if err != nil {
		t.Fatal(err)
	}
	state := &directory.State{
		Users: []directory.UserState{
			{User: &directory.User{UID: "alice"}, Status: directory.StatusActive},
			{User: &directory.User{UID: "Bob"}, Status: directory.StatusActive}, // in no collaboration: his association goes
		},
		Collaborations: []directory.CollaborationState{{Collaboration: &directory.Collaboration{Name: "atlas"}, Provisioned: true, ActiveMembers: []string{"alice"}}},
	}
	for _, c := range []struct {
		foreign string
		want    []string
	}{
		{ForeignKeep, []string{"assoc atlas alice", "assoc atlas ops-robot", "default alice", "default ops-robot"}},
		{ForeignRemove, []string{"assoc atlas alice", "default alice"}},
	} {
		s := Kind().NewSettings().(*Settings)
		s.Cluster, s.ForeignUsers = "hpc", c.foreign
		tg := New("slurm", s, engine.Env{})
		tg.seen = nil
		for _, r := range st.recs {
			if r.Kind == KindAssoc || r.Kind == KindDefault {
				tg.seen = append(tg.seen, r)
			}
		}
		recs, err := tg.Desired(state)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			if r.Kind != KindAccount {
				got = append(got, r.Kind+" "+r.Key)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.foreign, got, c.want)
		}
		if notes := strings.Join(tg.Notes(), "\n"); c.foreign == ForeignKeep && !strings.Contains(notes, "keeps 2 record(s) of users the directory does not have") {
			t.Errorf("notes: %s", notes)
		}
	}
}
