package heaplimit

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	for _, tt := range []struct {
		peak uint64
		want int64
	}{{0, Floor}, {20 << 20, Floor}, {40 << 20, 72 << 20}, {58 << 20, 90 << 20}, {128 << 20, 160 << 20}, {400 << 20, 500 << 20}, {1 << 30, 1<<30 + 1<<28}} {
		if got := For(tt.peak); got != tt.want {
			t.Errorf("For(%d) = %d, want %d", tt.peak, got, tt.want)
		}
	}
}

// TestWatchSeesThePeak: data kept live across a collection counts, and
// the limit given is set.
func TestWatchSeesThePeak(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	w := Start(200 << 20)
	if got := debug.SetMemoryLimit(-1); got != 200<<20 {
		t.Errorf("limit %d", got)
	}
	hold(w, 64)
	runtime.GC()
	if peak := w.Stop(); peak < 64<<20 {
		t.Errorf("peak %d MiB, want at least the 64 MiB held", peak>>20)
	}
	// Start(0) leaves the limit alone.
	debug.SetMemoryLimit(math.MaxInt64)
	Start(0).Stop()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("Start(0) set the limit to %d", got)
	}
}

// TestStartFromFollowsTheRun: a run that holds more than its last peak
// has its limit raised with what it holds; a limit given stays.
func TestStartFromFollowsTheRun(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	gogc := func() int {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	before := gogc()
	w := StartFrom(8 << 20)
	if got := debug.SetMemoryLimit(-1); got != Floor {
		t.Errorf("limit %d MiB before the run holds more, want For's floor", got>>20)
	}
	if got := gogc(); os.Getenv("GOGC") == "" && got != -1 {
		t.Errorf("GOGC %d under a limit made for the run, want off (-1)", got)
	}
	hold(w, 96)
	peak := w.Stop()
	if got := gogc(); got != before {
		t.Errorf("GOGC %d after Stop, want %d as before", got, before)
	}
	if got := debug.SetMemoryLimit(-1); got < For(96<<20) || got != For(peak) {
		t.Errorf("limit %d MiB with %d MiB held at the peak, want For of it (%d MiB)", got>>20, peak>>20, For(peak)>>20)
	}

	w = Start(64 << 20)
	hold(w, 96)
	w.Stop()
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("a limit given became %d MiB", got>>20)
	}
}

// hold keeps mib MiB live across a collection for three of w's samples.
func hold(w *Watch, mib int) {
	held := make([][]byte, mib)
	for i := range held {
		held[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	time.Sleep(3 * w.every)
	runtime.KeepAlive(held)
}
