package mailman

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/sync/engine"
)

// TestDesiredSinceIsDesired drives random centres through an Evaluator,
// with lists named by collaborations and opt-outs besides the world's own
// changes, under each inactive and foreign_members setting: at every
// step the records desired for an earlier state, patched by
// DesiredSince, are the whole desired state's. Lists are created and
// removed as an apply would, and one list keeps foreign members.
func TestDesiredSinceIsDesired(t *testing.T) {
	var patched, whole, own int
	reasons := map[string]int{}
	for seed := range uint64(120) {
		w := directorytest.NewWorld(seed)
		s := Kind().NewSettings().(*Settings)
		s.URL, s.Domain, s.AllUsers, s.Contacts = "http://127.0.0.1:1", "lists.example.org", "hpc-users", "hpc-contacts"
		s.Inactive = []string{InactiveEmpty, InactiveRemove}[seed%2]
		s.Foreign = []string{ForeignKeep, ForeignRemove}[seed/2%2]
		env := engine.Env{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		tg := New("lists", s, env)
		// Read from Mailman before the first run: lists that exist, a
		// collaboration's with members from outside the directory (and a
		// user's address).
		first := strings.ToLower(w.Snap.Collaborations[0].Name) + ".lists.example.org"
		tg.lists = map[string]bool{first: true, "stale.lists.example.org": true}
		tg.foreign = map[string][]string{first: {"visitor@elsewhere.net", strings.ToLower(w.Snap.Users[0].UID) + "@cern.ch"},
			"hpc-users.lists.example.org": {"guest@elsewhere.net"}}
		ev := &directory.Evaluator{}
		var (
			recs  engine.Records
			basis *directory.State
			prev  directory.Previous
		)
		for step := range 60 {
			what := "start"
			if step > 0 {
				what = mailmanStep(w)
			}
			st := ev.Evaluate(w.Snap, w.Pol, prev)
			prev = st.Statuses()
			if step > 0 && w.R.IntN(4) == 0 {
				continue // a busy target takes a later state: a difference spans runs
			}
			ref := New("lists", s, env)
			ref.lists, ref.foreign = maps.Clone(tg.lists), tg.foreign
			want, err := ref.Desired(st)
			if err != nil {
				t.Fatal(err)
			}
			desires, ok, err := tg.DesiredSince(basis, st)
			if err != nil {
				t.Fatal(err)
			}
			if _, chOK := st.ChangedSince(basis); !ok && chOK {
				own++
				reasons[what]++
			}
			if !ok {
				got, err := tg.Desired(st) // as the engine does
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: Desired differs between two targets", seed, step)
				}
				recs, basis = engine.RecordsOf(got), st
				whole++
			} else {
				changes, err := recs.ChangesTo(desires)
				if err != nil {
					t.Fatalf("seed %d step %d (%s): %v", seed, step, what, err)
				}
				next := recs.Patch(changes)
				if got := next.Slice(); !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d (%s, %s/%s): patched records differ from the whole desired state:\n%s",
						seed, step, what, s.Inactive, s.Foreign, recordDiff(got, want))
				}
				recs, basis = next, st
				patched++
			}
			// Applied: the lists desired exist; under inactive: remove,
			// only those.
			if s.Inactive == InactiveRemove {
				tg.lists = map[string]bool{}
			}
			for r := range recs.All() {
				if r.Kind == KindList {
					tg.lists[r.Key] = true
				}
			}
		}
	}
	t.Logf("%d states patched, %d planned whole, %d of them by mailman's choice: %v", patched, whole, own, reasons)
	if patched < 3000 {
		t.Errorf("only %d states patched: the difference is hardly used", patched)
	}
}

// mailmanStep changes the world one way, now and then naming lists for a
// collaboration or an opt-out for a user, which the world does not.
func mailmanStep(w *directorytest.World) string {
	r := w.R
	old := w.Snap
	switch k := r.IntN(20); {
	case k == 0 && len(old.Collaborations) > 0:
		s := *old
		s.Collaborations = slices.Clone(old.Collaborations)
		i := r.IntN(len(s.Collaborations))
		c := *s.Collaborations[i]
		c.Lists = [][]string{nil, {"shared"}, {"c01"}, {"hpc-users"}, {"x@other.org"}, {"Shared@lists.example.org", "news"}}[r.IntN(6)]
		s.Collaborations[i] = &c
		w.Snap = &s
		w.Snap.Sort()
		return "lists"
	case k == 1 && len(old.Users) > 0:
		s := *old
		s.Users = slices.Clone(old.Users)
		i := r.IntN(len(s.Users))
		u := *s.Users[i]
		u.OptOuts = [][]string{nil, {"c01"}, {"hpc-users"}, {"shared@lists.example.org"}, {"HPC-CONTACTS"}}[r.IntN(5)]
		s.Users[i] = &u
		w.Snap = &s
		w.Snap.Sort()
		return "opt-outs"
	}
	return w.Step()
}

// recordDiff lists what differs between two sorted lists.
func recordDiff(got, want []engine.Record) string {
	changes, err := engine.Diff(want, got)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, "  %s %s %q\n", c.Op, c.Kind, c.Key)
	}
	return b.String()
}
