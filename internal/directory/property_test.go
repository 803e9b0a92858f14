package directory_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
)

// TestEvaluatorMatchesWholeEvaluation drives random change sequences
// through an directory.Evaluator and requires, at every step, the state, the
// violations (in order) and the history a whole evaluation gives; and
// that a state, once returned, never changes.
func TestEvaluatorMatchesWholeEvaluation(t *testing.T) {
	// 100 seeds: ≈4,000 incremental runs, 2 s (30 s under -race); the
	// mutations of the evaluator this test was checked against failed
	// within the first 25 seeds. PROPERTY_SEEDS=n runs more.
	seeds, steps := 100, 60
	if n, err := strconv.Atoi(os.Getenv("PROPERTY_SEEDS")); err == nil {
		seeds = n
	}
	var incremental, whole, sinceSaved, changedSince uint64
	for seed := range uint64(seeds) {
		w := directorytest.NewWorld(seed)
		ev := directory.NewEvaluatorFlatteningPast(int(seed % 2 * 3)) // patches made flat often, for half
		var prev directory.History
		var kept, saved *directory.State
		var older []*directory.State
		var keptJSON string
		for step := range steps {
			what := "start"
			if step > 0 {
				what = w.Step()
			}
			// For half the seeds the snapshots come with uid keys, as the
			// live model's do; the whole evaluation goes without.
			whole := *w.Snap
			if seed%4 >= 2 {
				w.Snap.UIDKeys = directory.KeysOf(w.Snap.Users)
			}
			got := ev.Evaluate(w.Snap, w.Pol, prev)
			want := directory.Evaluate(&whole, w.Pol, prev)
			if diff := compareStates(got, want); diff != "" {
				t.Fatalf("seed %d step %d (%s; evaluator stats %+v): %s", seed, step, what, ev.Stats(), diff)
			}
			// The history read whole (a map, or packed as the store
			// reads it) was: let go, held as the state and what it
			// differs in, answering as it did; the status difference the
			// same as against it.
			switch prev.(type) {
			case directory.Previous, *directory.PackedHistory:
				if err := sameHistory(got.Against(), directory.PreviousOf(prev)); err != nil {
					t.Fatalf("seed %d step %d (%s): the history as held after the run: %v", seed, step, what, err)
				}
				if _, held := got.Against().(*directory.PackedHistory); held && prev.Len() > 0 {
					t.Fatalf("seed %d step %d (%s): the packed history read whole is still held", seed, step, what)
				}
			}
			gotChanged, gotGone := got.StatusChanges()
			wantChanged, wantGone := want.StatusChanges()
			if !reflect.DeepEqual(gotChanged, wantChanged) || !slices.Equal(gotGone, wantGone) {
				t.Fatalf("seed %d step %d (%s): status changes %v %v, want %v %v", seed, step, what, gotChanged, gotGone, wantChanged, wantGone)
			}
			if kept != nil {
				if j := stateJSON(t, kept); j != keptJSON {
					t.Fatalf("seed %d step %d (%s): the state of the step before changed", seed, step, what)
				}
			}
			// The entries changed since an earlier state: every entry
			// that differs is listed.
			froms := []*directory.State{kept, saved}
			if len(older) > 0 {
				froms = append(froms, older[max(0, len(older)-4)])
			}
			for _, from := range froms {
				ch, ok := got.ChangedSince(from)
				if !ok {
					continue
				}
				changedSince++
				if err := checkChanged(from, got, ch); err != nil {
					t.Fatalf("seed %d step %d (%s): changed since an earlier state: %v", seed, step, what, err)
				}
			}
			kept, keptJSON = got, stateJSON(t, got)
			// The history saved by difference from the last saved state;
			// from an older one, right or refused.
			older = append(older, got)
			for _, from := range []*directory.State{saved, older[max(0, len(older)-4)]} {
				if changed, gone, ok := ev.ChangesSince(from, got); ok {
					sinceSaved++
					wantChanged, wantGone := statusDiff(from.Statuses(), got.Statuses())
					if !reflect.DeepEqual(changed, wantChanged) || !slices.Equal(gone, wantGone) {
						t.Fatalf("seed %d step %d (%s): changes since an earlier state %v %v, want %v %v", seed, step, what, changed, gone, wantChanged, wantGone)
					}
				}
			}
			// The history: as the daemon saves it, mostly; sometimes a
			// run no target took (nothing saved), sometimes an edited one.
			switch w.R.IntN(10) {
			case 0:
				// No target took it: the history again, as serve's rules
				// hold it once read (a map let go).
				if w.R.IntN(2) == 0 && prev != nil {
					prev = got.Against()
				}
			case 1:
				saved = nil
				edited := got.Statuses()
				for k, p := range edited {
					if w.R.IntN(4) == 0 {
						p.Status = []directory.Status{directory.StatusActive, directory.StatusPending}[w.R.IntN(2)]
						edited[k] = p
					}
				}
				prev = edited
			default:
				// As the store holds it, or as serve gives it: the state
				// last saved.
				switch w.R.IntN(3) {
				case 0:
					prev = got.Statuses()
				case 1:
					prev = pack(got.Statuses())
				default:
					prev = got.History()
				}
				saved = got
				ev.Forget(got)
			}
		}
		incremental += ev.Stats().Incremental
		whole += ev.Stats().Whole
	}
	t.Logf("%d incremental runs, %d whole, %d saved by difference, %d changes since an earlier state", incremental, whole, sinceSaved, changedSince)
	if changedSince < incremental {
		t.Errorf("only %d changes since an earlier state for %d incremental runs", changedSince, incremental)
	}
	if sinceSaved < incremental/2 {
		t.Errorf("only %d of %d incremental runs saved by difference", sinceSaved, incremental)
	}
	// Most changes are the incremental kind: a test that always fell
	// back to the whole evaluation would prove nothing.
	if incremental < whole {
		t.Errorf("%d incremental runs, %d whole: the incremental path is hardly taken", incremental, whole)
	}
}

// pack is a history packed as the store reads it.
func pack(m directory.Previous) *directory.PackedHistory {
	var b directory.HistoryBuilder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p := m[k]
		b.Add([]byte(k), p.Status, []byte(p.DN), p.ID)
	}
	return b.History()
}

// sameHistory says where a history does not answer as the map m.
func sameHistory(h directory.History, m directory.Previous) error {
	if h.Len() != len(m) {
		return fmt.Errorf("%d subjects, the map %d", h.Len(), len(m))
	}
	all := directory.Previous{}
	h.All(func(key string, p directory.Provisioned) {
		if _, twice := all[key]; twice {
			all[key] = directory.Provisioned{Status: "listed twice"}
			return
		}
		all[key] = p
	})
	if !reflect.DeepEqual(all, m) {
		return fmt.Errorf("lists %v, the map %v", all, m)
	}
	for key, want := range m {
		if got, ok := h.Provisioned(key); !ok || got != want {
			return fmt.Errorf("%s: %v %v, the map %v", key, got, ok, want)
		}
	}
	for _, key := range []string{"user/nobody-here", "collaboration/nothing"} {
		if got, ok := h.Provisioned(key); ok {
			return fmt.Errorf("%s: %v, the map has none", key, got)
		}
	}
	return nil
}

// checkChanged says which entry differing between was and is the list
// of changes leaves out.
func checkChanged(was, is *directory.State, ch directory.Changed) error {
	if len(was.Users) != len(is.Users) || len(was.Collaborations) != len(is.Collaborations) || len(was.ProductionAccounts) != len(is.ProductionAccounts) {
		return fmt.Errorf("entries added or removed between two states of one series")
	}
	for _, l := range [][]int{ch.Users, ch.Collaborations, ch.ProductionAccounts} {
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			return fmt.Errorf("list %v not ascending", l)
		}
	}
	for i := range is.Users {
		if _, listed := slices.BinarySearch(ch.Users, i); !listed && was.Users[i] != is.Users[i] {
			return fmt.Errorf("user %s changed, not listed: %+v → %+v", is.Users[i].UID, was.Users[i], is.Users[i])
		}
	}
	for i := range is.Collaborations {
		if _, listed := slices.BinarySearch(ch.Collaborations, i); !listed && !reflect.DeepEqual(was.Collaborations[i], is.Collaborations[i]) {
			return fmt.Errorf("collaboration %s changed, not listed", is.Collaborations[i].Name)
		}
	}
	for i := range is.ProductionAccounts {
		if _, listed := slices.BinarySearch(ch.ProductionAccounts, i); !listed && !reflect.DeepEqual(was.ProductionAccounts[i], is.ProductionAccounts[i]) {
			return fmt.Errorf("production account %s changed, not listed", is.ProductionAccounts[i].Name)
		}
	}
	return nil
}

// statusDiff is what Statuses changed from was to is.
func statusDiff(was, is directory.Previous) (changed directory.Previous, gone []string) {
	changed = directory.Previous{}
	for k, p := range is {
		if q, ok := was[k]; !ok || q != p {
			changed[k] = p
		}
	}
	for k := range was {
		if _, ok := is[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone)
	return changed, gone
}

func stateJSON(t *testing.T, s *directory.State) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compareStates names the first difference between two states.
func compareStates(got, want *directory.State) string {
	if !reflect.DeepEqual(got.Users, want.Users) {
		for i := range min(len(got.Users), len(want.Users)) {
			if g, w := got.Users[i], want.Users[i]; !reflect.DeepEqual(g, w) {
				return fmt.Sprintf("user %s: got %+v (%+v), want %+v (%+v)", w.UID, g, *g.User, w, *w.User)
			}
		}
		return fmt.Sprintf("%d users, want %d", len(got.Users), len(want.Users))
	}
	if !reflect.DeepEqual(got.Collaborations, want.Collaborations) {
		for i := range min(len(got.Collaborations), len(want.Collaborations)) {
			if g, w := got.Collaborations[i], want.Collaborations[i]; !reflect.DeepEqual(g, w) {
				return fmt.Sprintf("collaboration %s: got %+v, want %+v", w.Name, g, w)
			}
		}
		return "collaborations differ"
	}
	if !reflect.DeepEqual(got.ProductionAccounts, want.ProductionAccounts) {
		return fmt.Sprintf("production accounts: got %+v, want %+v", got.ProductionAccounts, want.ProductionAccounts)
	}
	if !slices.Equal(got.Violations, want.Violations) {
		return fmt.Sprintf("violations:\ngot  %v\nwant %v", got.Violations, want.Violations)
	}
	if !got.NextExpiry.Equal(want.NextExpiry) {
		return fmt.Sprintf("next expiry %v, want %v", got.NextExpiry, want.NextExpiry)
	}
	gc, gg := got.StatusChanges()
	wc, wg := want.StatusChanges()
	if !reflect.DeepEqual(gc, wc) || !slices.Equal(gg, wg) {
		return fmt.Sprintf("status changes: got %v %v, want %v %v", gc, gg, wc, wg)
	}
	for _, u := range want.Users {
		g, ok1 := got.User(u.UID)
		w, ok2 := want.User(u.UID)
		if ok1 != ok2 || ok1 && g.DN != w.DN {
			return fmt.Sprintf("User(%q) finds %v, want %v", u.UID, g, w)
		}
	}
	return ""
}

// TestChangedSinceOtherSeries: states of another directory.Evaluator, of an
// earlier whole evaluation, or given in the wrong order are compared
// with none.
func TestChangedSinceOtherSeries(t *testing.T) {
	w := directorytest.NewWorld(1)
	var ev, other directory.Evaluator
	a := ev.Evaluate(w.Snap, w.Pol, nil)
	b := ev.Evaluate(w.Snap, w.Pol, nil)
	if _, ok := b.ChangedSince(a); !ok {
		t.Fatalf("two runs of one series: not ok (%+v)", ev.Stats())
	}
	for name, pair := range map[string][2]*directory.State{
		"another evaluator": {b, other.Evaluate(w.Snap, w.Pol, nil)},
		"wrong order":       {b, a},
		"no evaluator":      {directory.Evaluate(w.Snap, w.Pol, nil), directory.Evaluate(w.Snap, w.Pol, nil)},
		"nil":               {nil, b},
	} {
		if _, ok := pair[1].ChangedSince(pair[0]); ok {
			t.Errorf("%s: ok", name)
		}
	}
	ev.Reset()
	if _, ok := ev.Evaluate(w.Snap, w.Pol, nil).ChangedSince(b); ok {
		t.Errorf("across a whole evaluation: ok")
	}
}

// TestWholeEvaluationOnEveryCore: the members of a whole evaluation,
// looked up on every core, are those found on one (under -race: without
// a race), members unknown and out of order included.
func TestWholeEvaluationOnEveryCore(t *testing.T) {
	snap := directorytest.Heavy(20_000, 2_000)
	for i, c := range snap.Collaborations {
		if i%3 == 0 {
			c.Members = append(slices.Clone(c.Members), "nobody", "a-late-member")
		}
	}
	p := directory.Policy{Now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), ReviewGrace: 30 * 24 * time.Hour}
	prev := runtime.GOMAXPROCS(1)
	one := directory.Evaluate(snap, p, nil)
	runtime.GOMAXPROCS(max(prev, 4))
	every := directory.Evaluate(snap, p, nil)
	runtime.GOMAXPROCS(prev)
	if diff := compareStates(every, one); diff != "" {
		t.Fatal(diff)
	}
}

// TestEvaluationWithSnapshotKeys: the rules find members through the uid
// keys a source gives with its snapshot as through their own, with uids
// sharing their first eight bytes and one uid on two entries.
func TestEvaluationWithSnapshotKeys(t *testing.T) {
	snap := directorytest.Heavy(5_000, 500)
	users := slices.Clone(snap.Users)
	for i, uid := range []string{"external_member_1", "external_member_2", "external_member_1", "external_"} {
		u := *users[i]
		u.UID, u.DN, u.UIDNumber = uid, fmt.Sprintf("uid=%s,ou=x%d,dc=example,dc=org", uid, i), uint32(900_000+i)
		users = append(users, &u)
	}
	snap.Users = users
	for i, c := range snap.Collaborations {
		if i%2 == 0 {
			c.Members = append(slices.Clone(c.Members), "external_member_1", "external_member_3", "external_", "external")
		}
	}
	snap.Sort()
	p := directory.Policy{Now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), ReviewGrace: 30 * 24 * time.Hour}
	own := directory.Evaluate(snap, p, nil)
	keyed := *snap
	keyed.Users = slices.Clone(snap.Users)
	keyed.UIDKeys = directory.SortUsers(keyed.Users)
	if diff := compareStates(directory.Evaluate(&keyed, p, nil), own); diff != "" {
		t.Fatal(diff)
	}
}

// TestUniquenessWithSnapshotKeys: with uid keys, only the users whose
// name folds to another go in the names' map and the rest are found by
// key; names clash as when every name is in the map: names that differ
// only in case, one uid on two entries, long uids of one key, users named
// as collaborations and production accounts, and a history of who was
// provisioned (the incumbents keep their names).
func TestUniquenessWithSnapshotKeys(t *testing.T) {
	pool := []string{"alice", "Alice", "ALICE", "bob", "bob", "external_member_1", "external_member_2", "External_member_1",
		"external_", "c01", "C01", "robot", "root", "zed"}
	p := directorytest.Policy(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 1))
		snap := &directory.Snapshot{}
		prev := directory.Previous{}
		for i := range 1 + r.IntN(12) {
			uid := pool[r.IntN(len(pool))]
			u := &directory.User{UID: uid, DN: fmt.Sprintf("uid=%s,ou=p%d,dc=x", uid, i), UIDNumber: uint32(1000 + r.IntN(20)), GIDNumber: 100}
			snap.Users = append(snap.Users, u)
			if r.IntN(3) == 0 {
				prev[directory.SubjectKey(directory.SubjectUser, uid)] = directory.Provisioned{Status: directory.StatusActive, DN: u.DN, ID: int64(u.UIDNumber)}
			}
		}
		for i := range r.IntN(4) {
			name := pool[r.IntN(len(pool))]
			snap.Collaborations = append(snap.Collaborations, &directory.Collaboration{Name: name, DN: fmt.Sprintf("cn=%s,ou=g%d,dc=x", name, i), GIDNumber: uint32(5000 + i)})
		}
		for i := range r.IntN(3) {
			name := pool[r.IntN(len(pool))]
			snap.ProductionAccounts = append(snap.ProductionAccounts, directory.ProductionAccount{Name: name, DN: fmt.Sprintf("uid=%s,ou=r%d,dc=x", name, i), UIDNumber: uint32(3000 + i), GIDNumber: 100})
		}
		snap.Sort()
		want := directory.Evaluate(snap, p, prev)
		keyed := *snap
		keyed.UIDKeys = directory.KeysOf(snap.Users)
		if diff := compareStates(directory.Evaluate(&keyed, p, prev), want); diff != "" {
			t.Fatalf("seed %d, users %v: %s", seed, uidsOf(snap.Users), diff)
		}
	}
}

func uidsOf(users []*directory.User) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.UID
	}
	return out
}

// TestEvaluatorOnce: an Evaluator that evaluates once keeps the history
// it was given, and gives the state, the violations and the status
// difference an Evaluator that lets the history go gives.
func TestEvaluatorOnce(t *testing.T) {
	for seed := range uint64(20) {
		w := directorytest.NewWorld(seed)
		first := directory.Evaluate(w.Snap, w.Pol, nil)
		for range 10 {
			w.Step()
		}
		hist := pack(directory.PreviousOf(first.History()))
		var letGo directory.Evaluator
		once := directory.Evaluator{Once: true}
		want := letGo.Evaluate(w.Snap, w.Pol, hist)
		got := once.Evaluate(w.Snap, w.Pol, hist)
		if diff := compareStates(got, want); diff != "" {
			t.Fatalf("seed %d: %s", seed, diff)
		}
		if got.Against() != directory.History(hist) {
			t.Fatalf("seed %d: the history given is not what the state was evaluated against", seed)
		}
		gotChanged, gotGone := got.StatusChanges()
		wantChanged, wantGone := want.StatusChanges()
		if !reflect.DeepEqual(gotChanged, wantChanged) || !slices.Equal(gotGone, wantGone) {
			t.Fatalf("seed %d: status changes %v %v, want %v %v", seed, gotChanged, gotGone, wantChanged, wantGone)
		}
	}
}
