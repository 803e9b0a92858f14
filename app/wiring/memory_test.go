package wiring

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/internal/heaplimit"
	"github.com/collabsync/collabsync/internal/store"
)

// TestOneShotMemoryFirstRun: under the auto setting a command's first run
// on a state has a limit too (from nothing, rising with its live heap),
// and records its peak for the next; off leaves none.
func TestOneShotMemoryFirstRun(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	ctx := context.Background()
	for _, tc := range []struct {
		setting   string
		wantLimit bool
	}{{config.MemoryLimitAuto, true}, {config.MemoryLimitOff, false}} {
		t.Run(tc.setting, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			st, err := store.Open(ctx, filepath.Join(t.TempDir(), "collabsync.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg := &config.Config{}
			cfg.Serve.MemoryLimit = tc.setting
			end := OneShotMemory(ctx, cfg, st, slog.New(slog.DiscardHandler), "plan")
			limit := debug.SetMemoryLimit(-1)
			runtime.GC() // a live heap to record
			end(ctx)
			if got := limit < math.MaxInt64; got != tc.wantLimit {
				t.Errorf("first run's limit %d: set %v, want %v", limit, got, tc.wantLimit)
			}
			if tc.wantLimit && limit < heaplimit.Floor {
				t.Errorf("first run's limit %d, want at least %d", limit, heaplimit.Floor)
			}
			if peak, err := st.PeakLive(ctx, "plan"); err != nil || peak == 0 {
				t.Errorf("recorded peak %d, %v", peak, err)
			}
		})
	}
}
