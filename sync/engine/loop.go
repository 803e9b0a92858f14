package engine

import (
	"context"
	"log/slog"
	"math"
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

// RunReport is what one reconcile did, for history, metrics and status.
type RunReport struct {
	Reason   string
	Full     bool // a full reconcile
	Started  time.Time
	Duration time.Duration
	State    *directory.State // nil when the directory could not be read
	Results  []Result
	Err      error
}

// Loop runs the engine when asked: at start, on (debounced) triggers, and
// when a failed target or an unreadable directory is due for a retry.
type Loop struct {
	Engine   *Engine
	Queue    Queue
	Debounce time.Duration
	// SourceBackoff is the wait before re-reading a directory that failed
	// attempts times in a row.
	SourceBackoff func(attempts int) time.Duration
	// After sees every run (it must not block for long).
	After func(context.Context, RunReport)
	// Idle, if set, is called after each run once the loop no longer
	// holds anything of it (the daemon measures its resting memory there);
	// it must not block for long.
	Idle func()
	// Heartbeat, if set, is called at least every second while the loop
	// is idle and after every run: a stuck loop stops beating (the
	// systemd watchdog listens).
	Heartbeat func()
	// Approvals, if set, returns the recorded approvals (target → plan
	// digest). While a plan is held by its guard the loop asks every
	// second, and runs at once when the held plan is approved.
	Approvals func(ctx context.Context) (map[string]string, error)
	// HeldRetry is how soon a run retries plans held by their guards when
	// nothing else triggers one (the directory may have recovered).
	HeldRetry time.Duration
	// Lock, if set, is held for each run from before the directory is
	// read until After has returned, so that runs of other processes on
	// the same state interleave with this loop's, never inside them.
	Lock func(ctx context.Context) (release func(), err error)
	// WaitForTrigger holds the first run (a full reconcile) until the
	// first trigger: a source that builds its view first announces it.
	WaitForTrigger bool
	Log            *slog.Logger

	held map[string]string // target → digest of its plan held by the guard
}

// Run reconciles until stop ends; runs use ctx, so a run in progress when
// stop ends may finish until ctx ends too. A cancelled run is safe:
// targets write atomically, so an abandoned apply leaves the old state,
// and the next run redoes it.
func (l *Loop) Run(stop, ctx context.Context, triggers <-chan Trigger) {
	beat := func() {
		if l.Heartbeat != nil {
			l.Heartbeat()
		}
	}
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var (
		debounce  *time.Timer
		debounceC <-chan time.Time
		// At start every queued target is tried again; the targets' real
		// state is read as none is known yet.
		pending        = Trigger{Reason: "start", RetryAll: true}
		retry          = time.NewTimer(0) // the first run, at once (unless WaitForTrigger)
		sourceFailures int
	)
	l.held = map[string]string{}
	defer retry.Stop()
	if l.WaitForTrigger {
		retry.Reset(math.MaxInt64) // never, until a trigger comes
	}
	for {
		beat()
		select {
		case <-stop.Done():
			return
		case <-ticker.C:
			if !l.heldApproved(ctx) {
				continue
			}
			pending.Reason = "approval"
			if debounce != nil {
				debounce.Stop()
				debounce, debounceC = nil, nil
			}
		case t := <-triggers:
			pending.Full = pending.Full || t.Full
			pending.RetryAll = pending.RetryAll || t.RetryAll
			if debounce == nil {
				pending.Reason = t.Reason
				debounce = time.NewTimer(l.Debounce)
				debounceC = debounce.C
			}
			continue
		case <-debounceC:
			debounce, debounceC = nil, nil
		case <-retry.C:
			if pending.Reason == "" {
				pending.Reason = "retry"
			}
			if debounce != nil { // this run covers the pending trigger too
				debounce.Stop()
				debounce, debounceC = nil, nil
			}
		}
		next, ok := l.runOnce(ctx, pending, &sourceFailures)
		pending = Trigger{}
		if l.Idle != nil {
			l.Idle()
		}
		beat()
		if !retry.Stop() {
			select {
			case <-retry.C:
			default:
			}
		}
		if ok {
			retry.Reset(time.Until(next))
		}
	}
}

// heldApproved reports whether a plan held by its guard has been approved
// since the last run.
func (l *Loop) heldApproved(ctx context.Context) bool {
	if len(l.held) == 0 || l.Approvals == nil {
		return false
	}
	approved, err := l.Approvals(ctx)
	if err != nil {
		l.Log.Error("read approvals", "err", err)
		return false
	}
	for target, digest := range l.held {
		if approved[target] == digest {
			return true
		}
	}
	return false
}

// runOnce runs the engine and returns when the next retry is due (ok is
// false when nothing waits).
func (l *Loop) runOnce(ctx context.Context, t Trigger, sourceFailures *int) (next time.Time, ok bool) {
	start := time.Now()
	if l.Lock != nil {
		release, err := l.Lock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return time.Time{}, false
			}
			*sourceFailures++
			wait := l.SourceBackoff(*sourceFailures)
			l.Log.Warn("reconcile postponed", "err", err, "retry_in", wait)
			l.After(ctx, RunReport{Reason: t.Reason, Started: start, Duration: time.Since(start), Err: err})
			return start.Add(wait), true
		}
		defer release()
	}
	waiting, err := l.Queue.Waiting(ctx)
	if err != nil {
		l.Log.Error("read retry queue", "err", err)
	}
	skip := map[string]bool{}
	for target, at := range waiting {
		if !t.Full && !t.RetryAll && at.After(start) {
			skip[target] = true
		}
	}
	opts := Options{Skip: skip, Full: t.Full}
	if l.Approvals != nil {
		if opts.Approved, err = l.Approvals(ctx); err != nil {
			l.Log.Error("read approvals", "err", err)
		}
	}
	state, results, err := l.Engine.Run(ctx, opts)
	report := RunReport{Reason: t.Reason, Full: t.Full, Started: start, Duration: time.Since(start), State: state, Results: results, Err: err}
	if ctx.Err() != nil {
		return time.Time{}, false
	}
	if state == nil {
		*sourceFailures++
		wait := l.SourceBackoff(*sourceFailures)
		l.Log.Error("reconcile failed: directory unreadable; downstream keeps its last state", "err", err, "retry_in", wait)
		l.After(ctx, report)
		return start.Add(wait), true
	}
	*sourceFailures = 0
	for _, r := range results {
		delete(l.held, r.Target)
		switch {
		case r.Plan != nil && r.Plan.Refused != "":
			// Held for approval: not a failure to back off from; planned
			// again by every run, and retried after HeldRetry.
			l.held[r.Target] = r.Plan.Digest
		case r.Err != nil:
			changes := 0
			if r.Plan != nil {
				changes = len(r.Plan.Changes)
			}
			if qerr := l.Queue.Fail(ctx, r.Target, changes, r.Err); qerr != nil {
				l.Log.Error("queue failed target", "target", r.Target, "err", qerr)
			}
			l.Log.Error("target failed; queued for retry", "target", r.Target, "err", r.Err)
		case r.Err == nil:
			if _, queued := waiting[r.Target]; queued {
				if qerr := l.Queue.Succeed(ctx, r.Target); qerr != nil {
					l.Log.Error("dequeue target", "target", r.Target, "err", qerr)
				}
			}
		}
	}
	l.After(ctx, report)
	if len(l.held) > 0 && l.HeldRetry > 0 {
		next, ok = start.Add(l.HeldRetry), true
	}
	for _, r := range results {
		// A target in maintenance is run again as its window ends.
		if !r.HeldUntil.IsZero() && (!ok || r.HeldUntil.Before(next)) {
			next, ok = r.HeldUntil, true
		}
	}
	waiting, err = l.Queue.Waiting(ctx)
	if err != nil {
		return next, ok
	}
	for _, at := range waiting {
		if !ok || at.Before(next) {
			next, ok = at, true
		}
	}
	return next, ok
}
