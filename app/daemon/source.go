package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
)

// errNotLive: the change stream is reconnecting; its refresh will trigger
// the next run.
var errNotLive = errors.New("the live directory model is catching up (change stream reconnecting)")

// directorySource is the engine's source under serve: the live model while
// syncrepl keeps it, a full read while polling. The scheduled full
// reconcile reads the directory whole and checks the model against it.
type directorySource struct {
	model   *ldapx.Model
	full    *ldapx.Source
	log     *slog.Logger
	metrics *metrics
	status  *status
	polling atomic.Bool

	mu sync.Mutex
	// counted is the model's full refreshes already counted as reads;
	// used, those already served as a full reconcile's read.
	counted, used uint64
}

var (
	_ engine.Source     = (*directorySource)(nil)
	_ engine.FullReader = (*directorySource)(nil)
)

func newDirectorySource(cfg *config.Config, log *slog.Logger, m *metrics, st *status, changed func()) *directorySource {
	return &directorySource{model: ldapx.NewModel(cfg.LDAP, changed), full: ldapx.NewSource(cfg.LDAP, log), log: log, metrics: m, status: st}
}

// Snapshot implements engine.Source: the live model, or a full read while
// polling.
func (d *directorySource) Snapshot(ctx context.Context) (*directory.Snapshot, error) {
	if snap, ok := d.live(); ok {
		return snap, nil
	}
	if d.polling.Load() {
		d.metrics.fullReads.WithLabelValues("poll").Inc()
		snap, err := d.full.Snapshot(ctx)
		d.connected(err) // polling, a read that succeeds is the connection
		return snap, err
	}
	return nil, errNotLive
}

// connected tells metrics and status whether the directory answered a
// read (err is nil) or why not.
func (d *directorySource) connected(err error) {
	d.metrics.Connected(err == nil)
	if err != nil {
		d.status.setConnectError(err)
		return
	}
	d.status.setConnected(true)
}

// FullSnapshot implements engine.FullReader. A model just built by a
// refresh without a cookie is itself a full read; otherwise the directory
// is read whole, and every entry on which the model differs is logged,
// counted, and makes the model start over with a full refresh.
func (d *directorySource) FullSnapshot(ctx context.Context) (*directory.Snapshot, error) {
	d.observe()
	d.mu.Lock()
	fresh := d.used != d.counted
	d.used = d.counted
	d.mu.Unlock()
	if fresh {
		if snap, ok := d.model.Snapshot(); ok {
			return snap, nil
		}
	}
	reason := "schedule"
	if d.polling.Load() {
		reason = "poll"
	}
	d.metrics.fullReads.WithLabelValues(reason).Inc()
	entries, diffs, err := d.model.Compare(func() (ldapx.Entries, error) { return d.full.Entries(ctx) })
	if d.polling.Load() {
		d.connected(err)
	}
	if err != nil {
		return nil, err
	}
	d.status.fullRead(time.Now(), len(diffs))
	if len(diffs) > 0 {
		for i, df := range diffs {
			d.metrics.modelDiffs.WithLabelValues(string(df.Stream)).Inc()
			if i < 10 {
				d.log.Error("live directory model differs from a full read", "stream", df.Stream, "dn", df.DN, "live", df.Live, "read", df.Read)
			}
		}
		d.log.Error("the live directory model differed from the directory; rebuilding it with a full refresh (please report this)",
			"entries", len(diffs))
		d.model.RequireRefresh()
	}
	return ldapx.Resolve(entries), nil
}

// live returns the model's snapshot when it is live.
func (d *directorySource) live() (*directory.Snapshot, bool) {
	d.observe()
	return d.model.Snapshot()
}

// observe counts the full refreshes that built the model and reports its
// size.
func (d *directorySource) observe() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.model.FullRefreshes(); n != d.counted {
		d.metrics.fullReads.WithLabelValues("refresh").Add(float64(n - d.counted))
		d.counted = n
	}
	sizes := map[string]int{}
	for s, n := range d.model.Size() {
		d.metrics.modelEntries.WithLabelValues(string(s)).Set(float64(n))
		sizes[string(s)] = n
	}
	d.status.setModelSize(sizes)
}
