package daemon

import (
	"context"
	"errors"
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
	m.modelLive(ctx)
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
	idleAfterRun(ctx, m)
	if got := limit(); got != autoFloor {
		t.Errorf("auto after the first run with little live: limit %d MiB, want the floor %d MiB", got>>20, autoFloor>>20)
	}
	// Later runs do not measure again; a full reconcile does.
	m.afterRun(false)
	idleAfterRun(ctx, m)
	m.afterRun(false)
	if m.pending {
		t.Error("a second run measures again")
	}
	m.afterRun(true)
	if !m.pending {
		t.Error("a full reconcile does not measure")
	}
	idleAfterRun(ctx, m)

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
	// come: its data is gone when the run is over; a tenth, not two
	// fifths (at 1M users the peak RSS follows the limit).
	m.afterRun(true)
	if got := closeFor(highFor); got < 108<<20 || got > 115<<20 {
		t.Errorf("live heap of 100 MiB close to a limit of 105 MiB for %v while a measurement is due: limit %d MiB, want about 110", highFor, got>>20)
	}
	idleAfterRun(ctx, m)
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
	idleAfterRun(ctx, m)
	if got := limit(); got != autoFloor {
		t.Errorf("after the first run as leader: limit %d MiB, want the floor", got>>20)
	}
	m.configure(ctx, "off")
	if m.check(now) {
		t.Error("check goes on after the limit was turned off")
	}
}

// idleAfterRun: the loop idle after a run; it waits for the measurement
// idle starts, if any.
func idleAfterRun(ctx context.Context, m *memoryLimit) {
	if done := m.idle(ctx, time.Now()); done != nil {
		<-done
	}
}

// TestMemoryLimitRestsOffTheLoop: the resting measurement a run asked for
// is taken when the loop is next idle, on a goroutine of its own (the
// loop's call returns while it is under way: a change coming meanwhile
// does not wait for a collection of the whole heap). One that a run
// overlapped sets the limit and is taken again once the loop has been
// idle for restQuiet, not at every idle moment.
func TestMemoryLimitRestsOffTheLoop(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &memoryLimit{log: slog.New(slog.NewTextHandler(io.Discard, nil)), collect: func() (uint64, bool) { return 100 << 20, true }}
	m.configure(ctx, "auto")
	m.modelLive(ctx)
	if got, want := limit(), autoLimit(100<<20); got != want {
		t.Fatalf("model live: limit %d MiB, want %d", got>>20, want>>20)
	}
	// The measurements from here on find what rest says, once released.
	entered, release, rest := make(chan struct{}, 4), make(chan struct{}), uint64(0)
	t.Cleanup(func() { close(release) })
	m.collect = func() (uint64, bool) {
		entered <- struct{}{}
		<-release
		return rest, true
	}
	// measure calls idle as the loop does; it fails if idle does not
	// return while its measurement is under way.
	measure := func(now time.Time) <-chan struct{} {
		t.Helper()
		started := make(chan (<-chan struct{}), 1)
		go func() { started <- m.idle(ctx, now) }()
		select {
		case done := <-started:
			if done == nil {
				t.Fatal("idle started no measurement")
			}
			<-entered
			return done
		case <-time.After(2 * time.Second):
			t.Fatal("idle did not return while its measurement was under way: the loop would wait for it")
			return nil
		}
	}

	m.busy()
	m.afterRun(false) // the first run
	t0 := time.Now()
	done := measure(t0)
	if again := m.idle(ctx, t0.Add(restQuiet)); again != nil {
		t.Fatal("a second measurement started beside the first")
	}
	// A change's run begins during it: the limit is set, and the
	// measurement is due again.
	m.busy()
	rest = 60 << 20
	release <- struct{}{}
	<-done
	if got, want := limit(), autoLimit(60<<20); got != want {
		t.Errorf("after a measurement a run overlapped: limit %d MiB, want %d", got>>20, want>>20)
	}
	if !m.pending {
		t.Error("a measurement a run overlapped is no longer due")
	}
	// Taken again after restQuiet of idleness, not before.
	t1 := time.Now()
	for _, d := range []time.Duration{0, restQuiet / 2} {
		if done := m.idle(ctx, t1.Add(d)); done != nil {
			t.Fatalf("measured again after the loop was idle for %v", d)
		}
	}
	done = measure(t1.Add(restQuiet))
	rest = 50 << 20
	release <- struct{}{}
	<-done
	if got, want := limit(), autoLimit(50<<20); got != want {
		t.Errorf("after the loop was idle for %v: limit %d MiB, want %d", restQuiet, got>>20, want>>20)
	}
	if m.pending {
		t.Error("measured, still due")
	}
	// A full reconcile's measurement: at once again.
	m.busy()
	m.afterRun(true)
	done = measure(time.Now())
	release <- struct{}{}
	<-done
}

// TestCollectLiveLeavesOutWhatARunAllocates: the resting heap is what
// was live before the measurement, not what a run beside it allocated.
func TestCollectLiveLeavesOutWhatARunAllocates(t *testing.T) {
	runtime.GC()
	base, ok := collectLive(runtime.GC)
	if !ok {
		t.Fatal("no live heap measured")
	}
	held := make([][]byte, 100)
	for i := range held {
		held[i] = make([]byte, 1<<20)
	}
	var run [][]byte
	got, _ := collectLive(func() {
		for range 200 { // a run's data, live when the collection ends
			run = append(run, make([]byte, 1<<20))
		}
		runtime.GC()
	})
	runtime.KeepAlive(held)
	runtime.KeepAlive(run)
	if lo, hi := base+95<<20, base+115<<20; got < lo || got > hi {
		t.Errorf("resting heap %d MiB with 100 MiB held before the measurement and 200 MiB allocated during it, want about %d", got>>20, (base+100<<20)>>20)
	}
}

// keptHeaps is the state store's record of heaps, in memory.
type keptHeaps struct {
	heaps map[string]uint64
	err   error
}

func (k *keptHeaps) PeakLive(_ context.Context, name string) (uint64, error) {
	return k.heaps[name], k.err
}

func (k *keptHeaps) SavePeakLive(_ context.Context, name string, peak uint64, _ time.Time) error {
	if k.err != nil {
		return k.err
	}
	k.heaps[name] = peak
	return nil
}

// TestMemoryLimitKeptAcrossStarts: auto keeps the model's resting heap and
// the first run's peak; the next start holds the limit at autoLimit of the
// one until the model is complete, and at firstLimit of the other during
// the first run, instead of following the heap as it grows. Nothing kept
// (or a store that fails): the heap is followed, as on a first start.
func TestMemoryLimitKeptAcrossStarts(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hold := func(mib int) [][]byte {
		b := make([][]byte, mib)
		for i := range b {
			b[i] = make([]byte, 1<<20)
		}
		runtime.GC()
		return b
	}
	runtime.GC()
	kept := &keptHeaps{heaps: map[string]uint64{}}

	// The first start: a model of 100 MiB, a first run holding 60 MiB
	// more.
	ctx, cancel := context.WithCancel(context.Background())
	m := &memoryLimit{log: quiet, kept: kept}
	m.configure(ctx, "auto")
	model := hold(100)
	m.modelLive(ctx)
	run := hold(60)
	m.check(time.Now())
	runtime.KeepAlive(run)
	run = nil
	m.afterRun(false)
	// Kept as soon as the loop is idle after the first run, before the
	// resting measurement ends: serve may stop during it.
	done := m.idle(ctx, time.Now())
	if got := kept.heaps[firstRunPeak]; got < 160<<20 || got > 175<<20 {
		t.Errorf("kept first run's peak %d MiB as soon as the loop was idle, want about 160", got>>20)
	}
	<-done
	runtime.KeepAlive(model)
	model = nil
	cancel()
	if got := kept.heaps[modelAtRest]; got < 100<<20 || got > 115<<20 {
		t.Errorf("kept resting model %d MiB, want about 100", got>>20)
	}
	if got := kept.heaps[firstRunPeak]; got < 160<<20 || got > 175<<20 {
		t.Errorf("kept first run's peak %d MiB, want about 160", got>>20)
	}

	// The next start, little live yet: the limit is where the model
	// rested, then where the first run peaked.
	runtime.GC()
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	m = &memoryLimit{log: quiet, kept: kept}
	m.configure(ctx, "auto")
	m.check(time.Now())
	if got, want := limit(), autoLimit(kept.heaps[modelAtRest]); got != want {
		t.Errorf("restoring the model: limit %d MiB, want %d (the kept resting heap's)", got>>20, want>>20)
	}
	m.modelLive(ctx)
	if got, want := limit(), firstLimit(kept.heaps[firstRunPeak]); got != want {
		t.Errorf("first run: limit %d MiB, want %d (the kept first run's)", got>>20, want>>20)
	}
	m.afterRun(false)
	idleAfterRun(ctx, m)
	if got := limit(); got != autoFloor {
		t.Errorf("after the first run with little live: limit %d MiB, want the floor", got>>20)
	}
	cancel()

	// A store that fails: followed as on a first start.
	kept.err = errors.New("disk I/O error")
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	m = &memoryLimit{log: quiet, kept: kept}
	m.configure(ctx, "auto")
	m.check(time.Now())
	if got := limit(); got != autoFloor {
		t.Errorf("store failing, little live: limit %d MiB, want the floor", got>>20)
	}
	m.modelLive(ctx)
	if got := limit(); got != autoFloor {
		t.Errorf("store failing, first run: limit %d MiB, want the floor", got>>20)
	}
}
