package daemon

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestMemoryLimit: a size and off are applied as given, GOMEMLIMIT wins,
// and auto follows the resting heap: half as much again as is live when
// the model is complete, and again after the first run, at least autoFloor.
func TestMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &memoryLimit{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	limit := func() int64 { return debug.SetMemoryLimit(-1) }

	m.configure(ctx, "256MiB")
	if got := limit(); got != 256<<20 {
		t.Errorf("256MiB: limit %d", got)
	}
	m.configure(ctx, "off")
	if got := limit(); got != math.MaxInt64 {
		t.Errorf("off: limit %d", got)
	}
	t.Setenv("GOMEMLIMIT", "300MiB")
	m.configure(ctx, "1GiB")
	if got := limit(); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set, the setting changed the limit to %d", got)
	}
	t.Setenv("GOMEMLIMIT", "")
	runtime.GC()

	// A model of 100 MiB held while the model becomes live.
	m.configure(ctx, "auto")
	model := make([][]byte, 100)
	for i := range model {
		model[i] = make([]byte, 1<<20)
	}
	m.modelLive()
	if got := limit(); got < 140<<20 || got > 170<<20 {
		t.Errorf("auto with 100 MiB live: limit %d MiB, want about 140", got>>20)
	}
	runtime.KeepAlive(model)
	model = nil
	// The first run ends with far less live: measured when the loop is
	// next idle, not while the run's report is still held.
	m.afterRun(false)
	if got := limit(); got < 140<<20 {
		t.Errorf("measured before the loop let the run go: limit %d MiB", got>>20)
	}
	m.idle()
	if got := limit(); got != autoFloor {
		t.Errorf("auto after the first run with little live: limit %d MiB, want the floor %d MiB", got>>20, autoFloor>>20)
	}
	// Later runs do not measure again; a full reconcile does.
	m.afterRun(false)
	m.idle()
	m.afterRun(false)
	if m.pending {
		t.Error("a second run measures again")
	}
	m.afterRun(true)
	if !m.pending {
		t.Error("a full reconcile does not measure")
	}
	m.idle()

	// follow's own checks, on the clock, stop: the checks below are on
	// a test clock.
	cancel()
	time.Sleep(300 * time.Millisecond)

	// A slow target holds an older state and its plan, 100 MiB, while the
	// loop goes on: the limit at the floor is raised, not fought, once the
	// heap has stayed over it for overFor; not at once, as a run's own data
	// comes and goes.
	held := make([][]byte, 100)
	for i := range held {
		held[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	now := time.Now().Add(time.Hour) // after anything follow checks
	if !m.check(now) {
		t.Fatal("check: the limit is no longer automatic")
	}
	if got := limit(); got != autoFloor {
		t.Errorf("raised at the first sight of a high live heap: limit %d MiB", got>>20)
	}
	m.check(now.Add(overFor))
	if got := limit(); got < 125<<20 || got > 150<<20 {
		t.Errorf("live heap of 100 MiB over a limit of %d MiB for %v: limit %d MiB, want about 125", autoFloor>>20, overFor, got>>20)
	}
	// closeFor puts the limit at 105 MiB, the live heap of 100 MiB close
	// to it from a minute on, checked then and after d: the limit then.
	closeFor := func(d time.Duration) int64 {
		m.mu.Lock()
		m.limit, m.highSince = 105<<20, time.Time{}
		m.mu.Unlock()
		debug.SetMemoryLimit(105 << 20)
		now = now.Add(time.Minute)
		m.check(now)
		m.check(now.Add(d))
		return limit()
	}
	// Close to the limit but under it, the collector keeps up: raised
	// only after highFor.
	if got := closeFor(overFor); got != 105<<20 {
		t.Errorf("live heap of 100 MiB under a limit of 105 MiB: raised to %d MiB after %v", got>>20, overFor)
	}
	m.check(now.Add(highFor))
	if got := limit(); got < 140<<20 || got > 170<<20 {
		t.Errorf("live heap of 100 MiB close to a limit of 105 MiB for %v: limit %d MiB, want about 140", highFor, got>>20)
	}
	// The same while a full reconcile's resting measurement is still to
	// come: its data is gone when the run is over; a fifth, not two
	// fifths (at 1M users the peak RSS follows the limit).
	m.afterRun(true)
	if got := closeFor(highFor); got < 118<<20 || got > 130<<20 {
		t.Errorf("live heap of 100 MiB close to a limit of 105 MiB for %v while a measurement is due: limit %d MiB, want about 120", highFor, got>>20)
	}
	m.idle()
	runtime.KeepAlive(held)
	// Far under the limit: unchanged.
	held = nil
	runtime.GC()
	before := limit()
	m.check(now.Add(3 * highFor))
	if got := limit(); got != before {
		t.Errorf("a live heap far under the limit changed it from %d to %d MiB", before>>20, got>>20)
	}
	// A standby starts leading: no limit until its first run as leader,
	// which reads every target whole, has been let go.
	m.lead()
	if got := limit(); got != math.MaxInt64 {
		t.Errorf("leading: limit %d MiB, want none during the first run", got>>20)
	}
	m.check(now.Add(4 * highFor))
	if got := limit(); got != math.MaxInt64 {
		t.Errorf("leading: check set the limit to %d MiB during the first run", got>>20)
	}
	m.afterRun(false)
	m.idle()
	if got := limit(); got != autoFloor {
		t.Errorf("after the first run as leader: limit %d MiB, want the floor", got>>20)
	}
	m.configure(ctx, "off")
	if m.check(now) {
		t.Error("check goes on after the limit was turned off")
	}
}
