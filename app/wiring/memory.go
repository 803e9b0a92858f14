package wiring

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/internal/heaplimit"
	"github.com/collabsync/collabsync/internal/store"
)

// OneShotMemory gives a one-shot command the heap limit serve.memory_limit
// asks for: auto, a quarter more than the peak live heap of the command's
// last run on this state, raised as this run holds more
// (heaplimit.StartFrom); off, none; a size, that size. GOMEMLIMIT, when
// set, is Go's and wins. A command's first run on a state starts from
// nothing, its limit rising with its live heap: without a limit, a first
// sync at 1M users peaked at 1.97 GB (16.7 s); from nothing, 0.97 GB
// (19.9 s). The returned function records this run's peak for the next
// one; a failure to read or record it costs only the limit, and is
// logged.
func OneShotMemory(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger, command string) (end func(context.Context)) {
	var w *heaplimit.Watch
	switch setting := cfg.Serve.MemoryLimit; {
	case os.Getenv("GOMEMLIMIT") != "", setting == config.MemoryLimitOff:
	case setting == config.MemoryLimitAuto:
		peak, err := st.PeakLive(ctx, command)
		if err != nil {
			log.Warn("no memory limit for this run", "err", err)
			break
		}
		w = heaplimit.StartFrom(peak)
		if peak == 0 {
			log.Debug("memory limit for a first run, raised with its live heap", "command", command, "limit_MiB", heaplimit.For(0)>>20)
			break
		}
		log.Debug("memory limit from the last run's peak", "command", command, "peak_MiB", peak>>20, "limit_MiB", heaplimit.For(peak)>>20)
	default:
		limit, _ := config.ParseSize(setting) // validated
		w = heaplimit.Start(limit)
	}
	if w == nil {
		w = heaplimit.Start(0)
	}
	return func(ctx context.Context) {
		peak := w.Stop()
		if err := st.SavePeakLive(ctx, command, peak, time.Now()); err != nil {
			log.Warn("the next run will have no memory limit", "err", err)
		}
	}
}
