package nss

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/sync/engine"
)

// TestDesiredSinceIsDesired drives random centres (case clashes, names
// and numbers taken twice under every action, shared private groups,
// users named as collaborations) through an Evaluator, and at every step
// patches the records desired for an earlier state by DesiredSince: the
// records are the whole desired state's, and a state whose whole desired
// state holds a key twice is refused either way.
func TestDesiredSinceIsDesired(t *testing.T) {
	var patched, refused, twice int
	for seed := range uint64(100) {
		w := directorytest.NewWorld(seed)
		ev := &directory.Evaluator{}
		tg := &Target{InstanceName: "nss"}
		var (
			recs  engine.Records
			basis *directory.State
			prev  directory.Previous
		)
		for step := range 60 {
			what := "start"
			if step > 0 {
				what = w.Step()
			}
			st := ev.Evaluate(w.Snap, w.Pol, prev)
			prev = st.Statuses()
			whole, err := (&Target{}).Desired(st)
			if err != nil {
				t.Fatal(err)
			}
			_, wholeErr := engine.Diff(nil, whole)
			desires, ok, err := tg.DesiredSince(basis, st)
			if err != nil {
				t.Fatal(err)
			}
			if wholeErr != nil {
				twice++
			}
			if !ok {
				if wholeErr == nil && w.R.IntN(4) > 0 {
					recs, basis = engine.RecordsOf(whole), st
				}
				continue
			}
			changes, err := recs.ChangesTo(desires)
			switch {
			case wholeErr != nil && err == nil:
				t.Fatalf("seed %d step %d (%s): the whole desired state is refused (%v), the patched one not", seed, step, what, wholeErr)
			case wholeErr == nil && err != nil:
				t.Fatalf("seed %d step %d (%s): the patched desired state is refused (%v), the whole one not", seed, step, what, err)
			case err != nil:
				refused++
				continue
			}
			next := recs.Patch(changes)
			if got := next.Slice(); !slices.Equal(got, whole) {
				t.Fatalf("seed %d step %d (%s): patched records differ from the whole desired state:\n%s", seed, step, what, recordDiff(got, whole))
			}
			patched++
			// Mostly as the engine does; sometimes a state skipped (a
			// busy target takes the newest), so a difference spans runs.
			if w.R.IntN(4) > 0 {
				recs, basis = next, st
			}
		}
	}
	t.Logf("%d states patched, %d refused either way; %d whole desired states with a key twice", patched, refused, twice)
	if patched < 2000 {
		t.Errorf("only %d states patched: the difference is hardly used", patched)
	}
}

// recordDiff lists what differs between two sorted lists.
func recordDiff(got, want []engine.Record) string {
	changes, err := engine.Diff(want, got)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(changes)
}

// TestDesiredSinceRefusesAKeyTwice: two collaborations named alike
// (rule 7 only reported); when the second is provisioned, the whole
// desired state has its group twice, and so does the patched one, though
// the first, unchanged, is not among the entries that changed.
func TestDesiredSinceRefusesAKeyTwice(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	pol := directorytest.Policy(now)
	pol.Actions = map[directory.ViolationKind]directory.Action{directory.KindDuplicateName: directory.ActionReport}
	snap := func(second directory.Status) *directory.Snapshot {
		s := &directory.Snapshot{
			Users: []*directory.User{{DN: "uid=amy,ou=people", UID: "amy", UIDNumber: 10000, GIDNumber: 100, Affiliation: "staff"}},
			Collaborations: []*directory.Collaboration{
				{DN: "cn=g,ou=a", Name: "g", GIDNumber: 20000, Kind: directory.KindScientific, Status: directory.StatusActive, Members: []string{"amy"},
					Contacts: map[directory.Role][]string{directory.RoleCollaboration: {"amy"}}},
				{DN: "cn=g,ou=b", Name: "g", GIDNumber: 20001, Kind: directory.KindScientific, Status: second, Members: []string{"amy"},
					Contacts: map[directory.Role][]string{directory.RoleCollaboration: {"amy"}}},
			},
		}
		s.Sort()
		return s
	}
	ev := &directory.Evaluator{}
	tg := &Target{InstanceName: "nss"}
	first := ev.Evaluate(snap(directory.StatusSuspended), pol, nil)
	whole, err := tg.Desired(first)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Diff(nil, whole); err != nil {
		t.Fatalf("before: %v", err)
	}
	second := ev.Evaluate(snap(directory.StatusActive), pol, first.Statuses())
	if w, _ := (&Target{}).Desired(second); func() error { _, err := engine.Diff(nil, w); return err }() == nil {
		t.Fatalf("the whole desired state after has no key twice: the test tests nothing")
	}
	desires, ok, err := tg.DesiredSince(first, second)
	if err != nil || !ok {
		t.Fatalf("DesiredSince: %v %v (evaluator %+v)", ok, err, ev.Stats())
	}
	if _, err := engine.RecordsOf(whole).ChangesTo(desires); err == nil {
		t.Fatalf("the patched desired state has group g twice and is not refused: %+v", desires)
	}
}
