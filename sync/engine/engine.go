package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// Source gives a full, consistent view of the directory.
type Source interface {
	Snapshot(ctx context.Context) (*directory.Snapshot, error)
}

// FullReader is a source that serves snapshots from a live view of the
// directory and can also read it whole: a full reconcile asks for that,
// and the source checks its live view against the read.
type FullReader interface {
	FullSnapshot(ctx context.Context) (*directory.Snapshot, error)
}

// Target is one downstream system.
type Target interface {
	Name() string
	// Desired computes what the target should hold from the effective
	// state (after the account rules); it does no I/O.
	Desired(state *directory.State) ([]Record, error)
	// Current reads what the target holds now.
	Current(ctx context.Context) ([]Record, error)
	// Apply carries out a plan that passed the guards.
	Apply(ctx context.Context, p *Plan) error
}

// Fence says whether this process may still write to targets: the lease
// of an active/passive pair of serve.
type Fence interface {
	// Held returns the lease's generation while this process holds it,
	// an error when it does not (or may no longer).
	Held() (generation uint64, err error)
}

type fenceKey struct{}

// WithFence returns ctx carrying f, for an Apply.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence an Apply runs under, nil when there is
// none. A target that can write the generation with its changes (and
// refuse a write of an older one) does; one that writes for long checks
// Held between its writes.
func FenceFrom(ctx context.Context) Fence {
	f, _ := ctx.Value(fenceKey{}).(Fence)
	return f
}

// Patcher is a target whose desired records for a state can be found
// from those for an earlier state it was given: only the records of the
// entries that changed between the two (directory.State.ChangedSince)
// are made again. The engine asks it when it knows the target holds what
// it desired for that earlier state (it applied it, or found it there).
type Patcher interface {
	// DesiredSince returns, for every record the difference between from
	// and to may change, the record desired for to, or its key Gone when
	// to wants none; ok is false when the difference is not known (the
	// engine then asks Desired). Records it does not return are those
	// desired for from.
	DesiredSince(from, to *directory.State) (desires []Desire, ok bool, err error)
}

// Comparer is a target that can tell whether it holds exactly some
// records without reading what it holds into records. The engine asks it
// before reading the real state whole: at a restart for the desired
// records (a restart at 1M users read and parsed nss's 1.1M lines, 2.6 s
// and ≈140 MB beside the desired ones, to find them the same), and on a
// full reconcile for the known ones.
type Comparer interface {
	// Holds reports whether the target holds exactly recs, which are in
	// (kind, key) order; false (no error) when it cannot tell.
	Holds(ctx context.Context, recs iter.Seq[Record]) (bool, error)
}

// Recoverer is a target that can repair what an interrupted apply left
// behind (temporary files of a killed run). The engine calls it before
// planning, on every run that may write.
type Recoverer interface {
	Recover(ctx context.Context) error
}

// Grouper is a target whose records fall into groups (a list's members)
// that the guard limits one by one, as well as the target as a whole.
type Grouper interface {
	// Group names the group of a record; "" is none.
	Group(r Record) string
}

// Noter is a target with something to say about its desired state that
// is no change, shown with its plan.
type Noter interface {
	// Notes describe the desired state last computed.
	Notes() []string
}

// GuardedTarget pairs a target with its guard.
type GuardedTarget struct {
	Target
	Guard Guard
	// Maintenance, when set, says whether the target is down for
	// maintenance: its changes are then planned and held, not applied.
	Maintenance Maintenance
}

// Maintenance says whether a target is in a maintenance window at a
// moment: the window's description and end when it is, "" when not.
type Maintenance func(now time.Time) (window string, until time.Time, err error)

// Engine plans and applies every target against one source.
//
// It keeps each target's known state: what the target held when last read
// or what the engine last applied to it. A plan is the desired state
// against the known one, so a run reads a target's real state only the
// first time, after a failed apply, and on a full reconcile, which repairs
// (and counts) drift: records changed downstream behind the engine's back.
type Engine struct {
	Source Source
	// Evaluate applies the account rules to a snapshot; full marks a
	// full reconcile's read (the rules are evaluated over the whole
	// snapshot, whatever an incremental evaluation could reuse).
	Evaluate func(ctx context.Context, snap *directory.Snapshot, full bool) (*directory.State, error)
	Targets  []GuardedTarget
	Log      *slog.Logger
	// TargetLock, if set, is held around each run of a target that may
	// write: one run per target at a time, across processes (a sync
	// --once beside serve), while runs of different targets overlap.
	TargetLock func(ctx context.Context, target string) (release func(), err error)

	// Fence, if set, is checked before every apply, and given to the
	// target with it (FenceFrom): a process of an HA pair applies only
	// while it holds the lease.
	Fence Fence

	mu    sync.Mutex       // guards known: targets run concurrently
	known map[string]known // by target name; absent: not known
}

// known is what the engine knows a target holds.
type known struct {
	recs Records
	// basis, if set, is the state whose desired records recs are: a
	// Patcher's next plan is found from the difference with it.
	basis *directory.State
}

// Options changes one run.
type Options struct {
	DryRun         bool // plan only
	AllowDeletions bool // approve every plan's deletions beyond the guard ratio
	// Approved maps a target to the digest of the one plan an operator
	// approved: a plan with that digest passes its guard's ratio.
	Approved map[string]string
	// Skip names targets left out of this run (waiting for their retry).
	Skip map[string]bool
	// Full is a full reconcile: the directory is read whole (when the
	// source is a FullReader) and every target's real state is read.
	Full bool
}

// Result is one target's outcome.
type Result struct {
	Target   string
	Plan     *Plan
	Applied  bool
	Err      error
	Duration time.Duration
	// ByDifference: the plan was found from the difference between two
	// states (a Patcher's), not from the whole desired state.
	ByDifference bool
	// Drift counts the records whose real state differed from what the
	// engine had applied, as a full reconcile found (and repairs).
	Drift int
	// Maintenance names the window the target is in (its changes held
	// until HeldUntil, not a failure); "" when it is in none.
	Maintenance string
	HeldUntil   time.Time
}

// Run reads the source once, applies the rules, then plans (and unless
// DryRun, applies) every target in turn. Each target's real state, when
// the run needs it, is read beside the directory's read (under the
// target's lock, after its recovery, as RunTarget reads it): at 1M users
// nss's files took 2.6 s after the read. A Comparer not yet known is
// compared with its desired records after the read instead, and read only
// when it differs. Targets fail alone: one target's
// error does not stop the others. The returned error is the source's, or
// all targets' errors joined.
func (e *Engine) Run(ctx context.Context, opts Options) (*directory.State, []Result, error) {
	var targets []GuardedTarget
	for _, t := range e.Targets {
		if !opts.Skip[t.Name()] {
			targets = append(targets, t)
		}
	}
	begun := make([]targetRun, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { begun[i] = e.begin(ctx, t, opts) })
	}
	state, err := e.Read(ctx, opts.Full)
	wg.Wait()
	if err != nil {
		for _, b := range begun {
			b.release()
		}
		return nil, nil, err
	}
	results := make([]Result, 0, len(targets))
	var errs []error
	for i, t := range targets {
		r := e.finish(ctx, t, state, opts, begun[i])
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", t.Name(), r.Err))
		}
		results = append(results, r)
	}
	return state, results, errors.Join(errs...)
}

// Read reads the source (whole, for a full reconcile of a FullReader)
// and applies the rules.
func (e *Engine) Read(ctx context.Context, full bool) (*directory.State, error) {
	var snap *directory.Snapshot
	var err error
	if fr, ok := e.Source.(FullReader); ok && full {
		snap, err = fr.FullSnapshot(ctx)
	} else {
		snap, err = e.Source.Snapshot(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	state, err := e.Evaluate(ctx, snap, full)
	if err != nil {
		return nil, fmt.Errorf("account rules: %w", err)
	}
	return state, nil
}

// RunTarget plans (and unless DryRun, applies) one target against a
// state, holding the target's lock when it may write. Runs of different
// targets may overlap; one target is run by one caller at a time.
func (e *Engine) RunTarget(ctx context.Context, t GuardedTarget, state *directory.State, opts Options) Result {
	return e.finish(ctx, t, state, opts, e.begin(ctx, t, opts))
}

// targetRun is a target's run up to its plan: the lock held, the
// recovery done, the maintenance window and the real state read.
type targetRun struct {
	spent   time.Duration
	unlock  func()
	err     error
	window  string // the maintenance window the target is in, if any
	until   time.Time
	cur     known
	isKnown bool
	drift   int
	// compare: the real state is to be read only if the target does not
	// hold the desired records (a Comparer not yet known).
	compare bool
}

func (b targetRun) release() {
	if b.unlock != nil {
		b.unlock()
	}
}

// begin takes a target's lock when the run may write, repairs what an
// interrupted apply left, and reads what the run plans against: the
// target's known state, or its real state the first time, after a failed
// apply, and on a full reconcile (counting drift from the known; a
// Comparer that holds the known records has none). It needs no directory
// state: Run does it beside the directory's read. A Comparer's first
// time is left to finish, which compares it with its desired records.
func (e *Engine) begin(ctx context.Context, t GuardedTarget, opts Options) (b targetRun) {
	start := time.Now()
	defer func() { b.spent = time.Since(start) }()
	if e.TargetLock != nil && !opts.DryRun {
		release, err := e.TargetLock(ctx, t.Name())
		if err != nil {
			return targetRun{err: err}
		}
		b.unlock = release
	}
	if r, ok := t.Target.(Recoverer); ok && !opts.DryRun {
		if err := r.Recover(ctx); err != nil {
			b.err = fmt.Errorf("recover from an interrupted apply: %w", err)
			return b
		}
	}
	name := t.Name()
	b.cur, b.isKnown = e.knownState(name)
	if t.Maintenance != nil {
		window, until, err := t.Maintenance(time.Now())
		if err != nil {
			b.err = fmt.Errorf("maintenance windows: %w", err)
			return b
		}
		if window != "" {
			// The target is not even read (it may well be down).
			b.window, b.until = window, until
			return b
		}
	}
	if c, ok := t.Target.(Comparer); ok && (opts.Full || !b.isKnown) {
		if !b.isKnown {
			// Compared with the desired records once the state is read.
			b.compare = true
			return b
		}
		held, err := c.Holds(ctx, b.cur.recs.All())
		if err != nil {
			e.forget(name)
			b.err = fmt.Errorf("compare with the real state: %w", err)
			return b
		}
		if held {
			// No drift. A full reconcile plans from the whole desired
			// state, not from the difference with the known one's.
			b.cur.basis = nil
			e.setKnown(name, b.cur)
			return b
		}
	}
	if opts.Full || !b.isKnown {
		real, err := t.Current(ctx)
		if err != nil {
			e.forget(name)
			b.err = fmt.Errorf("read current state: %w", err)
			return b
		}
		if b.isKnown {
			// The real state as a current one: a line held twice counts
			// once (it is no key desired twice).
			drift, err := Diff(b.cur.recs.Slice(), firstOfEach(real))
			if err != nil {
				b.err = err
				return b
			}
			if b.drift = len(drift); b.drift > 0 {
				e.Log.Warn("target changed behind collabsync's back; repairing", "target", name, "records", b.drift)
			}
		}
		b.cur = known{recs: RecordsOf(real)}
	}
	e.setKnown(name, b.cur)
	return b
}

// finish plans a begun run of a target against a state and, unless
// DryRun, applies the plan; it releases the target's lock.
func (e *Engine) finish(ctx context.Context, t GuardedTarget, state *directory.State, opts Options, b targetRun) Result {
	start := time.Now()
	defer b.release()
	var r Result
	switch {
	case b.err != nil:
		r = Result{Err: b.err}
	case b.window != "":
		r = e.hold(t, state, b.cur.recs, b.isKnown, b.window, b.until)
	case b.compare:
		r = e.compareAndApply(ctx, t, state, opts)
	default:
		r = e.planAndApply(ctx, t, state, opts, b.cur, nil)
		r.Drift = b.drift
	}
	r.Target = t.Name()
	r.Duration = b.spent + time.Since(start)
	return r
}

// compareAndApply runs a Comparer whose real state is not known: what it
// holds is read only when it is not the desired records.
func (e *Engine) compareAndApply(ctx context.Context, t GuardedTarget, state *directory.State, opts Options) Result {
	name := t.Name()
	desired, err := t.Desired(state)
	if err != nil {
		return Result{Err: fmt.Errorf("desired state: %w", err)}
	}
	want := RecordsOf(desired)
	held, err := t.Target.(Comparer).Holds(ctx, want.All())
	if err != nil {
		return Result{Err: fmt.Errorf("compare with the real state: %w", err)}
	}
	cur := known{recs: want}
	if !held {
		real, err := t.Current(ctx)
		if err != nil {
			return Result{Err: fmt.Errorf("read current state: %w", err)}
		}
		cur.recs = RecordsOf(real)
	}
	e.setKnown(name, cur)
	return e.planAndApply(ctx, t, state, opts, cur, want.Slice())
}

// planAndApply plans a target against what it holds, cur, and unless
// DryRun applies the plan. desired, if not nil, is the target's desired
// records for state, already made.
func (e *Engine) planAndApply(ctx context.Context, t GuardedTarget, state *directory.State, opts Options, cur known, desired []Record) Result {
	name := t.Name()
	var r Result
	// After the read: a target may keep from it what is not its own to
	// decide (a list made by hand, a member from outside the directory).
	plan, byDifference, err := e.plan(t.Target, state, cur, desired)
	if err != nil {
		return Result{Err: err}
	}
	r.ByDifference = byDifference
	current := cur.recs
	if n, ok := t.Target.(Noter); ok {
		plan.Notes = n.Notes()
	}
	r.Plan = plan
	approved := opts.Approved[name] != "" && opts.Approved[name] == plan.Digest
	t.Guard.Check(plan, opts.AllowDeletions || approved)
	if g, ok := t.Target.(Grouper); ok && plan.Refused == "" {
		t.Guard.CheckGroups(plan, current.Slice(), g.Group, opts.AllowDeletions || approved)
	}
	switch {
	case plan.Refused != "":
		// Held for an operator, who may well act on the target directly
		// (a sync --allow-deletions): the next run reads it again.
		e.forget(name)
		e.Log.Warn("plan refused by guard; it is held until approved", "target", plan.Target, "reason", plan.Refused,
			"digest", plan.Digest, "approve", "collabsync approve "+plan.Target+" "+plan.Digest)
		r.Err = fmt.Errorf("guard: %s; approve this plan with: collabsync approve %s %s", plan.Refused, plan.Target, plan.Digest)
	case opts.DryRun:
	case len(plan.Changes) == 0:
		if !current.dups {
			// The desired records, the same as those read: kept rather
			// than the read ones, which a target that reuses its last
			// desired lines (nss) would hold a second copy of.
			e.setKnown(name, known{recs: plan.Desired, basis: basisFor(t.Target, state)})
		}
	default:
		if e.Fence != nil {
			// Checked right before: a process paused since its run began
			// (SIGSTOP, a frozen VM) may have lost the lease meanwhile.
			if _, err := e.Fence.Held(); err != nil {
				e.forget(name)
				r.Err = fmt.Errorf("not applied: %w", err)
				return r
			}
			ctx = WithFence(ctx, e.Fence)
		}
		if err := t.Apply(ctx, plan); err != nil {
			// What a failed apply left is unknown: read it next time.
			e.forget(name)
			r.Err = fmt.Errorf("apply: %w", err)
			return r
		}
		e.setKnown(name, known{recs: plan.Desired, basis: basisFor(t.Target, state)})
		r.Applied = true
	}
	add, mod, del := plan.Counts()
	e.Log.Info("reconciled", "target", plan.Target, "add", add, "modify", mod, "delete", del,
		"applied", r.Applied, "dry_run", opts.DryRun)
	return r
}

// plan is a target's plan for a state against what it holds: from the
// difference with the state it holds the desired records of when the
// target is a Patcher that can tell, else from its whole desired state
// (desired, when not nil).
func (e *Engine) plan(t Target, state *directory.State, cur known, desired []Record) (p *Plan, byDifference bool, err error) {
	name := t.Name()
	if pt, ok := t.(Patcher); ok && cur.basis != nil {
		desires, ok, err := pt.DesiredSince(cur.basis, state)
		if err != nil {
			return nil, false, fmt.Errorf("desired state: %w", err)
		}
		if ok {
			changes, err := cur.recs.ChangesTo(desires)
			if err != nil {
				return nil, false, err
			}
			return newPlan(name, cur.recs.Len(), changes, cur.recs.Patch(changes)), true, nil
		}
	}
	if desired == nil {
		if desired, err = t.Desired(state); err != nil {
			return nil, false, fmt.Errorf("desired state: %w", err)
		}
	}
	if cur.recs.are(desired) {
		// A Comparer found holding its desired records: no change, and
		// no pass over them to find none (at 1M users seven passes of
		// 1.1M compares, 0.15 s of plan's wall time).
		return newPlan(name, cur.recs.Len(), nil, cur.recs), false, nil
	}
	p, err = NewPlan(name, cur.recs.Slice(), desired)
	return p, false, err
}

// basisFor is the state to keep with a target's known records: a
// Patcher's next plan starts from it; another target's would only keep
// an old state alive.
func basisFor(t Target, state *directory.State) *directory.State {
	if _, ok := t.(Patcher); ok {
		return state
	}
	return nil
}

// knownState returns what the engine knows a target holds.
func (e *Engine) knownState(target string) (known, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.known[target]
	return k, ok
}

// setKnown records what a target holds.
func (e *Engine) setKnown(target string, k known) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.known == nil {
		e.known = map[string]known{}
	}
	e.known[target] = k
}

// forget makes what a target holds unknown: the next run reads it.
func (e *Engine) forget(target string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.known, target)
}

// hold is a run of a target in a maintenance window: held, not failed,
// and applied when the window ends (the loop runs then). The target is
// not even read (it may well be down): its changes are planned against
// its known state when there is one.
func (e *Engine) hold(t GuardedTarget, state *directory.State, current Records, isKnown bool, window string, until time.Time) Result {
	r := Result{Maintenance: window, HeldUntil: until}
	changes := -1 // unknown: the target's state is not known yet
	if isKnown {
		desired, err := t.Desired(state)
		if err != nil {
			return Result{Err: fmt.Errorf("desired state: %w", err)}
		}
		if r.Plan, err = NewPlan(t.Name(), current.Slice(), desired); err != nil {
			return Result{Err: err}
		}
		if changes = len(r.Plan.Changes); changes > 0 {
			r.Plan.Notes = append(r.Plan.Notes, fmt.Sprintf("in maintenance (%s) until %s: %d change(s) held",
				window, until.UTC().Format(time.RFC3339), changes))
		}
	}
	e.Log.Info("target in maintenance; changes held", "target", t.Name(), "window", window,
		"until", until.UTC().Format(time.RFC3339), "changes", changes)
	return r
}

// NewPlan diffs current against desired records of the named target.
func NewPlan(target string, current, desired []Record) (*Plan, error) {
	changes, err := Diff(current, desired)
	if err != nil {
		return nil, err
	}
	return newPlan(target, len(current), changes, RecordsOf(desired)), nil
}

func newPlan(target string, current int, changes []Change, desired Records) *Plan {
	if changes == nil {
		changes = []Change{} // "changes": [] in JSON, never null
	}
	return &Plan{Target: target, Changes: changes, Current: current, Desired: desired, Digest: digest(target, changes)}
}
