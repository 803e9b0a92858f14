package daemon

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"sync"
	"time"

	"github.com/collabsync/collabsync/app/config"
)

// autoFloor is the least limit serve.memory_limit: auto sets.
const autoFloor = 64 << 20

// autoLimit is the limit auto sets for a resting heap: two fifths more.
// A run holds its snapshot, state and plans besides the resting heap; at
// 100k users that is 18 MiB over 80 (a first run, which plans every
// record, ≈30 MiB), all of it growing with the directory as the resting
// heap does. The limit also covers the runtime's own memory (≈17 MiB at
// 100k users), and the process's RSS is the limit and the binary's pages
// (≈21 MiB). Half as much again put serve's peak RSS at 100k users at
// 143-144 MiB, over issue 23's 150 MB (143 MiB); two fifths at 135-148
// MiB, under it in fifteen runs of seventeen (docs/BENCHMARKS.md).
func autoLimit(resting uint64) int64 { return max(int64(resting+resting*2/5), autoFloor) }

// memoryLimit keeps the Go heap's soft limit (serve.memory_limit).
//
// Go collects when the heap has grown by GOGC (100 %) over what was live
// at the last collection. For serve that is often marked in the middle of
// a reconcile, with the run's snapshot, state and plans live besides the
// model, and every change allocates tens of MB: at 100k users the heap
// goal reached 2.5 times what serve keeps between runs. With auto, the
// limit is autoLimit of that resting heap, measured with a collection when
// the live model is first complete (before the first run) and when the
// loop is idle after the first run and after each full reconcile (their
// garbage is then also returned to the system; a slow target still
// running then is part of the rest, engine.Loop.Idle). That measurement
// runs beside the loop, and what is allocated while it runs is not
// counted: a run beginning meanwhile (engine.Loop.Busy) has it taken again
// once the loop has been idle for restQuiet. A soft limit fails
// no allocation: a run that needs more grows the heap past it, with the
// collector working harder. After the resting measurement, a live heap
// that stays within a tenth of the limit for highFor, or over it for
// overFor (a slow target holding an older state and its plan while the
// loop reads newer ones), raises it: to autoLimit of that heap after
// highFor, to overLimit after overFor, and to runLimit either way while a
// measurement is still to come (a first run's data is gone once the run
// is over, and the resting heap measured again). The model's resting heap
// and the first run's peak are kept in the state store: the next start
// holds the limit at autoLimit of the one while the model is restored or
// read, and at firstLimit of the other during its first run, instead of
// following a heap that grows by hundreds of MiB. A collector bound to a
// heap it cannot shrink runs without end, and every change waits for it
// (with 2 s, a Mailman answering after 2 s doubled nss's change latency
// at 100k users). A run's own data, live for a fraction of a second, does
// not.
type memoryLimit struct {
	log *slog.Logger
	// kept remembers the model's resting heap and the first run's peak
	// across restarts; nil: not kept.
	kept restingHeaps

	mu      sync.Mutex
	auto    bool
	rested  bool // a resting measurement was taken under this setting
	ran     bool // a run ended under this setting
	pending bool // a measurement is due when the loop is next idle
	limit   int64
	// before is the least limit until the model is first complete:
	// autoLimit of the resting heap the model had the last time (0: none
	// kept); first the least limit of the first run: firstLimit of the
	// live heap the last first run peaked at.
	before, first int64
	// firstPeak is the largest live heap seen since the model was
	// complete, until the first run's resting measurement (firstDone).
	firstPeak uint64
	firstDone bool
	// highSince is since when every collection found the live heap
	// within a tenth of the limit.
	highSince time.Time
	// idleSince is since when the loop has been idle (zero: a run is
	// under way); taking says a resting measurement is under way,
	// overlapped that a run began during it, and again that one did
	// during the last.
	idleSince                 time.Time
	taking, overlapped, again bool
	// peakKept says the first run's peak was given to kept.
	peakKept bool
	// collect measures the resting heap (nil: collectLive of a collection
	// that returns the freed memory to the system).
	collect func() (uint64, bool)
}

// restingHeaps keeps a measured heap by name (the state store).
type restingHeaps interface {
	PeakLive(ctx context.Context, command string) (uint64, error)
	SavePeakLive(ctx context.Context, command string, peak uint64, at time.Time) error
}

// The kept heaps: the live model's resting heap, and the live heap's
// peak during the first run.
const (
	modelAtRest  = "serve: live model at rest"
	firstRunPeak = "serve: first run at peak"
)

// restQuiet is how long the loop stays idle before a resting measurement
// that a run overlapped is taken again: each collects the whole heap (0.6
// s of CPU at 1M users), and with changes coming back to back, taken at
// every idle moment, one would run beside almost every change.
const restQuiet = time.Second

// highFor is how long the live heap stays close to the limit before it is
// raised; overFor how long it stays over it, the collector then running
// back to back (Go lets it take half the CPU).
const (
	highFor = 2 * time.Second
	overFor = 400 * time.Millisecond
)

// configure applies a setting (at start and on each reload, until ctx
// ends).
func (m *memoryLimit) configure(ctx context.Context, setting string) {
	var before, first int64
	if setting == config.MemoryLimitAuto && os.Getenv("GOMEMLIMIT") == "" {
		before, first = m.keptLimits(ctx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.auto, m.rested, m.ran = false, false, false
	m.before, m.first, m.firstPeak, m.firstDone, m.peakKept = before, first, 0, false, false
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		m.log.Info("memory limit from GOMEMLIMIT; serve.memory_limit is not used", "GOMEMLIMIT", v)
		return
	}
	switch setting {
	case config.MemoryLimitAuto:
		m.auto = true
		go m.follow(ctx)
	case config.MemoryLimitOff:
		debug.SetMemoryLimit(math.MaxInt64)
	default:
		n, _ := config.ParseSize(setting) // validated
		debug.SetMemoryLimit(n)
	}
}

// keptLimits are the least limits the kept heaps give until the model is
// complete (before) and during the first run (first); 0 where none is
// kept.
func (m *memoryLimit) keptLimits(ctx context.Context) (before, first int64) {
	if m.kept == nil {
		return 0, 0
	}
	resting, err := m.kept.PeakLive(ctx, modelAtRest)
	var peak uint64
	if err == nil {
		peak, err = m.kept.PeakLive(ctx, firstRunPeak)
	}
	if err != nil {
		m.log.Warn("the last start's heap is not known; the memory limit follows the heap until the first run is over", "err", err)
		return 0, 0
	}
	if resting > 0 {
		before = autoLimit(resting)
	}
	if peak > 0 {
		first = firstLimit(peak)
	}
	return before, first
}

// afterRun asks for a measurement of the resting heap after the first run
// and after each full reconcile, when the limit is automatic; idle takes it
// once the loop has let the run go (measured while the next change's run
// was under way, the resting heap came out 15 MiB too high at 100k users).
func (m *memoryLimit) afterRun(full bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	first := !m.ran
	m.ran = true
	if m.auto && (first || full) {
		m.pending = true
	}
}

// busy: a run begins (engine.Loop.Busy). A resting measurement under way
// is taken again once the loop has been idle for restQuiet: it subtracts
// all the run allocated while it ran, also what was allocated after the
// mark (while the collection sweeps and returns memory), which the live
// heap never counted, so it comes out low (at 1M users 885 MiB against
// 902).
func (m *memoryLimit) busy() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.idleSince = time.Time{}
	m.overlapped = m.taking
}

// idle takes a measurement afterRun asked for (the loop calls it at every
// report and every second while idle), after restQuiet if a run overlapped
// the last. The measurement runs on a goroutine of its own: taken on the
// loop's, it held up every change that came meanwhile (at 1M users for
// 0.65 s: the first change after a restart was in getent 0.60-0.74 s
// after ldapmodify returned, the next ones 0.1-0.3 s). The live heap's
// peak during the first run is kept for the next start at once. idle
// returns a channel closed when the measurement it started is over; nil
// if it started none.
func (m *memoryLimit) idle(ctx context.Context, now time.Time) <-chan struct{} {
	m.mu.Lock()
	if m.idleSince.IsZero() {
		m.idleSince = now
	}
	first, peak := !m.firstDone && m.rested, m.firstPeak
	keep := m.pending && first && !m.peakKept && peak > 0 && m.kept != nil
	m.peakKept = m.peakKept || keep
	start := m.pending && !m.taking && (!m.again || now.Sub(m.idleSince) >= restQuiet)
	if start {
		m.taking, m.overlapped = true, false
	}
	m.mu.Unlock()
	if keep {
		if err := m.kept.SavePeakLive(ctx, firstRunPeak, peak, time.Now()); err != nil {
			m.log.Warn("the first run's peak heap is not kept for the next start", "err", err)
		}
	}
	if !start {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if m.rest() > 0 && first {
			m.mu.Lock()
			m.firstDone = true
			m.mu.Unlock()
		}
	}()
	return done
}

// follow keeps the limit at autoLimit of the heap the last collection
// found live until the first resting measurement: while the refresh
// streams the directory in, the model grows and each entry leaves
// kilobytes of decoder garbage, and the heap alone is what Go's default
// goal counts, not the freed memory not yet returned to the system. After
// it, follow raises the limit when the live heap comes close to it.
func (m *memoryLimit) follow(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if !m.check(time.Now()) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check applies the live heap the last collection found to an automatic
// limit; false once the limit is no longer automatic.
func (m *memoryLimit) check(now time.Time) bool {
	sample := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(sample)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.auto {
		return false
	}
	if sample[0].Value.Kind() != runtimemetrics.KindUint64 {
		return true
	}
	live := sample[0].Value.Uint64()
	if m.rested && !m.firstDone {
		m.firstPeak = max(m.firstPeak, live)
	}
	switch {
	case !m.rested:
		debug.SetMemoryLimit(max(autoLimit(live), m.before))
	case int64(live) <= m.limit-m.limit/10:
		m.highSince = time.Time{}
	case m.highSince.IsZero():
		m.highSince = now
	case now.Sub(m.highSince) >= highFor:
		m.raise(m.raiseTo(autoLimit, live), live)
	case int64(live) > m.limit && now.Sub(m.highSince) >= overFor:
		m.raise(m.raiseTo(overLimit, live), live)
	}
	return true
}

// raiseTo is limit of a live heap, or runLimit of it while a measurement
// is still to come: then it holds a first run's or a full reconcile's
// data, gone when the resting heap is measured again (room, not a new
// rest). Called with mu held.
func (m *memoryLimit) raiseTo(limit func(uint64) int64, live uint64) int64 {
	if m.measuring() {
		return runLimit(live)
	}
	return limit(live)
}

// measuring says whether a resting measurement is still to come: the
// first run (or a full reconcile) is under way, or its targets but slow
// ones are not yet done. Until then the live heap holds the run's own
// data (at 1M users the first run's plan and evaluation, ≈170 MiB over
// the resting heap), which is no reason for a limit two fifths over it:
// the peak RSS follows the limit. Called with mu held.
func (m *memoryLimit) measuring() bool { return m.pending || !m.ran }

// runLimit is the limit a live heap close to or over it raises it to
// while a measurement is still to come: a tenth more. At 1M users a first
// start's live heap peaked at 1,018-1,055 MiB: a quarter over it put the
// peak RSS at 1,293-1,298 MiB, over issue 23's 1.25 GiB, a fifth at
// 1,261-1,263, a tenth at 1,220-1,222 with the first start as long
// (29.6-29.9 s against 29.2-30.4).
func runLimit(live uint64) int64 { return max(int64(live+live/10), autoFloor) }

// firstLimit is the least limit of a first run whose last one peaked at a
// live heap of peak: a twentieth more. At 1M users the first run after a
// restart holds 290-350 MiB over the model's resting 675 MiB; under the
// model's limit (autoLimit, 945 MiB) the collector ran back to back, 40 %
// of the run's CPU, until the limit was raised. A fifth over the peak put
// the restart's peak RSS at 1,300 MiB, a tenth at 1,139-1,310 (the first
// start's first run peaks higher than a restart's), over issue 23's
// 1.25 GiB; a twentieth at 1,199 with the restart at 14.1 s.
func firstLimit(peak uint64) int64 { return max(int64(peak+peak/20), autoFloor) }

// overLimit is the limit a live heap over the limit raises it to: a
// quarter more, room for the collector to work without making what may
// be a first run's data (gone once it is over, when the resting heap is
// measured again) a peak half as large again.
func overLimit(live uint64) int64 { return max(int64(live+live/4), autoFloor) }

func (m *memoryLimit) raise(limit int64, live uint64) {
	m.highSince = time.Time{}
	old := m.limit
	m.limit = limit
	debug.SetMemoryLimit(m.limit)
	m.log.Info("memory limit raised: the live heap came close to it", "live_MiB", live>>20, "was_MiB", old>>20, "limit_MiB", m.limit>>20)
}

// modelLive measures the heap when the live model is first complete, so
// that the limit holds from the first reconcile on, and keeps it: the
// next start holds its limit there while the model is restored or read
// (at 1M users, following the growing heap, the collector took 39 % of
// the restore's CPU).
func (m *memoryLimit) modelLive(ctx context.Context) {
	m.mu.Lock()
	auto := m.auto && !m.rested
	m.mu.Unlock()
	if !auto {
		return
	}
	resting := m.rest()
	if resting == 0 {
		return
	}
	m.mu.Lock()
	if m.first > m.limit {
		m.limit = m.first
		debug.SetMemoryLimit(m.limit)
		m.log.Info("memory limit raised for the first run, to a twentieth over the last first run's peak", "limit_MiB", m.limit>>20)
	}
	m.mu.Unlock()
	if m.kept != nil {
		if err := m.kept.SavePeakLive(ctx, modelAtRest, resting, time.Now()); err != nil {
			m.log.Warn("the live model's resting heap is not kept for the next start", "err", err)
		}
	}
}

// rest measures the resting heap and sets an automatic limit from it; it
// returns the heap measured (0: the limit is not automatic). One that a
// run overlapped is still due.
func (m *memoryLimit) rest() uint64 {
	collect := m.collect
	if collect == nil {
		collect = func() (uint64, bool) { return collectLive(debug.FreeOSMemory) }
	}
	resting, ok := collect()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.again = m.taking && m.overlapped
	m.taking = false
	m.pending = m.again
	if m.again {
		m.log.Debug("a run began during the resting heap's measurement; measured again when the loop has been idle for a while")
	}
	if !m.auto || !ok {
		return 0
	}
	m.rested, m.highSince = true, time.Time{}
	m.limit = autoLimit(resting)
	debug.SetMemoryLimit(m.limit)
	m.log.Info("memory limit set from the resting heap", "resting_MiB", resting>>20, "limit_MiB", m.limit>>20)
	return resting
}

// collectLive runs collect, a collection of the whole heap, and says how
// much of what was there before it is live: the heap the collection
// found live less what was allocated while it ran (a run beside it
// allocates, and the collection counts as live whatever is allocated
// while it marks).
func collectLive(collect func()) (uint64, bool) {
	sample := []runtimemetrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(sample[:1])
	if sample[0].Value.Kind() != runtimemetrics.KindUint64 {
		return 0, false
	}
	before := sample[0].Value.Uint64()
	collect()
	runtimemetrics.Read(sample)
	if sample[1].Value.Kind() != runtimemetrics.KindUint64 {
		return 0, false
	}
	live, allocated := sample[1].Value.Uint64(), sample[0].Value.Uint64()-before
	return live - min(live, allocated), true
}

// lead lifts an automatic limit when this process of an HA pair starts
// leading: its first run reads every target whole (it has applied
// nothing), which the standby's resting heap is no measure of — at 100k
// users the ldap target's read alone leaves gigabytes of decoder garbage,
// and under the standby's limit the collector ran for 7 s of the 13 it
// took. The resting heap is measured again once that run is over.
func (m *memoryLimit) lead() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.auto {
		return
	}
	m.ran, m.highSince = false, time.Time{}
	m.limit = math.MaxInt64
	debug.SetMemoryLimit(m.limit)
}
