package engine

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// Queue is where targets whose apply failed wait for their retry; it
// outlives the process (the store's outbox).
type Queue interface {
	// Waiting returns each queued target's next attempt.
	Waiting(ctx context.Context) (map[string]time.Time, error)
	// Fail queues a target again, with a longer backoff.
	Fail(ctx context.Context, target string, changes int, cause error) error
	// Succeed takes a target off the queue.
	Succeed(ctx context.Context, target string) error
}

// Trigger asks the loop for a reconcile.
type Trigger struct {
	Reason string
	// Full asks for a full reconcile: the directory read whole, every
	// target's real state read (drift repaired), and targets still waiting
	// out their backoff retried.
	Full bool
	// RetryAll retries targets still waiting out their backoff too.
	RetryAll bool
}

// RunReport is one read of the directory, for history, metrics and
// status: the state the targets are then given.
type RunReport struct {
	Reason   string
	Full     bool // a full reconcile
	Started  time.Time
	Duration time.Duration
	State    *directory.State // nil when the directory could not be read
	Err      error
}

// TargetReport is one target's run on a state the loop read.
type TargetReport struct {
	Reason  string
	Started time.Time        // when the state was read
	State   *directory.State // the state the target was given
	Result  Result
}

// Loop runs the engine when asked: at start, on triggers, and when a
// failed target or an unreadable directory is due for a retry. A trigger
// while no target runs is run at once; triggers while targets run are
// gathered into one run when the last of them is done, or after Debounce
// if one takes longer (a hung target delays changes by Debounce at most).
// So a lone change waits for nothing, and a burst is read and evaluated
// once per target run, never beside a target still writing the state
// before (which would hold two states in memory).
//
// The loop reads the directory and applies the rules; each target runs on
// its own worker, so a slow, hung or unreachable target delays only
// itself. A worker busy when a newer state comes takes the newest one
// when it is done (states in between are never applied to it); a target
// waiting out its backoff is given a state again when its retry is due.
type Loop struct {
	Engine *Engine
	Queue  Queue
	// Debounce is how long changes that arrive while targets run are
	// gathered at most before they are read.
	Debounce time.Duration
	// SourceBackoff is the wait before re-reading a directory that failed
	// attempts times in a row.
	SourceBackoff func(attempts int) time.Duration
	// After sees every read of the directory (it must not block for long).
	After func(context.Context, RunReport)
	// Done sees every target's run (it must not block for long).
	Done func(context.Context, TargetReport)
	// Settled, if set, is called under Lock when every target given the
	// newest state has taken it without error: the rules' history may
	// then record that state as provisioned.
	Settled func(context.Context, *directory.State)
	// Idle, if set, is called once the loop holds no run and no target is
	// running, or some target is done and the others are slow (at it for
	// longer than Debounce): the daemon measures its resting memory there,
	// and what a slow target holds (an older state and its plan) it holds
	// for as long as it is slow. Called again at every report and every
	// second while so; it must not block for long.
	Idle func()
	// Busy, if set, is called when a run begins, before the directory is
	// read: a measurement Idle started that is still under way would
	// count the run's data as the resting memory. It must not block.
	Busy func()
	// Heartbeat, if set, is called at least every second while the loop
	// is idle and after every run: a stuck loop stops beating (the
	// systemd watchdog listens). A target's run never holds it up.
	Heartbeat func()
	// Approvals, if set, returns the recorded approvals (target → plan
	// digest). While a plan is held by its guard the loop asks every
	// second, and runs at once when the held plan is approved.
	Approvals func(ctx context.Context) (map[string]string, error)
	// HeldRetry is how soon a run retries plans held by their guards when
	// nothing else triggers one (the directory may have recovered).
	HeldRetry time.Duration
	// Lock, if set, is held for each read of the directory until After
	// has returned, and around Settled, so that runs of other processes
	// on the same state interleave with this loop's, never inside them.
	// (A target's run holds the engine's TargetLock instead.)
	Lock func(ctx context.Context) (release func(), err error)
	// WaitForTrigger holds the first run (a full reconcile) until the
	// first trigger: a source that builds its view first announces it.
	WaitForTrigger bool
	Log            *slog.Logger
}

// job is a state given to a target's worker.
type job struct {
	gen    uint64
	reason string
	start  time.Time
	state  *directory.State
	opts   Options
}

// worker runs one target: the newest job it was given, one at a time.
type worker struct {
	target GuardedTarget
	wake   chan struct{}
	mu     sync.Mutex
	next   *job // given, not yet taken
}

// give hands the worker a state, replacing one it has not taken yet.
func (w *worker) give(j *job) {
	w.mu.Lock()
	w.next = j
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) take() *job {
	w.mu.Lock()
	defer w.mu.Unlock()
	j := w.next
	w.next = nil
	return j
}

// done is a worker's report of one job.
type done struct {
	gen    uint64
	report TargetReport
}

// work runs the jobs it is given until stop ends; a run in progress then
// finishes (until ctx ends) and is reported.
func (w *worker) work(stop, ctx context.Context, e *Engine, reports chan<- done) {
	for {
		select {
		case <-stop.Done():
			return
		case <-w.wake:
		}
		j := w.take()
		if j == nil {
			continue
		}
		r := e.RunTarget(ctx, w.target, j.state, j.opts)
		reports <- done{gen: j.gen, report: TargetReport{Reason: j.reason, Started: j.start, State: j.state, Result: r}}
	}
}

// loopRun is the loop's bookkeeping while it runs.
type loopRun struct {
	workers map[string]*worker
	given   map[string]uint64 // target → generation of its newest job
	// busy: target → since when it has had a job given and not yet
	// reported, without a pause.
	busy map[string]time.Time
	gen  uint64
	// due is each target's next attempt while it waits out a backoff.
	due map[string]time.Time
	// window is when each target in maintenance leaves its window.
	window map[string]time.Time
	// held: target → digest of its plan held by the guard; heldAt is when
	// the loop last planned them.
	held   map[string]string
	heldAt time.Time
	// sourceRetry is when an unreadable directory is read again.
	sourceRetry    time.Time
	sourceFailures int
	// settling is the newest state until every target given it took it.
	settling *settling
}

// busyFor says whether a target has been busy for less than d: one
// that is about to be done with the last state.
func (lr *loopRun) busyFor(now time.Time, d time.Duration) bool {
	for _, since := range lr.busy {
		if now.Sub(since) < d {
			return true
		}
	}
	return false
}

type settling struct {
	gen     uint64
	state   *directory.State
	waiting map[string]bool // targets given the state, not yet reported
	failed  bool
}

// Run reconciles until stop ends; runs use ctx, so a run in progress when
// stop ends may finish until ctx ends too. A cancelled run is safe:
// targets write atomically, so an abandoned apply leaves the old state,
// and the next run redoes it. Run returns once every worker has.
func (l *Loop) Run(stop, ctx context.Context, triggers <-chan Trigger) {
	beat := func() {
		if l.Heartbeat != nil {
			l.Heartbeat()
		}
	}
	lr := &loopRun{workers: map[string]*worker{}, given: map[string]uint64{}, busy: map[string]time.Time{},
		due: map[string]time.Time{}, window: map[string]time.Time{}, held: map[string]string{}}
	reports := make(chan done)
	var wg sync.WaitGroup
	for _, t := range l.Engine.Targets {
		w := &worker{target: t, wake: make(chan struct{}, 1)}
		lr.workers[t.Name()] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.work(stop, ctx, l.Engine, reports)
		}()
	}
	defer func() {
		// The workers finish what they run and report it.
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		for {
			select {
			case d := <-reports:
				l.report(ctx, lr, d)
			case <-finished:
				return
			}
		}
	}()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var (
		debounce  *time.Timer
		debounceC <-chan time.Time
		// At start every queued target is tried again; the targets' real
		// state is read as none is known yet.
		pending = run{Trigger: Trigger{Reason: "start", RetryAll: true}}
		retry   = time.NewTimer(0) // the first run, at once (unless WaitForTrigger)
	)
	defer retry.Stop()
	if l.WaitForTrigger {
		retry.Reset(math.MaxInt64) // never, until a trigger comes
	}
	rearm := func() {
		if !retry.Stop() {
			select {
			case <-retry.C:
			default:
			}
		}
		if next, ok := l.next(ctx, lr); ok {
			retry.Reset(time.Until(next))
		}
	}
	for {
		beat()
		select {
		case <-stop.Done():
			return
		case d := <-reports:
			l.report(ctx, lr, d)
			if ctx.Err() != nil {
				continue
			}
			rearm()
			if debounce == nil || lr.busyFor(time.Now(), l.Debounce) {
				continue
			}
			// The targets are done, or only slow ones still run: the
			// changes gathered meanwhile run now.
			debounce.Stop()
			debounce, debounceC = nil, nil
		case <-ticker.C:
			approved := l.heldApproved(ctx, lr)
			if len(approved) == 0 {
				l.idle(lr) // a target may have become slow since
				continue
			}
			if pending.Reason == "" {
				pending.Reason, pending.only = "approval", approved
			} else {
				pending.only = nil // a trigger was pending too: every target
			}
			if debounce != nil {
				debounce.Stop()
				debounce, debounceC = nil, nil
			}
		case t := <-triggers:
			pending.only = nil
			pending.Full = pending.Full || t.Full
			pending.RetryAll = pending.RetryAll || t.RetryAll
			if debounce != nil {
				continue // gathered into the run already waiting
			}
			pending.Reason = t.Reason
			// Changes that come while a target applies the last one are
			// gathered until it is done, unless it has been at it for
			// longer than the debounce: a slow target (a Mailman that
			// answers in seconds) takes the newest state when it is
			// done, and is no reason to make the others wait. The first
			// run waits for the debounce too: the source that announced
			// its view is still saving it (the live model's journal), and
			// the first run is the largest.
			if lr.busyFor(time.Now(), l.Debounce) || lr.gen == 0 {
				debounce = time.NewTimer(l.Debounce)
				debounceC = debounce.C
				continue
			}
			// No target runs: at once.
		case <-debounceC:
			debounce, debounceC = nil, nil
		case <-retry.C:
			if pending.Reason == "" {
				// Only what is due; every target after an unreadable directory.
				pending.Reason, pending.only = "retry", l.due(lr, time.Now())
			}
			if debounce != nil { // this run covers the pending trigger too
				debounce.Stop()
				debounce, debounceC = nil, nil
			}
		}
		l.runOnce(ctx, lr, pending)
		pending = run{}
		l.idle(lr)
		beat()
		if ctx.Err() == nil {
			rearm()
		}
	}
}

// run is a run the loop has pending: a trigger, and for a retry or an
// approval the targets it is for (nil: every target).
type run struct {
	Trigger
	only map[string]bool
}

// heldApproved returns the targets whose plan held by its guard has been
// approved since it was planned.
func (l *Loop) heldApproved(ctx context.Context, lr *loopRun) map[string]bool {
	if len(lr.held) == 0 || l.Approvals == nil {
		return nil
	}
	approved, err := l.Approvals(ctx)
	if err != nil {
		l.Log.Error("read approvals", "err", err)
		return nil
	}
	out := map[string]bool{}
	for target, digest := range lr.held {
		if approved[target] == digest {
			out[target] = true
		}
	}
	return out
}

// due returns the targets a retry at now is for: those whose backoff or
// maintenance window is over, and held plans due to be planned again;
// nil (every target) when the directory is read again after a failure.
func (l *Loop) due(lr *loopRun, now time.Time) map[string]bool {
	if !lr.sourceRetry.IsZero() {
		return nil
	}
	out := map[string]bool{}
	for target, at := range lr.due {
		if !at.After(now) {
			out[target] = true
		}
	}
	for target, at := range lr.window {
		if !at.After(now) {
			out[target] = true
		}
	}
	if l.HeldRetry > 0 && !lr.heldAt.Add(l.HeldRetry).After(now) {
		for target := range lr.held {
			out[target] = true
		}
	}
	return out
}

// runOnce reads the directory and gives the state to every target the run
// is for that is not waiting out a backoff (all of them on a full
// reconcile or RetryAll).
func (l *Loop) runOnce(ctx context.Context, lr *loopRun, t run) {
	start := time.Now()
	if l.Busy != nil {
		l.Busy()
	}
	fail := func(report RunReport, msg string) {
		lr.sourceFailures++
		wait := l.SourceBackoff(lr.sourceFailures)
		lr.sourceRetry = start.Add(wait)
		l.Log.Error(msg, "err", report.Err, "retry_in", wait)
		l.After(ctx, report)
	}
	if l.Lock != nil {
		release, err := l.Lock(ctx)
		if err != nil {
			if ctx.Err() == nil {
				fail(RunReport{Reason: t.Reason, Started: start, Duration: time.Since(start), Err: err}, "reconcile postponed")
			}
			return
		}
		defer release()
	}
	state, err := l.Engine.Read(ctx, t.Full)
	report := RunReport{Reason: t.Reason, Full: t.Full, Started: start, Duration: time.Since(start), State: state, Err: err}
	if ctx.Err() != nil {
		return
	}
	if state == nil {
		fail(report, "reconcile failed: directory unreadable; downstream keeps its last state")
		return
	}
	lr.sourceFailures, lr.sourceRetry = 0, time.Time{}
	l.After(ctx, report)
	opts := Options{Full: t.Full}
	if l.Approvals != nil {
		if opts.Approved, err = l.Approvals(ctx); err != nil {
			l.Log.Error("read approvals", "err", err)
		}
	}
	l.readQueue(ctx, lr)
	lr.gen++
	lr.settling = &settling{gen: lr.gen, state: state, waiting: map[string]bool{}}
	if len(lr.held) > 0 {
		lr.heldAt = start
	}
	for _, tg := range l.Engine.Targets {
		name := tg.Name()
		if at, waiting := lr.due[name]; waiting && !t.Full && !t.RetryAll && at.After(start) {
			continue
		}
		if t.only != nil && !t.only[name] {
			continue
		}
		lr.workers[name].give(&job{gen: lr.gen, reason: t.Reason, start: start, state: state, opts: opts})
		lr.given[name] = lr.gen
		if _, ok := lr.busy[name]; !ok {
			lr.busy[name] = time.Now()
		}
		lr.settling.waiting[name] = true
	}
	if s := lr.settling; len(s.waiting) == 0 {
		// Every target waits out a backoff: none is given the state.
		lr.settling = nil
		if l.Settled != nil {
			l.Settled(ctx, s.state) // under the lock already
		}
	}
}

// report takes a worker's report in: the retry queue, held plans, Done,
// and Settled once every target given the newest state has taken it.
func (l *Loop) report(ctx context.Context, lr *loopRun, d done) {
	if r := d.report.Result; r.Applied && r.Plan != nil {
		// Reported by its counts: the changes, applied, need not stay
		// live while the history is recorded (Settled). At 1M users a
		// first run's 83 MB of them were part of serve's peak.
		d.report.Result.Plan = r.Plan.Summary()
	}
	r := d.report.Result
	if lr.given[r.Target] == d.gen {
		delete(lr.busy, r.Target)
	}
	if ctx.Err() != nil {
		return // abandoned at stop: the next start runs it again
	}
	delete(lr.held, r.Target)
	delete(lr.window, r.Target)
	switch {
	case r.Plan != nil && r.Plan.Refused != "":
		// Held for approval: not a failure to back off from; planned
		// again by every run, and retried after HeldRetry.
		lr.held[r.Target] = r.Plan.Digest
		lr.heldAt = d.report.Started
	case r.Err != nil:
		changes := 0
		if r.Plan != nil {
			changes = len(r.Plan.Changes)
		}
		if qerr := l.Queue.Fail(ctx, r.Target, changes, r.Err); qerr != nil {
			l.Log.Error("queue failed target", "target", r.Target, "err", qerr)
		}
		l.Log.Error("target failed; queued for retry", "target", r.Target, "err", r.Err)
	default:
		if _, queued := lr.due[r.Target]; queued {
			if qerr := l.Queue.Succeed(ctx, r.Target); qerr != nil {
				l.Log.Error("dequeue target", "target", r.Target, "err", qerr)
			}
		}
		if !r.HeldUntil.IsZero() {
			// A target in maintenance is run again as its window ends.
			lr.window[r.Target] = r.HeldUntil
		}
	}
	l.readQueue(ctx, lr)
	// Settled before Done: the daemon's start-up is over (Done of the
	// last target) once the first state's history is recorded, so the
	// first change after start does not wait for that record.
	if s := lr.settling; s != nil && s.gen == d.gen && s.waiting[r.Target] {
		delete(s.waiting, r.Target)
		s.failed = s.failed || r.Err != nil
		if len(s.waiting) == 0 {
			lr.settling = nil
			if !s.failed && l.Settled != nil {
				l.settle(ctx, s.state)
			}
		}
	}
	if l.Done != nil {
		l.Done(ctx, d.report)
	}
	l.idle(lr)
}

// settle calls Settled under the lock.
func (l *Loop) settle(ctx context.Context, state *directory.State) {
	if l.Lock != nil {
		release, err := l.Lock(ctx)
		if err != nil {
			l.Log.Warn("the rules' history is not recorded this time", "err", err)
			return
		}
		defer release()
	}
	l.Settled(ctx, state)
}

// idle calls Idle when no target is running, or when some target is done
// and those still running are slow. While every target is still at a run,
// however long (at 1M users nss's first run takes 18 s), its data is
// live. The loop holds a state between runs only while a target given it
// has not taken it (settling), and such a target is busy.
func (l *Loop) idle(lr *loopRun) {
	if l.Idle == nil || lr.busyFor(time.Now(), l.Debounce) || len(lr.busy) > 0 && len(lr.busy) == len(lr.workers) {
		return
	}
	l.Idle()
}

// readQueue reads which targets wait out a backoff, and until when.
func (l *Loop) readQueue(ctx context.Context, lr *loopRun) {
	waiting, err := l.Queue.Waiting(ctx)
	if err != nil {
		l.Log.Error("read retry queue", "err", err)
		return
	}
	lr.due = waiting
}

// next is when a run is next due (ok is false when nothing waits): a
// retry of the directory, of a target's backoff, of held plans, or the
// end of a maintenance window.
func (l *Loop) next(ctx context.Context, lr *loopRun) (next time.Time, ok bool) {
	consider := func(at time.Time) {
		if !ok || at.Before(next) {
			next, ok = at, true
		}
	}
	if !lr.sourceRetry.IsZero() {
		consider(lr.sourceRetry)
	}
	if len(lr.held) > 0 && l.HeldRetry > 0 {
		consider(lr.heldAt.Add(l.HeldRetry))
	}
	for _, at := range lr.window {
		consider(at)
	}
	for target, at := range lr.due {
		if _, busy := lr.busy[target]; !busy { // a busy target takes the newest state anyway
			consider(at)
		}
	}
	return next, ok
}
