// Package heaplimit sizes the Go heap's soft limit of a one-shot command
// from what the same command needed last time.
//
// Go collects when the heap has grown by GOGC (100 %) over what the last
// collection found live, so a command whose live data peaks at 100 MiB
// may reach 200 MiB or more before it ends. A command run again on the
// same state directory usually needs what it needed the last time (the
// directory does not change size between runs), so a limit of a quarter
// more than last time's peak live heap, and at least Headroom more, holds
// its memory close to what it uses. The limit is soft: a run that needs
// more grows past it, with the collector working harder (Go caps that at
// half the CPU), and its peak is remembered for the next one.
//
// With such a limit (StartFrom), the collector runs by the limit alone:
// collecting at each doubling of a growing heap only marks it again
// before the limit would, most of it while the directory is read on two
// busy cores.
package heaplimit

import (
	"os"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"sync"
	"time"
)

// Floor is the least limit For returns.
const Floor = 64 << 20

// Headroom is the least room For leaves above the peak. Near the limit
// Go collects each time the heap has grown by what is left below it, and
// each collection marks the whole live heap: at 100k users a quarter of
// the recorded peak (58 MiB; with more room the same run records 70-80,
// the collector thrashing below its data) made `plan` collect ten times
// after its read, six of them while the nss target's 46 MB of records
// were made. With 32 MiB: CPU 1.15-1.19 s instead of 1.20-1.37, wall
// 1.05-1.09 s instead of 1.06-1.15, peak RSS 128-131 MB instead of
// 118-127. From a peak of 128 MiB on, a quarter is more.
const Headroom = 32 << 20

// For is the limit for a run whose previous peak live heap was peak.
func For(peak uint64) int64 { return max(int64(peak+max(peak/4, Headroom)), Floor) }

// Watch follows the live heap (as each collection finds it) until Stop.
type Watch struct {
	every time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	peak uint64
	// basis is the live heap the limit was made for, by For (0: a limit
	// given, kept as it is).
	basis uint64
	// gcOff: StartFrom turned GOGC off; gcPercent is what it was.
	gcOff     bool
	gcPercent int
}

// Start sets the soft limit (when limit > 0) and begins watching.
func Start(limit int64) *Watch {
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return start(0)
}

// StartFrom sets the limit for a run whose last peak live heap was peak
// (For) and begins watching; as this run's live heap grows past peak the
// limit is raised with it, For's room above the most the run has held.
// A run that needs more than the last one did (a sync after a dry run
// that read no history, a directory grown) would otherwise collect
// without end below its own data, at half the CPU: at 1M users a sync
// after a plan took 9.8 s and 12.2 s of CPU instead of 8.4 s and 8.9.
//
// Unless GOGC is set, the collector then runs by the limit alone until
// Stop: at 1M users plan collected 13 times as its heap grew, 0.85 s of
// CPU, 0.6 s of it during the directory's read; by the limit alone plan
// took 7.27-7.50 s instead of 7.45-8.04 (CPU 7.3-7.7 s instead of
// 7.7-9.0) at the same peak RSS. At 100k, within the noise.
func StartFrom(peak uint64) *Watch {
	debug.SetMemoryLimit(For(peak))
	w := start(max(peak, 1))
	if os.Getenv("GOGC") == "" {
		w.gcOff, w.gcPercent = true, debug.SetGCPercent(-1)
	}
	return w
}

func start(basis uint64) *Watch {
	w := &Watch{every: 50 * time.Millisecond, stop: make(chan struct{}), done: make(chan struct{}), basis: basis}
	go w.run()
	return w
}

func (w *Watch) run() {
	defer close(w.done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		w.sample()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *Watch) sample() {
	s := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(s)
	if s[0].Value.Kind() != runtimemetrics.KindUint64 {
		return
	}
	live := s[0].Value.Uint64()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.peak = max(w.peak, live)
	if w.basis > 0 && live > w.basis {
		w.basis = live
		debug.SetMemoryLimit(For(live))
	}
}

// Stop ends the watch (GOGC as it was) and returns the largest live heap
// seen. When no collection has measured one (a run that stayed under its
// limit with the collector off), it returns the heap's objects, garbage
// included: the most the run can have held. Zero would leave the next
// run without a peak to start from.
func (w *Watch) Stop() uint64 {
	close(w.stop)
	<-w.done
	if w.gcOff {
		debug.SetGCPercent(w.gcPercent)
	}
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.peak == 0 {
		s := []runtimemetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		if runtimemetrics.Read(s); s[0].Value.Kind() == runtimemetrics.KindUint64 {
			w.peak = s[0].Value.Uint64()
		}
	}
	return w.peak
}
