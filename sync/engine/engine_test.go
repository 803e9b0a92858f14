package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

type fakeSource struct {
	snap *directory.Snapshot
	err  error
}

func (f fakeSource) Snapshot(context.Context) (*directory.Snapshot, error) { return f.snap, f.err }

// fakeTarget holds records in memory; applyErr makes Apply fail.
type fakeTarget struct {
	name     string
	held     []Record
	applyErr error
	readErr  error
	applied  int
	reads    int
}

func (f *fakeTarget) Name() string { return f.name }
func (f *fakeTarget) Desired(s *directory.State) ([]Record, error) {
	var out []Record
	for _, u := range s.Users {
		out = append(out, Record{Kind: "user", Key: u.UID, Value: u.Name})
	}
	return out, nil
}
func (f *fakeTarget) Current(context.Context) ([]Record, error) {
	f.reads++
	return f.held, f.readErr
}
func (f *fakeTarget) Apply(_ context.Context, p *Plan) error {
	f.applied++
	if f.applyErr != nil {
		return f.applyErr
	}
	f.held = p.Desired.Slice()
	return nil
}

// allActive stands in for the account rules: every user is active.
func allActive(_ context.Context, s *directory.Snapshot, _ bool) (*directory.State, error) {
	st := &directory.State{}
	for i := range s.Users {
		st.Users = append(st.Users, directory.UserState{User: s.Users[i], Status: directory.StatusActive})
	}
	return st, nil
}

func users(names ...string) *directory.Snapshot {
	s := &directory.Snapshot{}
	for _, n := range names {
		s.Users = append(s.Users, &directory.User{UID: n, Name: strings.ToUpper(n)})
	}
	return s
}

func newEngine(src Source, targets ...*fakeTarget) *Engine {
	e := &Engine{Source: src, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Evaluate: allActive}
	for _, t := range targets {
		e.Targets = append(e.Targets, GuardedTarget{Target: t, Guard: Guard{MaxDeleteRatio: 0.5, MinDeletes: 1}})
	}
	return e
}

func TestRunTargetsFailAlone(t *testing.T) {
	bad := &fakeTarget{name: "bad", applyErr: errors.New("HTTP 500")}
	good := &fakeTarget{name: "good"}
	_, results, err := newEngine(fakeSource{snap: users("a", "b")}, bad, good).Run(context.Background(), Options{})
	if err == nil || !strings.Contains(err.Error(), "target bad: apply: HTTP 500") {
		t.Errorf("err = %v", err)
	}
	if len(good.held) != 2 || !results[1].Applied || results[0].Applied {
		t.Errorf("good target not applied alone: %+v", results)
	}
}

func TestRunDryRunAndNoChange(t *testing.T) {
	tg := &fakeTarget{name: "t"}
	e := newEngine(fakeSource{snap: users("a")}, tg)
	if _, _, err := e.Run(context.Background(), Options{DryRun: true}); err != nil || tg.applied != 0 {
		t.Fatalf("dry run applied %d times (err %v)", tg.applied, err)
	}
	e.Run(context.Background(), Options{})
	e.Run(context.Background(), Options{})
	if tg.applied != 1 {
		t.Errorf("applied %d times, want once (second run has nothing to do)", tg.applied)
	}
}

func TestRunGuardAndSourceError(t *testing.T) {
	tg := &fakeTarget{name: "t", held: []Record{{"user", "a", "A"}, {"user", "b", "B"}, {"user", "c", "C"}}}
	e := newEngine(fakeSource{snap: users("a")}, tg)
	_, results, err := e.Run(context.Background(), Options{})
	if err == nil || results[0].Plan.Refused == "" || tg.applied != 0 {
		t.Fatalf("deleting 2 of 3 was not refused: %v %+v", err, results[0].Plan)
	}
	if _, _, err := e.Run(context.Background(), Options{AllowDeletions: true}); err != nil || len(tg.held) != 1 {
		t.Fatalf("approved run: %v, held %v", err, tg.held)
	}
	srcErr := errors.New("ldap down")
	_, results, err = newEngine(fakeSource{err: srcErr}, tg).Run(context.Background(), Options{})
	if !errors.Is(err, srcErr) || results != nil || len(tg.held) != 1 {
		t.Errorf("source error: %v, results %v, held %v", err, results, tg.held)
	}
}

func TestOnce(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var o Once
	for range 3 {
		o.Warn(log, "cn=a", "name taken", "dn", "cn=a")
	}
	o.Warn(log, "cn=b", "name taken", "dn", "cn=b")
	if n := strings.Count(buf.String(), "name taken"); n != 2 {
		t.Errorf("%d warnings, want one per key:\n%s", n, buf.String())
	}
}

// TestMaintenance: a target in a window is held, not failed and not
// applied, and not even read (it may be down); its changes are planned
// against its known state; after the window they are applied.
func TestMaintenance(t *testing.T) {
	tg := &fakeTarget{name: "lists"}
	e := newEngine(fakeSource{snap: users("alice")}, tg)
	if _, _, err := e.Run(context.Background(), Options{}); err != nil || tg.applied != 1 {
		t.Fatalf("first run: %v, applied %d", err, tg.applied)
	}
	end := time.Now().Add(time.Hour)
	in := true
	e.Targets[0].Maintenance = func(time.Time) (string, time.Time, error) {
		if in {
			return "upgrade", end, nil
		}
		return "", time.Time{}, nil
	}
	tg.readErr = errors.New("connection refused") // down for its maintenance
	e.Source = fakeSource{snap: users("alice", "bob")}
	_, results, err := e.Run(context.Background(), Options{Full: true})
	r := results[0]
	if err != nil || r.Err != nil || r.Maintenance != "upgrade" || !r.HeldUntil.Equal(end) || tg.applied != 1 || tg.reads != 1 {
		t.Fatalf("in the window: err %v, result %+v, applied %d, reads %d", err, r, tg.applied, tg.reads)
	}
	if len(r.Plan.Changes) != 1 || len(r.Plan.Notes) != 1 || !strings.Contains(r.Plan.Notes[0], "1 change(s) held") {
		t.Errorf("plan in the window: %+v", r.Plan)
	}
	in, tg.readErr = false, nil
	if _, _, err := e.Run(context.Background(), Options{}); err != nil || tg.applied != 2 || len(tg.held) != 2 {
		t.Errorf("after the window: %v, applied %d, held %v", err, tg.applied, tg.held)
	}
}

// leaseFence is a fence held while held is true.
type leaseFence struct{ held bool }

func (f *leaseFence) Held() (uint64, error) {
	if !f.held {
		return 0, errors.New("lease lost")
	}
	return 7, nil
}

// fenceSeer records the fence its Apply ran under.
type fenceSeer struct {
	fakeTarget
	gen uint64
}

func (f *fenceSeer) Apply(ctx context.Context, p *Plan) error {
	if fence := FenceFrom(ctx); fence != nil {
		f.gen, _ = fence.Held()
	}
	return f.fakeTarget.Apply(ctx, p)
}

// TestFence: a process that no longer holds the lease applies nothing
// (and forgets what it knew of the target); one that holds it gives the
// fence to the target's Apply.
func TestFence(t *testing.T) {
	tg := &fenceSeer{fakeTarget: fakeTarget{name: "t"}}
	fence := &leaseFence{}
	e := newEngine(fakeSource{snap: users("a")})
	e.Targets = []GuardedTarget{{Target: tg, Guard: Guard{MaxDeleteRatio: 0.5, MinDeletes: 1}}}
	e.Fence = fence
	_, _, err := e.Run(context.Background(), Options{})
	if err == nil || !strings.Contains(err.Error(), "not applied: lease lost") || tg.applied != 0 {
		t.Fatalf("without the lease: err %v, applied %d", err, tg.applied)
	}
	fence.held = true
	if _, _, err := e.Run(context.Background(), Options{}); err != nil || tg.applied != 1 || tg.gen != 7 {
		t.Fatalf("with the lease: err %v, applied %d, generation seen %d", err, tg.applied, tg.gen)
	}
	if tg.reads != 2 {
		t.Errorf("the target was read %d times: the refused run must forget its known state", tg.reads)
	}
}

// TestFullReconcileWithALineTwice: a target holding a record twice (a
// line an admin pasted twice) is reconciled by a full run, whose drift
// count must not take the real state for a desired one (which may not
// hold a key twice).
func TestFullReconcileWithALineTwice(t *testing.T) {
	tg := &fakeTarget{name: "t", held: []Record{{"user", "a", "A"}, {"user", "a", "A"}, {"user", "b", "B"}}}
	e := newEngine(fakeSource{snap: users("a", "b")}, tg)
	for _, opts := range []Options{{}, {Full: true}, {Full: true}} {
		if _, results, err := e.Run(context.Background(), opts); err != nil || results[0].Drift != 0 {
			t.Fatalf("full=%v: %v, drift %d (%+v)", opts.Full, err, results[0].Drift, results)
		}
	}
}

// waitingSource answers once every target has been read, or after a
// while with an error: a run that reads its targets only after the
// directory fails.
type waitingSource struct {
	read chan struct{}
	snap *directory.Snapshot
	err  error
}

func (w waitingSource) Snapshot(ctx context.Context) (*directory.Snapshot, error) {
	select {
	case <-w.read:
		return w.snap, w.err
	case <-time.After(5 * time.Second):
		return nil, errors.New("no target was read beside the directory")
	}
}

// signallingTarget closes a channel when its real state is read.
type signallingTarget struct {
	*fakeTarget
	read chan struct{}
}

func (s signallingTarget) Current(ctx context.Context) ([]Record, error) {
	defer close(s.read)
	return s.fakeTarget.Current(ctx)
}

// TestRunReadsTargetsBesideTheDirectory: a run reads each target's real
// state while the directory is read (at 1M users nss's files took 2.6 s
// after the read, a Mailman's rosters tens of seconds), holding the
// target's lock from before the read until its apply; a directory that
// fails releases the locks.
func TestRunReadsTargetsBesideTheDirectory(t *testing.T) {
	for _, srcErr := range []error{nil, errors.New("ldap down")} {
		read := make(chan struct{})
		tg := &fakeTarget{name: "t"}
		e := newEngine(waitingSource{read: read, snap: users("a"), err: srcErr})
		e.Targets = []GuardedTarget{{Target: signallingTarget{tg, read}}}
		var events []string
		e.TargetLock = func(_ context.Context, name string) (func(), error) {
			events = append(events, "lock "+name)
			return func() { events = append(events, fmt.Sprintf("release %s, applied %d", name, tg.applied)) }, nil
		}
		_, _, err := e.Run(context.Background(), Options{})
		if !errors.Is(err, srcErr) || (srcErr == nil) != (len(tg.held) == 1) {
			t.Fatalf("directory error %v: run error %v, held %v", srcErr, err, tg.held)
		}
		want := []string{"lock t", "release t, applied 1"}
		if srcErr != nil {
			want[1] = "release t, applied 0"
		}
		if !slices.Equal(events, want) {
			t.Errorf("directory error %v: %q, want %q", srcErr, events, want)
		}
	}
}

// comparingTarget is a fakeTarget that can compare what it holds.
type comparingTarget struct {
	*fakeTarget
	compared int
}

func (c *comparingTarget) Holds(_ context.Context, recs iter.Seq[Record]) (bool, error) {
	c.compared++
	return slices.Equal(slices.Collect(recs), c.held), nil
}

// TestRunComparesBeforeReading: a Comparer not yet known is compared with
// its desired records and read whole only when it does not hold them; on
// a full reconcile it is compared with its known records (no drift: not
// read), and read when it differs (the drift counted and repaired).
func TestRunComparesBeforeReading(t *testing.T) {
	ctx := context.Background()
	tg := &comparingTarget{fakeTarget: &fakeTarget{name: "t", held: []Record{{"user", "a", "A"}, {"user", "b", "B"}}}}
	e := newEngine(fakeSource{snap: users("a", "b")})
	e.Targets = []GuardedTarget{{Target: tg, Guard: Guard{MaxDeleteRatio: 0.5, MinDeletes: 1}}}
	step := func(what string, opts Options, reads, applied, drift int) {
		t.Helper()
		_, results, err := e.Run(ctx, opts)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if tg.reads != reads || tg.applied != applied || results[0].Drift != drift {
			t.Errorf("%s: read %d times, applied %d, drift %d; want %d, %d, %d", what, tg.reads, tg.applied, results[0].Drift, reads, applied, drift)
		}
	}
	step("first run, the target in sync", Options{}, 0, 0, 0)
	step("full reconcile, in sync", Options{Full: true}, 0, 0, 0)
	tg.held = []Record{{"user", "a", "A"}, {"user", "b", "changed by hand"}}
	step("full reconcile, changed by hand", Options{Full: true}, 1, 1, 1)
	if len(tg.held) != 2 || tg.held[1].Value != "B" {
		t.Errorf("not repaired: %v", tg.held)
	}
	e = newEngine(fakeSource{snap: users("a", "b", "c")})
	e.Targets = []GuardedTarget{{Target: tg, Guard: Guard{MaxDeleteRatio: 0.5, MinDeletes: 1}}}
	step("first run, a user to add", Options{}, 2, 2, 0)
	if len(tg.held) != 3 || tg.compared != 4 {
		t.Errorf("held %v after %d comparisons, want 3 records after 4", tg.held, tg.compared)
	}
}

// TestComparerHoldingItsDesiredRecords: a Comparer found holding its
// desired records gets a plan of no change without a pass over them; a
// desired state with a key twice is refused all the same, held or not.
func TestComparerHoldingItsDesiredRecords(t *testing.T) {
	ctx := context.Background()
	tg := &comparingTarget{fakeTarget: &fakeTarget{name: "t", held: []Record{{"user", "a", "A"}, {"user", "b", "B"}}}}
	e := newEngine(fakeSource{snap: users("a", "b")})
	e.Targets = []GuardedTarget{{Target: tg}}
	_, results, err := e.Run(ctx, Options{DryRun: true})
	if err != nil || len(results[0].Plan.Changes) != 0 || results[0].Plan.Desired.Len() != 2 || tg.reads != 0 {
		t.Fatalf("held: err %v, plan %+v, read %d times", err, results[0].Plan, tg.reads)
	}

	tg = &comparingTarget{fakeTarget: &fakeTarget{name: "t", held: []Record{{"user", "a", "A"}, {"user", "a", "A"}}}}
	e = newEngine(fakeSource{snap: users("a", "a")})
	e.Targets = []GuardedTarget{{Target: tg}}
	if _, results, err := e.Run(ctx, Options{DryRun: true}); err == nil || !strings.Contains(err.Error(), `"a" twice`) {
		t.Fatalf("a key desired twice, held: err %v, plan %+v", err, results[0].Plan)
	}
}
