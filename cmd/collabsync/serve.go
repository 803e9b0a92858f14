package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/ingest"
	"github.com/collabsync/collabsync/internal/config"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/statelock"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
)

// stopGrace is how long a run in progress may finish after SIGTERM; the
// rest of the 10 s systemd allows goes to closing up.
const stopGrace = 7 * time.Second

// server is the daemon: one per process, surviving configuration reloads.
type server struct {
	log     *slog.Logger
	metrics *metrics
	status  *status
	store   *store.Store
	// lastBeat is when the loop last showed it is alive.
	beatMu   sync.Mutex
	lastBeat time.Time
	// state is the last effective directory state, for attributing jobs.
	state atomic.Pointer[directory.State]
	// newestEnd remembers each source's newest job end, for the lag gauge.
	newestEnd sync.Map
}

func cmdServe(ctx context.Context, a *app, args []string) int {
	if !parseFlags(a.newFlagSet("serve", ""), args) {
		return exitUsage
	}
	cfg, st, code := a.openState(ctx)
	if st == nil {
		return code
	}
	defer st.Close()
	s := &server{log: a.log, metrics: newMetrics(version), status: newStatus(), store: st, lastBeat: time.Now()}
	ln, err := net.Listen("tcp", cfg.Serve.Listen)
	if err != nil {
		a.errorf(fmt.Errorf("serve.listen: %w", err))
		return exitFailure
	}
	httpSrv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	go httpSrv.Serve(ln)
	s.log.Info("collabsync serving", "version", version, "listen", ln.Addr().String(), "config", a.configPath)
	go s.watchdog(ctx)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		stop, cancelStop := context.WithCancel(ctx)
		run, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.service(stop, run, cfg)
		}()
		finish := func() {
			cancelStop()
			select {
			case <-done:
			case <-time.After(stopGrace):
				s.log.Warn("abandoning the reconcile in progress")
				cancelRun()
				<-done
			}
			cancelRun()
		}
	wait:
		for {
			select {
			case <-hup:
				next, err := config.Load(a.configPath)
				if err != nil {
					s.metrics.reloads.WithLabelValues("failure").Inc()
					s.log.Error("configuration reload refused; the running configuration stays", "err", err)
					notify("STATUS=configuration reload refused; running the previous configuration")
					continue
				}
				if next.Serve.Listen != cfg.Serve.Listen || next.StateDir != cfg.StateDir {
					s.log.Warn("serve.listen and state_dir changes take effect at the next restart")
				}
				s.metrics.reloads.WithLabelValues("success").Inc()
				s.log.Info("configuration reloaded")
				notify("RELOADING=1")
				finish()
				cfg = next
				notify("READY=1")
				break wait
			case <-ctx.Done():
				notify("STOPPING=1")
				s.log.Info("stopping")
				finish()
				shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				httpSrv.Shutdown(shutdown)
				cancel()
				return exitOK
			}
		}
	}
}

// service runs one configuration: change stream, schedule and loop.
func (s *server) service(stop, run context.Context, cfg *config.Config) {
	triggers := make(chan engine.Trigger, 16)
	send := func(t engine.Trigger) {
		select {
		case triggers <- t:
		default: // a reconcile is already asked for
		}
	}
	s.status.configure(cfg)
	go s.watch(stop, cfg, send)
	sched := cron.New()
	if _, err := sched.AddFunc(cfg.Serve.FullReconcile, func() { send(engine.Trigger{Reason: "schedule", Full: true}) }); err != nil {
		s.log.Error("full_reconcile schedule", "err", err) // validated at load: not expected
	}
	for _, src := range cfg.Accounting.Sources {
		job := cron.NewChain(cron.SkipIfStillRunning(cron.DiscardLogger)).Then(cron.FuncJob(func() { s.ingest(stop, cfg, src) }))
		if _, err := sched.AddJob(src.Schedule, job); err != nil {
			s.log.Error("accounting schedule", "source", src.Name, "err", err)
		}
	}
	sched.Start()
	defer func() { <-sched.Stop().Done() }() // an ingest in progress commits its batch first
	loop := &engine.Loop{
		Engine:   newEngine(cfg, s.log, s.store),
		Queue:    &retryQueue{store: s.store, min: time.Duration(cfg.Serve.RetryMin), max: time.Duration(cfg.Serve.RetryMax)},
		Debounce: time.Duration(cfg.Serve.Debounce),
		SourceBackoff: func(n int) time.Duration {
			return backoff(n, time.Duration(cfg.Serve.RetryMin), time.Duration(cfg.Serve.RetryMax))
		},
		After:     s.afterRun,
		Heartbeat: s.beat,
		Lock:      func(ctx context.Context) (func(), error) { return s.lock(ctx, cfg, "serve (reconcile)") },
		Approvals: s.store.Approvals,
		HeldRetry: time.Duration(cfg.Serve.RetryMax),
		Log:       s.log,
	}
	loop.Run(stop, run, triggers)
}

// watch notices directory changes: syncrepl, or polling when the server
// has none (or the configuration says so). While polling in auto mode, it
// tries syncrepl again at every poll: a server that offers it again is
// followed live again.
func (s *server) watch(ctx context.Context, cfg *config.Config, send func(engine.Trigger)) {
	interval := time.Duration(cfg.Serve.PollInterval)
	changed := func() { send(engine.Trigger{Reason: "directory change"}) }
	fellBack := false
	for {
		if cfg.Serve.Changes != config.ChangesPoll {
			s.metrics.setMode("syncrepl")
			s.status.setMode("syncrepl")
			w := ldapx.NewWatcher(cfg.LDAP, s.log, s.store, watchEvents{s})
			w.CatchUp = fellBack // changes since the last poll
			err := w.Run(ctx, changed)
			if err == nil {
				return
			}
			if !fellBack {
				s.log.Error("no change stream: the directory offers no syncrepl (is the syncprov overlay loaded and readable?); "+
					"falling back to polling, and trying syncrepl again at every poll", "err", err, "poll_interval", interval)
			}
			fellBack = true
		}
		s.metrics.setMode("poll")
		s.status.setMode("poll")
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
			send(engine.Trigger{Reason: "poll"})
		}
	}
}

// afterRun records history, metrics and status, and tells systemd.
func (s *server) afterRun(ctx context.Context, r engine.RunReport) {
	if r.State != nil {
		s.state.Store(r.State)
		if err := recordHistory(ctx, s.store, r.State, r.Results, r.Err, false); err != nil {
			s.log.Error("state store", "err", err)
		}
	}
	s.metrics.observeRun(r)
	queue, err := s.store.Queue(ctx)
	if err != nil {
		s.log.Error("read retry queue", "err", err)
	}
	s.metrics.queueChanges.Reset()
	for _, q := range queue {
		s.metrics.queueChanges.WithLabelValues(q.Target).Set(float64(q.Changes))
	}
	s.metrics.queue.set(queue)
	if s.status.record(r, queue) {
		// Start-up is over: the directory is read and every target is
		// reconciled or holds a plan for an operator to approve (/readyz
		// says which). Waiting for the approval here would have systemd
		// kill and restart the daemon at TimeoutStartSec.
		notify("READY=1")
		s.log.Info("started: directory read and every target reconciled or holding a plan for approval")
	}
	notify("STATUS=" + s.status.line())
}

// serveLockWait bounds how long one of serve's runs waits for another
// process's run on the same state directory (well inside the watchdog).
const serveLockWait = 30 * time.Second

// lock takes the state directory's lock for one of serve's runs.
func (s *server) lock(ctx context.Context, cfg *config.Config, who string) (func(), error) {
	l, err := statelock.Acquire(ctx, cfg.StateDir, "collabsync "+who, serveLockWait, func(holder string) {
		s.log.Info("waiting for the state directory", "holder", holder)
	})
	if err != nil {
		return nil, err
	}
	return func() { l.Release() }, nil
}

// ingest runs one scheduled ingest of a source, attributing jobs with the
// directory state of the last reconcile (before the first, the one the
// last sync saved).
func (s *server) ingest(ctx context.Context, cfg *config.Config, src config.AccountingSource) {
	release, err := s.lock(ctx, cfg, "serve (ingest "+src.Name+")")
	if err != nil {
		s.metrics.ingestRuns.WithLabelValues(src.Name, "failure").Inc()
		s.log.Error("accounting ingest postponed to its next schedule", "source", src.Name, "err", err)
		return
	}
	defer release()
	var attr *accounting.Attributor
	if state := s.state.Load(); state != nil {
		attr = accounting.NewAttributor(state)
	} else if saved, err := s.store.LoadAttribution(ctx); err == nil && saved != nil {
		attr = accounting.NewAttributorFrom(saved.Collaborations, saved.AdminOf)
	} else {
		s.metrics.ingestRuns.WithLabelValues(src.Name, "skipped").Inc()
		s.log.Warn("accounting ingest skipped: the directory has not been read yet", "source", src.Name, "err", err)
		return
	}
	isrc, err := ingestSource(src)
	var stats ingest.Stats
	if err == nil {
		var paths []string
		if paths, err = sourcePaths(src); err == nil {
			in := &ingest.Ingester{DB: s.store.DB, Attribute: attr.Attribute, Log: s.log}
			stats, err = in.Ingest(ctx, isrc, paths)
		}
	}
	s.metrics.ingestJobs.WithLabelValues(src.Name, "new").Add(float64(stats.Inserted))
	s.metrics.ingestJobs.WithLabelValues(src.Name, "duplicate").Add(float64(stats.Duplicates))
	s.metrics.ingestBadLines.WithLabelValues(src.Name).Add(float64(stats.BadLines))
	s.metrics.ingestFailedFiles.WithLabelValues(src.Name).Add(float64(stats.FailedFiles))
	s.metrics.ingestUnreadable.WithLabelValues(src.Name).Set(float64(stats.FailedFiles + stats.DamagedFiles))
	for k, cs := range stats.CoreSeconds {
		s.metrics.ingestCoreSeconds.WithLabelValues(k.Cluster, k.Collaboration).Add(float64(cs))
	}
	if !stats.NewestEnd.IsZero() {
		if prev, ok := s.newestEnd.Load(src.Name); !ok || stats.NewestEnd.After(prev.(time.Time)) {
			s.newestEnd.Store(src.Name, stats.NewestEnd)
		}
	}
	if newest, ok := s.newestEnd.Load(src.Name); ok {
		s.metrics.ingestLag.WithLabelValues(src.Name).Set(time.Since(newest.(time.Time)).Seconds())
	}
	if err != nil {
		s.metrics.ingestRuns.WithLabelValues(src.Name, "failure").Inc()
		s.log.Error("accounting ingest failed", "source", src.Name, "err", err)
		return
	}
	s.metrics.ingestRuns.WithLabelValues(src.Name, "success").Inc()
	s.metrics.ingestLast.WithLabelValues(src.Name).Set(float64(time.Now().Unix()))
	s.log.Info("accounting ingested", "source", src.Name, "files", stats.Files, "lines", stats.Lines, "new_jobs", stats.Inserted,
		"duplicates", stats.Duplicates, "bad_lines", stats.BadLines)
}

func (s *server) beat() {
	s.beatMu.Lock()
	s.lastBeat = time.Now()
	s.beatMu.Unlock()
}

// watchdog pings systemd while the loop keeps beating.
func (s *server) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.beatMu.Lock()
			alive := time.Since(s.lastBeat) < interval
			s.beatMu.Unlock()
			if alive {
				notify("WATCHDOG=1")
			}
		}
	}
}

func notify(state string) { daemon.SdNotify(false, state) }

// backoff doubles from lo with each attempt, up to hi.
func backoff(attempts int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempts && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// retryQueue adapts the store's outbox to engine.Queue.
type retryQueue struct {
	store    *store.Store
	min, max time.Duration
}

func (q *retryQueue) Waiting(ctx context.Context) (map[string]time.Time, error) {
	queued, err := q.store.Queue(ctx)
	out := make(map[string]time.Time, len(queued))
	for _, e := range queued {
		out[e.Target] = e.NextAttempt
	}
	return out, err
}

func (q *retryQueue) Fail(ctx context.Context, target string, changes int, cause error) error {
	_, err := q.store.Enqueue(ctx, target, changes, cause, func(n int) time.Duration { return backoff(n, q.min, q.max) }, time.Now())
	return err
}

func (q *retryQueue) Succeed(ctx context.Context, target string) error {
	return q.store.Dequeue(ctx, target)
}

// watchEvents feeds the watcher's events to metrics and status.
type watchEvents struct{ s *server }

func (w watchEvents) Connected(up bool) {
	w.s.metrics.Connected(up)
	w.s.status.setConnected(up)
}

func (w watchEvents) SyncEvent(stream, kind string) { w.s.metrics.SyncEvent(stream, kind) }

func (w watchEvents) Live(stream string, resumed bool) {
	w.s.status.setLive(stream, resumed)
	w.s.log.Info("change stream live", "stream", stream, "resumed_from_cookie", resumed)
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready, why := s.status.ready(); !ready {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.status.snapshot())
	})
	return mux
}

// status is what /status and /readyz report.
type status struct {
	mu      sync.Mutex
	started time.Time
	targets []string
	data    statusJSON
	// startedUp: every target has been reconciled or holds a plan since
	// the daemon started (systemd's READY=1 was sent).
	startedUp bool
}

type statusJSON struct {
	Started      time.Time                `json:"started"`
	Ready        bool                     `json:"ready"`
	Directory    directoryStatus          `json:"directory"`
	Targets      map[string]*targetStatus `json:"targets"`
	ChangeStream changeStreamStatus       `json:"change_stream"`
	Queue        []store.Queued           `json:"retry_queue"`
}

type directoryStatus struct {
	LastRead   time.Time `json:"last_read,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	LastReason string    `json:"last_reason,omitempty"`
	Users      int       `json:"users"`
	Violations int       `json:"violations"`
}

type targetStatus struct {
	LastRun     time.Time `json:"last_run,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Result      string    `json:"result"` // success, failure, or held (by its guard, for approval)
	Added       int       `json:"added"`
	Modified    int       `json:"modified"`
	Deleted     int       `json:"deleted"`
	Error       string    `json:"error,omitempty"`
	// Held is the plan the guard holds, with the command that approves it.
	Held *heldStatus `json:"held,omitempty"`
}

type heldStatus struct {
	Digest  string    `json:"digest"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since"`
	Approve string    `json:"approve"`
}

type changeStreamStatus struct {
	Mode      string          `json:"mode"`
	Connected bool            `json:"connected"`
	Live      map[string]bool `json:"live"` // stream → resumed from a stored cookie
}

func newStatus() *status {
	now := time.Now()
	return &status{started: now, data: statusJSON{Started: now, Targets: map[string]*targetStatus{},
		ChangeStream: changeStreamStatus{Live: map[string]bool{}}}}
}

func (s *status) configure(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets = targetNames(cfg)
}

func (s *status) setMode(mode string) {
	s.mu.Lock()
	s.data.ChangeStream.Mode = mode
	s.mu.Unlock()
}

func (s *status) setConnected(up bool) {
	s.mu.Lock()
	s.data.ChangeStream.Connected = up
	if !up {
		s.data.ChangeStream.Live = map[string]bool{}
	}
	s.mu.Unlock()
}

func (s *status) setLive(stream string, resumed bool) {
	s.mu.Lock()
	s.data.ChangeStream.Live[stream] = resumed
	s.mu.Unlock()
}

// record takes one run in; it reports whether the daemon just became ready.
func (s *status) record(r engine.RunReport, queue []store.Queued) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &s.data
	d.Queue = queue
	d.Directory.LastReason = r.Reason
	if r.State == nil {
		d.Directory.LastError = r.Err.Error()
		return false
	}
	d.Directory.LastRead, d.Directory.LastError = r.Started, ""
	d.Directory.Users, d.Directory.Violations = len(r.State.Users), len(r.State.Violations)
	for _, res := range r.Results {
		t := d.Targets[res.Target]
		if t == nil {
			t = &targetStatus{}
			d.Targets[res.Target] = t
		}
		t.LastRun, t.Error = r.Started, ""
		t.Added, t.Modified, t.Deleted = 0, 0, 0
		switch {
		case res.Plan != nil && res.Plan.Refused != "":
			p := res.Plan
			if t.Held == nil || t.Held.Digest != p.Digest {
				t.Held = &heldStatus{Digest: p.Digest, Reason: p.Refused, Since: r.Started,
					Approve: "collabsync approve " + res.Target + " " + p.Digest}
			}
			t.Result, t.Error = "held", res.Err.Error()
		case res.Err != nil:
			t.Result, t.Error = "failure", res.Err.Error()
		default:
			t.Result, t.LastSuccess, t.Held = "success", r.Started, nil
			if res.Applied {
				t.Added, t.Modified, t.Deleted = res.Plan.Counts()
			}
		}
	}
	d.Ready, _ = s.readyLocked()
	if !s.startedUp && s.startedUpLocked() {
		s.startedUp = true
		return true
	}
	return false
}

// startedUpLocked: the directory was read and every target has been
// reconciled, or holds a plan for approval, since the daemon started.
func (s *status) startedUpLocked() bool {
	if s.data.Directory.LastRead.IsZero() {
		return false
	}
	for _, t := range s.targets {
		ts := s.data.Targets[t]
		if ts == nil || (ts.LastSuccess.Before(s.started) && ts.Held == nil) {
			return false
		}
	}
	return true
}

func (s *status) ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyLocked()
}

func (s *status) readyLocked() (bool, string) {
	if s.data.Directory.LastRead.IsZero() {
		return false, "the directory has not been read yet"
	}
	var missing, held []string
	for _, t := range s.targets {
		ts := s.data.Targets[t]
		switch {
		case ts != nil && ts.Held != nil:
			held = append(held, fmt.Sprintf("%s holds a plan its guard refused (%s); approve it with: %s", t, ts.Held.Reason, ts.Held.Approve))
		case ts == nil || ts.LastSuccess.Before(s.started):
			missing = append(missing, t)
		}
	}
	var why []string
	if len(missing) > 0 {
		sort.Strings(missing)
		why = append(why, "not reconciled since start: "+strings.Join(missing, ", "))
	}
	if len(held) > 0 {
		sort.Strings(held)
		why = append(why, held...)
	}
	return len(why) == 0, strings.Join(why, "; ")
}

func (s *status) snapshot() statusJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.data
	out.Targets = make(map[string]*targetStatus, len(s.data.Targets))
	for k, v := range s.data.Targets {
		c := *v
		if v.Held != nil {
			h := *v.Held
			c.Held = &h
		}
		out.Targets[k] = &c
	}
	out.ChangeStream.Live = make(map[string]bool, len(s.data.ChangeStream.Live))
	for k, v := range s.data.ChangeStream.Live {
		out.ChangeStream.Live[k] = v
	}
	return out
}

// line is the one-line STATUS= for systemctl status.
func (s *status) line() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.data
	if d.Directory.LastError != "" {
		return "reconcile failed, downstream unchanged: " + firstLine(d.Directory.LastError)
	}
	var parts []string
	for _, t := range s.targets {
		switch ts := d.Targets[t]; {
		case ts == nil:
		case ts.Held != nil:
			parts = append(parts, fmt.Sprintf("%s HELD (%s; %s)", t, ts.Held.Reason, ts.Held.Approve))
		default:
			parts = append(parts, fmt.Sprintf("%s %s (+%d ~%d -%d)", t, ts.Result, ts.Added, ts.Modified, ts.Deleted))
		}
	}
	return fmt.Sprintf("last reconcile %s (%s): %s; changes via %s", d.Directory.LastRead.Format(time.TimeOnly), d.Directory.LastReason,
		strings.Join(parts, ", "), d.ChangeStream.Mode)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
