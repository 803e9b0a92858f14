package wiring

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/store"
)

// TestRulesSaveByDifference: the statuses serve saves by difference from
// the last state it saved are, after every save, the whole state's, as
// the table holds them; also when another process wrote the table
// between two runs (then the whole difference is saved). Each run, which
// takes the state saved last as its history, gives the state an
// evaluation against the stored statuses gives (two users share a
// number: the one provisioned last keeps it), also after runs no target
// took (nothing saved: the history read is held without its map).
func TestRulesSaveByDifference(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "collabsync.db")
	st, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := store.Open(ctx, path) // another process on the same state
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cfg := &config.Config{}
	cfg.Rules.UIDRange, cfg.Rules.GIDRange = config.IDRange{Min: 1000, Max: 60000}, config.IDRange{Min: 1000, Max: 60000}
	cfg.Rules.ProductionLabel = ".*"
	cfg.Rules.Actions = map[directory.ViolationKind]directory.Action{directory.KindDuplicateID: directory.ActionExclude}
	r := NewRules(cfg, st)

	// 40 users, each in one of 8 collaborations: one leaving it loses
	// their access, one joining gains it.
	rng := rand.New(rand.NewPCG(3, 4))
	snap := &directory.Snapshot{}
	for i := range 40 {
		uid := fmt.Sprintf("u%02d", i)
		snap.Users = append(snap.Users, &directory.User{DN: "uid=" + uid + ",dc=x", UID: uid, UIDNumber: uint32(2000 + i), GIDNumber: 3000})
	}
	for c := range 8 {
		name := fmt.Sprintf("c%d", c)
		col := directory.Collaboration{DN: "cn=" + name + ",dc=x", Name: name, GIDNumber: uint32(3000 + c), Kind: directory.KindScientific,
			Contacts: map[directory.Role][]string{directory.RoleCollaboration: {"u00"}}}
		for i := c; i < 40; i += 8 {
			col.Members = append(col.Members, snap.Users[i].UID)
		}
		snap.Collaborations = append(snap.Collaborations, &col)
	}
	for step := range 60 {
		if step > 0 {
			next := *snap
			next.Collaborations = slices.Clone(snap.Collaborations)
			ci := rng.IntN(len(next.Collaborations))
			changed := *next.Collaborations[ci] // a new one, as the model resolves a changed entry
			next.Collaborations[ci] = &changed
			c := &changed
			uid := snap.Users[rng.IntN(len(snap.Users))].UID
			members := slices.Clone(c.Members)
			if i, in := slices.BinarySearch(members, uid); in {
				members = slices.Delete(members, i, i+1)
			} else {
				members = slices.Insert(members, i, uid)
			}
			c.Members = members
			snap = &next
		}
		if step == 20 {
			// A newcomer with u05's number, in c0: u05, provisioned
			// with it since the start, keeps it.
			next := *snap
			next.Users = append(slices.Clone(snap.Users), &directory.User{DN: "uid=u40,dc=x", UID: "u40", UIDNumber: 2005, GIDNumber: 3000})
			next.Collaborations = slices.Clone(snap.Collaborations)
			c0 := *next.Collaborations[0]
			c0.Members = append(slices.Clone(c0.Members), "u40")
			next.Collaborations[0] = &c0
			snap = &next
		}
		if step == 30 || step == 33 {
			// Another process (a sync --once) writes the table; the
			// second time while this one holds a history it read and
			// saved nothing since.
			zed := fmt.Sprintf("user/zed%d", step)
			if _, err := other.SaveStatusChanges(ctx, directory.Previous{zed: {Status: directory.StatusActive, ID: -1}}, nil, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		history, err := other.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		state, err := r.Evaluate(ctx, snap, false)
		if err != nil {
			t.Fatal(err)
		}
		pol, err := Policy(cfg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want := directory.Evaluate(snap, pol, history).Statuses()
		if got := state.Statuses(); !maps.Equal(got, want) {
			t.Fatalf("step %d: evaluated %v, against the stored statuses %v", step, got, want)
		}
		// A dry run looks up the history it needs.
		dry, err := DryRunRules(cfg, other).Evaluate(ctx, snap, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := dry.Statuses(); !maps.Equal(got, want) {
			t.Fatalf("step %d: a dry run evaluated %v, against the stored statuses %v", step, got, want)
		}
		if step%7 == 3 || step%7 == 4 || step == 30 {
			// No target took the state (nothing saved): the next run's
			// history is still the table's, held as this run's state
			// and what it differs in.
			continue
		}
		if err := r.Save(ctx, state); err != nil {
			t.Fatal(err)
		}
		h, err := other.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stored := directory.PreviousOf(h)
		if want := state.Statuses(); !maps.Equal(stored, want) {
			t.Fatalf("step %d: stored %d statuses, the state has %d:\nstored %v\nwant   %v", step, len(stored), len(want), stored, want)
		}
		if step >= 20 && step < 25 && (stored["user/u05"].Status != directory.StatusActive || stored["user/u40"].Status == directory.StatusActive) {
			t.Errorf("step %d: u05 %v, u40 %v: the incumbent does not keep its number", step, stored["user/u05"], stored["user/u40"])
		}
	}
	if s := r.ev.Stats(); s.Incremental < 50 {
		t.Errorf("%d incremental runs of 60", s.Incremental)
	}
}

// TestDryRunRulesFailWithoutTheHistory: a dry run whose lookup of the
// history fails (here: the table gone) fails, rather than deciding a
// clash as if nobody held the number.
func TestDryRunRulesFailWithoutTheHistory(t *testing.T) {
	ctx := context.Background()
	st, cfg := rulesStore(t)
	snap := &directory.Snapshot{Users: []*directory.User{
		{DN: "uid=a,dc=x", UID: "a", UIDNumber: 2000, GIDNumber: 3000},
		{DN: "uid=b,dc=x", UID: "b", UIDNumber: 2000, GIDNumber: 3000}}}
	if _, err := DryRunRules(cfg, st).Evaluate(ctx, snap, true); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, "DROP TABLE subject_status"); err != nil {
		t.Fatal(err)
	}
	if state, err := DryRunRules(cfg, st).Evaluate(ctx, snap, true); err == nil {
		t.Fatalf("evaluated without the history: %v", state.Statuses())
	}
}

// rulesStore is a state store and the configuration of the rules' tests
// (a uid and gid range, any production label).
func rulesStore(t *testing.T) (*store.Store, *config.Config) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "collabsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := &config.Config{}
	cfg.Rules.UIDRange, cfg.Rules.GIDRange = config.IDRange{Min: 1000, Max: 60000}, config.IDRange{Min: 1000, Max: 60000}
	cfg.Rules.ProductionLabel = ".*"
	return st, cfg
}
