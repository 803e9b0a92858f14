package nss

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testState has what nss provisions (active users, a production account,
// provisioned collaborations with their active members) and what it must
// leave out.
func testState() *directory.State {
	active := directory.StatusActive
	return &directory.State{
		Users: []directory.UserState{
			{User: &directory.User{UID: "alice", UIDNumber: 10001, GIDNumber: 20001, Name: "Alice Martin", Home: "/home/alice", Shell: "/bin/bash"}, Status: active},
			{User: &directory.User{UID: "bob", UIDNumber: 10002, GIDNumber: 20001, Name: "Bob: the\nBuilder", Home: "/home/bob", Shell: "/bin/zsh"}, Status: active},
			{User: &directory.User{UID: "carol", UIDNumber: 10003, GIDNumber: 20001, Home: "/home/carol", Shell: "/bin/sh"}, Status: directory.StatusPending},
			{User: &directory.User{UID: "dave", UIDNumber: 10004, GIDNumber: 20001, Home: "/home/dave", Shell: "/bin/sh"}, Status: directory.StatusSuspended},
		},
		Collaborations: []directory.CollaborationState{
			{Collaboration: &directory.Collaboration{Name: "empty", GIDNumber: 20003}, Status: active, Provisioned: true},
			{Collaboration: &directory.Collaboration{Name: "proj1", GIDNumber: 20001, Members: []string{"alice", "bob", "carol"}},
				Status: active, Provisioned: true, ActiveMembers: []string{"alice", "bob"}},
			{Collaboration: &directory.Collaboration{Name: "old", GIDNumber: 20004, Members: []string{"alice"}}, Status: directory.StatusExpired},
		},
		ProductionAccounts: []directory.ProductionState{
			{ProductionAccount: directory.ProductionAccount{Name: "proj1_robot", UIDNumber: 30001, GIDNumber: 20001, Home: "/home/proj1_robot", Shell: "/bin/bash", Collaboration: "proj1"}, Active: true},
			{ProductionAccount: directory.ProductionAccount{Name: "old_robot", UIDNumber: 30002, GIDNumber: 20004, Home: "/home/old_robot", Shell: "/bin/bash", Collaboration: "old"}},
		},
	}
}

func apply(t *testing.T, tg *Target, snap *directory.State) *engine.Plan {
	t.Helper()
	p, err := enginetest.Plan(context.Background(), tg, snap)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGolden(t *testing.T) {
	tg := &Target{Dir: t.TempDir()}
	apply(t, tg, testState())
	for _, f := range []string{"passwd", "group"} {
		got, err := os.ReadFile(filepath.Join(tg.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", f+".golden")
		if *update {
			os.WriteFile(golden, got, 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s:\n%s\nwant:\n%s", f, got, want)
		}
		if st, _ := os.Stat(filepath.Join(tg.Dir, f)); st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", f, st.Mode().Perm())
		}
	}
}

func TestApplyIdempotent(t *testing.T) {
	tg := &Target{Dir: t.TempDir()}
	apply(t, tg, testState())
	passwd := filepath.Join(tg.Dir, "passwd")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(passwd, old, old)

	p := apply(t, tg, testState())
	if len(p.Changes) != 0 {
		t.Errorf("second plan has changes: %+v", p.Changes)
	}
	if st, _ := os.Stat(passwd); !st.ModTime().Equal(old) {
		t.Errorf("unchanged file rewritten (mtime %v)", st.ModTime())
	}
	// A change to groups only leaves passwd alone.
	snap := testState()
	snap.Collaborations[1].ActiveMembers = []string{"alice"}
	if p = apply(t, tg, snap); len(p.Changes) != 1 {
		t.Errorf("changes = %+v", p.Changes)
	}
	if st, _ := os.Stat(passwd); !st.ModTime().Equal(old) {
		t.Errorf("passwd rewritten for a group change")
	}
	entries, _ := os.ReadDir(tg.Dir)
	if len(entries) != 2 {
		t.Errorf("leftover files: %v", entries)
	}
}

func TestCurrentParseErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "passwd"), []byte("alice:x:1:1:A:/h:/bin/sh\n# comment\n\nbroken:line\n"), 0o644)
	_, err := (&Target{Dir: dir}).Current(context.Background())
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "passwd")+":4: 2 fields, want 7") {
		t.Errorf("err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "passwd"), []byte("alice:x:one:1:A:/h:/bin/sh\n"), 0o644)
	if _, err := (&Target{Dir: dir}).Current(context.Background()); err == nil || !strings.Contains(err.Error(), ":1: id \"one\"") {
		t.Errorf("err = %v", err)
	}
	recs, err := (&Target{Dir: filepath.Join(dir, "missing")}).Current(context.Background())
	if err != nil || len(recs) != 0 {
		t.Errorf("missing dir: %v %v", recs, err)
	}
}

// FuzzParse: no file content makes the parser panic, and every record it
// accepts has the right number of fields.
func FuzzParse(f *testing.F) {
	f.Add("passwd", "alice:x:1:1:A:/h:/bin/sh\n")
	f.Add("group", "g:x:5:a,b\n#c\n")
	f.Add("group", "::::\n")
	f.Fuzz(func(t *testing.T, kind, data string) {
		if kind != KindPasswd && kind != KindGroup {
			kind = KindGroup
		}
		recs, err := parse("f", kind, strings.NewReader(data))
		if err != nil {
			return
		}
		for _, r := range recs {
			if n := strings.Count(r.Value, ":") + 1; n != fieldCount[kind] {
				t.Errorf("accepted %q with %d fields", r.Value, n)
			}
		}
	})
}

// TestApplyWritesOnlyChangedFiles: a plan that changes groups only
// rewrites the group file; the passwd file is not even read (an edit made
// to it by hand stays until a full reconcile reads the real state).
func TestApplyWritesOnlyChangedFiles(t *testing.T) {
	tg := &Target{Dir: t.TempDir()}
	apply(t, tg, testState())
	passwd := filepath.Join(tg.Dir, "passwd")
	os.WriteFile(passwd, []byte("edited:x:1:1::/:/bin/sh\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(passwd, old, old)

	st := testState()
	st.Collaborations[1].ActiveMembers = []string{"alice"}
	desired, err := tg.Desired(st)
	if err != nil {
		t.Fatal(err)
	}
	known, err := tg.Desired(testState())
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.NewPlan(tg.Name(), known, desired)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Kind != KindGroup {
		t.Fatalf("plan: %+v", p.Changes)
	}
	if err := tg.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(passwd); !fi.ModTime().Equal(old) {
		t.Error("passwd was rewritten by a plan without passwd changes")
	}
	if group, _ := os.ReadFile(filepath.Join(tg.Dir, "group")); !strings.Contains(string(group), "proj1:x:20001:alice\n") {
		t.Errorf("group file:\n%s", group)
	}
}

// TestDesiredReusesLines: a second desired state is the same as one made
// from scratch, and its unchanged lines are the first one's strings.
func TestDesiredReusesLines(t *testing.T) {
	tg := &Target{InstanceName: "nss"}
	first, err := tg.Desired(testState())
	if err != nil {
		t.Fatal(err)
	}
	st := testState()
	st.Collaborations[1].ActiveMembers = []string{"alice"} // proj1 loses bob
	st.Users[2].Status = directory.StatusActive            // carol arrives
	st.Users[0].User = &directory.User{UID: "alice", UIDNumber: 10001, GIDNumber: 20001, Name: "Alice Dupont",
		Home: "/home/alice", Shell: "/bin/bash"} // alice renamed
	second, err := tg.Desired(st)
	if err != nil {
		t.Fatal(err)
	}
	scratch, err := (&Target{InstanceName: "nss"}).Desired(st)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(second, scratch) {
		t.Fatalf("second desired state:\n%v\nfrom scratch:\n%v", second, scratch)
	}
	old := map[string]string{}
	for _, r := range first {
		old[r.Kind+"/"+r.Key] = r.Value
	}
	shared := 0
	for _, r := range second {
		if o, ok := old[r.Kind+"/"+r.Key]; ok && o == r.Value {
			if unsafe.StringData(o) != unsafe.StringData(r.Value) {
				t.Errorf("%s %s is unchanged but copied", r.Kind, r.Key)
			}
			shared++
		}
	}
	if want := len(second) - 3; shared != want { // proj1, carol and alice changed
		t.Errorf("%d lines reused, want %d", shared, want)
	}
}

// TestPrivateGroups: users' private groups are group lines of their own,
// merged in name order with the collaborations' (the records must come in
// order: the engine diffs them without sorting).
func TestPrivateGroups(t *testing.T) {
	st := testState()
	st.Users[0].PrivateGroup, st.Users[0].OwnGroup = "alice", true
	st.Users[1].PrivateGroup, st.Users[1].OwnGroup = "zz-bob", true
	st.Users[2].PrivateGroup = "carol" // not provisioned by the rules
	tg := &Target{Dir: t.TempDir()}
	apply(t, tg, st)
	got, _ := os.ReadFile(filepath.Join(tg.Dir, "group"))
	want := "alice:x:20001:\nempty:x:20003:\nproj1:x:20001:alice,bob\nzz-bob:x:20001:\n"
	if string(got) != want {
		t.Errorf("group:\n%s\nwant\n%s", got, want)
	}
}

// TestHolds: the files hold the desired records when they are, byte for
// byte, what Apply writes for them; anything else is read whole.
func TestHolds(t *testing.T) {
	state := testState()
	long := make([]string, 20000) // a group line longer than the 64 KiB compared at a time
	for i := range long {
		long[i] = fmt.Sprintf("member%05d", i)
	}
	state.Collaborations = append(state.Collaborations, directory.CollaborationState{
		Collaboration: &directory.Collaboration{Name: "huge", GIDNumber: 20005, Members: long},
		Status:        directory.StatusActive, Provisioned: true, ActiveMembers: long})
	edit := func(file string, fn func(string) string) func(dir string) {
		return func(dir string) {
			p := filepath.Join(dir, file)
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, []byte(fn(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func(dir string)
		recs   func(engine.Records) []engine.Record
		want   bool
	}{
		{name: "as written", want: true},
		{name: "a line more", change: edit("passwd", func(s string) string { return s + "eve:x:10009:20001::/home/eve:/bin/sh\n" })},
		{name: "the last newline gone", change: edit("group", func(s string) string { return strings.TrimSuffix(s, "\n") })},
		{name: "a comment", change: edit("passwd", func(s string) string { return "# by hand\n" + s })},
		{name: "a member changed in the long line", change: edit("group", func(s string) string { return strings.Replace(s, "member15000", "member15001", 1) })},
		{name: "the long line cut short", change: edit("group", func(s string) string { return strings.Replace(s, ",member19999", "", 1) })},
		{name: "passwd missing", change: func(dir string) { os.Remove(filepath.Join(dir, "passwd")) }},
		{name: "a record less", recs: func(r engine.Records) []engine.Record { return r.Slice()[1:] }},
		{name: "no records, both files missing", want: true,
			change: func(dir string) { os.Remove(filepath.Join(dir, "passwd")); os.Remove(filepath.Join(dir, "group")) },
			recs:   func(engine.Records) []engine.Record { return nil }},
		{name: "no records, files there", recs: func(engine.Records) []engine.Record { return nil }},
		{name: "passwd before group", recs: func(r engine.Records) []engine.Record {
			var g, p []engine.Record
			for rec := range r.All() {
				if rec.Kind == KindGroup {
					g = append(g, rec)
				} else {
					p = append(p, rec)
				}
			}
			return append(p, g...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &Target{Dir: t.TempDir()}
			p := apply(t, tg, state)
			if tc.change != nil {
				tc.change(tg.Dir)
			}
			recs := p.Desired.All()
			if tc.recs != nil {
				recs = slices.Values(tc.recs(p.Desired))
			}
			got, err := tg.Holds(context.Background(), recs)
			if err != nil || got != tc.want {
				t.Errorf("Holds = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// FuzzHolds: Holds says the files hold records only when they are those
// records as Apply writes them: never for a file that reads differently.
func FuzzHolds(f *testing.F) {
	f.Add("g:x:5:a,b\n", "alice:x:1:1:A:/h:/bin/sh\n")
	f.Add("b:x:6:\na:x:5:\n", "")
	f.Add("g:x:5:a\n#c\n", "\n")
	f.Add("g:x:5:a", "alice:x:1:1:A:/h:/bin/sh\nalice:x:1:1:A:/h:/bin/sh\n")
	f.Fuzz(func(t *testing.T, group, passwd string) {
		tg := &Target{Dir: t.TempDir()}
		for kind, data := range map[string]string{KindGroup: group, KindPasswd: passwd} {
			if err := os.WriteFile(filepath.Join(tg.Dir, kind), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		read, err := tg.Current(context.Background())
		if err != nil {
			return
		}
		recs := engine.RecordsOf(read)
		written := map[string]string{}
		for r := range recs.All() {
			written[r.Kind] += r.Value + "\n"
		}
		held, err := tg.Holds(context.Background(), recs.All())
		if err != nil {
			t.Fatal(err)
		}
		if want := written[KindGroup] == group && written[KindPasswd] == passwd; held != want {
			t.Errorf("Holds = %v for files %q and %q, reading as %q", held, group, passwd, written)
		}
	})
}

// TestFirstDesiredSizedByTheFiles: a first run against files in sync
// makes its lines in one buffer of the files' size: it neither grows it
// nor copies it to fit (at 100k users that was half of the records' time).
func TestFirstDesiredSizedByTheFiles(t *testing.T) {
	st := &directory.State{}
	for i := range 2000 {
		uid := fmt.Sprintf("user%05d", i)
		st.Users = append(st.Users, directory.UserState{Status: directory.StatusActive, User: &directory.User{UID: uid,
			UIDNumber: uint32(10000 + i), GIDNumber: 20001, Name: "A user with a name long enough " + uid,
			Home: "/home/with/a/long/path/to/" + uid, Shell: "/usr/local/bin/some-shell"}})
	}
	dir := t.TempDir()
	apply(t, &Target{InstanceName: "nss", Dir: dir}, st)
	tg := &Target{InstanceName: "nss", Dir: dir}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	recs, err := tg.Desired(st)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	content := 0
	for _, r := range recs {
		content += len(r.Value)
	}
	// The records, the lines, where each line lies, and a little.
	want := uint64(cap(recs))*uint64(unsafe.Sizeof(engine.Record{})) + uint64(content+content/16) + uint64(cap(recs))*24 + 16<<10
	if got := after.TotalAlloc - before.TotalAlloc; got > want {
		t.Errorf("a first run of %d lines (%d bytes) allocated %d bytes, want at most %d", len(recs), content, got, want)
	}
}
