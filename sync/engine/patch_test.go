package engine

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/collabsync/collabsync/internal/directory"
)

// patchTarget is a fakeTarget that finds its desired records by the
// difference between two states, user by user; it logs the states it is
// asked from and the whole desired states it makes.
type patchTarget struct {
	fakeTarget
	from    []*directory.State
	wholes  int
	decline bool
}

func (p *patchTarget) Desired(s *directory.State) ([]Record, error) {
	p.wholes++
	return p.fakeTarget.Desired(s)
}

func (p *patchTarget) DesiredSince(from, to *directory.State) ([]Desire, bool, error) {
	p.from = append(p.from, from)
	if p.decline {
		return nil, false, nil
	}
	was := map[string]string{}
	for _, u := range from.Users {
		was[u.UID] = u.Name
	}
	var out []Desire
	for _, u := range to.Users {
		if name, ok := was[u.UID]; !ok || name != u.Name {
			out = append(out, Desire{Record: Record{Kind: "user", Key: u.UID, Value: u.Name}})
		}
		delete(was, u.UID)
	}
	for uid := range was {
		out = append(out, Desire{Record: Record{Kind: "user", Key: uid}, Gone: true})
	}
	return out, true, nil
}

var _ Patcher = (*patchTarget)(nil)

// TestPatcherPlansFromTheStateItHolds: a Patcher is asked for the
// difference from the state whose desired records the target holds — the
// one last applied, or found there — and never after a failed apply, on
// a full reconcile or before its first plan; its plans are the whole
// difference's.
func TestPatcherPlansFromTheStateItHolds(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{snap: users("a", "b", "c")}
	tg := &patchTarget{fakeTarget: fakeTarget{name: "t"}}
	e := &Engine{Source: src, Log: newEngine(nil).Log, Evaluate: allActive,
		Targets: []GuardedTarget{{Target: tg, Guard: Guard{MaxDeleteRatio: 1, MinDeletes: 1}}}}
	var last *directory.State
	run := func(step string, opts Options, wantFrom *directory.State) {
		t.Helper()
		asked, wholes := len(tg.from), tg.wholes
		state, results, err := e.Run(ctx, opts)
		if err != nil && tg.applyErr == nil || err == nil && tg.applyErr != nil {
			t.Fatalf("%s: %v", step, err)
		}
		switch {
		case wantFrom == nil && len(tg.from) > asked && !tg.decline:
			t.Fatalf("%s: asked for the difference from a state", step)
		case wantFrom != nil && (len(tg.from) != asked+1 || tg.from[asked] != wantFrom):
			t.Fatalf("%s: not asked for the difference from the state the target holds", step)
		case wantFrom != nil && !tg.decline && tg.wholes != wholes:
			t.Fatalf("%s: made the whole desired state too", step)
		}
		// The plan is the whole difference's.
		want, _ := tg.fakeTarget.Desired(state)
		if plan := results[0].Plan; tg.applyErr == nil && !opts.DryRun && !slices.Equal(tg.held, RecordsOf(want).Slice()) {
			t.Fatalf("%s: the target holds %v, want %v (plan %+v)", step, tg.held, want, plan)
		}
		last = state
	}
	run("first", Options{}, nil)
	first := last
	src.snap = users("a", "b", "d")
	run("a change", Options{}, first)
	applied := last
	src.snap = users("a", "d")
	run("dry run", Options{DryRun: true}, applied)
	run("the same change applied", Options{}, applied)
	src.snap = users("a", "d")
	src.snap.Users[0].Name = "Alice" // a new user, as the model makes them
	tg.applyErr = errors.New("HTTP 500")
	run("a failed apply", Options{}, last)
	tg.applyErr = nil
	reads := tg.reads
	run("after the failed apply", Options{}, nil)
	if tg.reads != reads+1 {
		t.Fatalf("the target was not read after a failed apply")
	}
	run("no change", Options{}, last)
	noChange := last
	run("after no change", Options{}, noChange)
	run("full reconcile", Options{Full: true}, nil)
	tg.decline = true
	src.snap = users("a", "e")
	run("declined", Options{}, last)
	if tg.wholes == 0 || len(tg.held) != 2 {
		t.Fatalf("a declined difference: whole desired states %d, held %v", tg.wholes, tg.held)
	}
}

// TestOnlyAPatcherKeepsItsState: the state a target's records were
// desired for is kept for a Patcher only (another's would only keep an
// old state alive while the target waits).
func TestOnlyAPatcherKeepsItsState(t *testing.T) {
	plain := &fakeTarget{name: "plain"}
	patcher := &patchTarget{fakeTarget: fakeTarget{name: "patcher"}}
	e := newEngine(fakeSource{snap: users("a")}, plain)
	e.Targets = append(e.Targets, GuardedTarget{Target: patcher, Guard: Guard{MaxDeleteRatio: 1, MinDeletes: 1}})
	if _, _, err := e.Run(context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if k, _ := e.knownState("plain"); k.basis != nil {
		t.Error("a plain target's state kept")
	}
	if k, _ := e.knownState("patcher"); k.basis == nil {
		t.Error("a Patcher's state not kept")
	}
}
