// Package daemon is collabsync's long-running service: it keeps a live
// model of the directory with syncrepl (or polls a server without it),
// reconciles every target on each change, runs the full reconcile and the
// accounting ingests on their schedules, retries failed targets across
// restarts, serves metrics, health and status over HTTP, feeds systemd's
// watchdog and reloads its configuration on SIGHUP.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/robfig/cron/v3"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/maintenance"
	"github.com/collabsync/collabsync/internal/statelock"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/ldapx/lease"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/userdb"
)

// stopGrace is how long a run in progress may finish after SIGTERM; the
// rest of the 10 s systemd allows goes to closing up.
const stopGrace = 7 * time.Second

// Options start a daemon.
type Options struct {
	// ConfigPath is read again on SIGHUP by LoadConfig; Config is its
	// first reading.
	ConfigPath string
	LoadConfig func(path string) (*config.Config, error)
	Config     *config.Config
	Store      *store.Store
	Log        *slog.Logger
	Version    string
}

// server is the daemon: one per process, surviving configuration reloads.
type server struct {
	log     *slog.Logger
	metrics *metrics
	status  *status
	store   *store.Store
	// lastBeat is when the loop last showed it is alive.
	beatMu   sync.Mutex
	lastBeat time.Time
	// attr attributes jobs as the last reconcile's state says (the state
	// itself, 100k users, is not kept).
	attr atomic.Pointer[accounting.Attributor]
	// newestEnd remembers each source's newest job end, for the lag gauge.
	newestEnd sync.Map
	// schedules are the targets' maintenance windows, for status.
	schedules atomic.Pointer[map[string]*maintenance.Schedule]
	// userdb, when configured, serves each run's state to nss-systemd.
	userdb atomic.Pointer[userdb.Provider]
	mem    *memoryLimit
	// live: the live model has been announced (refreshed) once.
	live atomic.Bool
	// lease, when serve is one of an HA pair, is its lease (for the
	// process: a reload keeps it); only its holder applies and ingests.
	// roles says the lease was taken or lost.
	lease atomic.Pointer[lease.Lease]
	roles chan struct{}
}

// Run serves until ctx ends (SIGTERM), reloading the configuration on
// SIGHUP. It returns an error only when it cannot start.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	// One daemon per state directory: two would write one saved model
	// and apply the same targets twice.
	held, err := statelock.AcquireFile(ctx, filepath.Join(cfg.StateDir, "serve.lock"), "collabsync serve", 0)
	if busy := (*statelock.BusyError)(nil); errors.As(err, &busy) {
		holder := strings.TrimSpace(busy.Holder)
		if holder == "" {
			holder = "holder unknown"
		}
		return fmt.Errorf("another collabsync serve runs on the state directory %s (%s); run one daemon per state directory", cfg.StateDir, holder)
	}
	if err != nil {
		return err
	}
	defer held.Release()
	s := &server{log: o.Log, metrics: newMetrics(o.Version), status: newStatus(), store: o.Store, lastBeat: time.Now(),
		mem: &memoryLimit{log: o.Log, kept: o.Store}}
	s.metrics.ready.Store(s.status)
	s.status.userdb = func() *userdb.Health {
		if p := s.userdb.Load(); p != nil {
			h := p.Health()
			return &h
		}
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Serve.Listen)
	if err != nil {
		return fmt.Errorf("serve.listen: %w", err)
	}
	httpSrv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	go httpSrv.Serve(ln)
	s.log.Info("collabsync serving", "version", o.Version, "listen", ln.Addr().String(), "config", o.ConfigPath)
	go s.watchdog(ctx)
	if cfg.HA != nil {
		// Released when the last run is over: a run finishing at stop
		// still holds it.
		leaseCtx, endLease := context.WithCancel(context.WithoutCancel(ctx))
		campaigned := s.campaign(leaseCtx, cfg.HA)
		defer func() { endLease(); <-campaigned }()
	}

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
				next, err := o.LoadConfig(o.ConfigPath)
				if err != nil {
					s.metrics.reloads.WithLabelValues("failure").Inc()
					s.log.Error("configuration reload refused; the running configuration stays", "err", err)
					notify("STATUS=configuration reload refused; running the previous configuration")
					continue
				}
				if next.Serve.Listen != cfg.Serve.Listen || next.StateDir != cfg.StateDir {
					s.log.Warn("serve.listen and state_dir changes take effect at the next restart")
				}
				if !reflect.DeepEqual(next.HA, cfg.HA) {
					s.log.Warn("ha changes take effect at the next restart; the lease is kept as it is")
					next.HA = cfg.HA
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
				return nil
			}
		}
	}
}

// service runs one configuration: live model and change stream, schedules
// and the reconcile loop.
func (s *server) service(stop, run context.Context, cfg *config.Config) {
	triggers := make(chan engine.Trigger, 16)
	send := func(t engine.Trigger) {
		select {
		case triggers <- t:
		default: // a reconcile is already asked for
		}
	}
	s.status.configure(cfg)
	s.mem.configure(stop, cfg.Serve.MemoryLimit)
	var first sync.Once
	src := newDirectorySource(cfg, s.log, s.metrics, s.status, func() {
		first.Do(func() { s.mem.modelLive(stop); s.live.Store(true) })
		send(engine.Trigger{Reason: "directory change"})
	})
	// The rules' history, which the first run reads whole, is read
	// meanwhile: at 1M users 1.1M rows took 5 s after the model's
	// restore, which takes 9 s on its own.
	defer wiring.ReadHistoryAhead(stop, s.store, s.log)()
	if cfg.Serve.Changes != config.ChangesPoll {
		// The model saved by the last run resumes from its cookies: a
		// restart reads only what changed meanwhile.
		if n, err := src.model.Load(stop, s.store); err != nil {
			s.log.Warn("the saved live directory model cannot be used; the change stream starts with a full refresh", "err", err)
		} else if n > 0 {
			s.log.Info("live directory model restored from the state store; the change stream resumes from its cookies", "entries", n)
		}
		persisted := make(chan struct{})
		go func() {
			defer close(persisted)
			src.model.Persist(stop, func(err error) { s.log.Error("state store", "err", err) })
		}()
		defer func() { <-persisted }()
	}
	go s.watch(stop, cfg, src, send)
	sched := cron.New()
	if _, err := sched.AddFunc(cfg.Serve.FullReconcile, func() { send(engine.Trigger{Reason: "schedule", Full: true}) }); err != nil {
		s.log.Error("full_reconcile schedule", "err", err) // validated at load: not expected
	}
	for _, as := range cfg.Accounting.Sources {
		job := cron.NewChain(cron.SkipIfStillRunning(cron.DiscardLogger)).Then(cron.FuncJob(func() {
			if l := s.lease.Load(); cfg.HA != nil && l != nil {
				if _, err := l.Held(); err != nil {
					return // the leader ingests
				}
			}
			s.ingest(stop, cfg, as)
		}))
		if _, err := sched.AddJob(as.Schedule, job); err != nil {
			s.log.Error("accounting schedule", "source", as.Name, "err", err)
		}
	}
	sched.Start()
	defer func() { <-sched.Stop().Done() }() // an ingest in progress commits its batch first
	if len(cfg.Accounting.Sources) > 0 {
		s.allocationsUsed(stop, cfg)
	}
	schedules := wiring.Schedules(cfg)
	s.schedules.Store(&schedules)
	if cfg.Serve.UserDB != "" {
		p := userdb.New(cfg.Serve.UserDB)
		s.userdb.Store(p)
		s.metrics.userdb.Store(p)
		served := make(chan struct{})
		go func() {
			defer close(served)
			// A provider that ends (it cannot make its socket) starts again.
			for backoff := time.Second; ; backoff = min(2*backoff, time.Minute) {
				err := p.Serve(stop, userdb.Dir)
				if stop.Err() != nil {
					return
				}
				s.log.Error("userdb provider stopped: users and groups are not served to nss-systemd; starting it again",
					"err", err, "retry_in", backoff)
				select {
				case <-stop.Done():
					return
				case <-time.After(backoff):
				}
			}
		}()
		defer func() { <-served; s.userdb.Store(nil); s.metrics.userdb.Store(nil) }()
	}
	eng := wiring.NewEngine(cfg, s.log, s.store, src, s.metrics.targetCall)
	rules := wiring.NewRules(cfg, s.store)
	rules.Observe = s.metrics.evaluation
	eng.Evaluate = rules.Evaluate
	eng.TargetLock = wiring.TargetLock(cfg, "collabsync serve", serveLockWait)
	// An account that expires needs no change in the directory to lose
	// its access: a run is due when it does.
	expiries := &expiryTimer{send: send}
	defer expiries.stop()
	loop := &engine.Loop{
		Engine:   eng,
		Queue:    &retryQueue{store: s.store, min: time.Duration(cfg.Serve.RetryMin), max: time.Duration(cfg.Serve.RetryMax)},
		Debounce: time.Duration(cfg.Serve.Debounce),
		SourceBackoff: func(n int) time.Duration {
			return backoff(n, time.Duration(cfg.Serve.RetryMin), time.Duration(cfg.Serve.RetryMax))
		},
		After: func(ctx context.Context, r engine.RunReport) {
			s.afterRead(ctx, r)
			if r.State != nil {
				expiries.arm(r.State.NextExpiry)
			}
		},
		Done: s.afterTarget,
		Settled: func(ctx context.Context, state *directory.State) {
			if err := rules.Save(ctx, state); err != nil {
				s.log.Error("state store", "err", err)
			}
		},
		Idle:      func() { s.mem.idle(stop, time.Now()) },
		Busy:      s.mem.busy,
		Heartbeat: s.beat,
		Lock:      func(ctx context.Context) (func(), error) { return s.lock(ctx, cfg, "serve (reconcile)") },
		Approvals: s.store.Approvals,
		HeldRetry: time.Duration(cfg.Serve.RetryMax),
		// The first run waits for the live model's refresh (or for the
		// fall-back to polling).
		WaitForTrigger: true,
		Log:            s.log,
	}
	if cfg.HA == nil {
		loop.Run(stop, run, triggers)
		return
	}
	s.pair(stop, run, *loop, triggers)
}

// watch keeps the live model with syncrepl, or polls when the server has
// none (or the configuration says so). While polling in auto mode, it
// tries syncrepl again at every poll: a server that offers it again is
// followed live again.
func (s *server) watch(ctx context.Context, cfg *config.Config, src *directorySource, send func(engine.Trigger)) {
	interval := time.Duration(cfg.Serve.PollInterval)
	why := "serve.changes is poll"
	if cfg.LDAP.Schema == ldapx.SchemaAD && cfg.Serve.Changes != config.ChangesPoll {
		// Active Directory has no syncrepl: changes are read by uSNChanged.
		s.setMode(src, "usn", "Active Directory: the entries changed since the last poll are read every poll_interval")
		ldapx.NewUSNWatcher(cfg.LDAP, s.log, watchEvents{s}, interval, time.Duration(cfg.Serve.DeletionScan)).Run(ctx, src.model)
		return
	}
	for fellBack := false; ; {
		if cfg.Serve.Changes != config.ChangesPoll {
			s.setMode(src, "syncrepl", "")
			err := ldapx.NewWatcher(cfg.LDAP, s.log, watchEvents{s}).Run(ctx, src.model)
			if err == nil {
				return
			}
			why = "the directory offers no syncrepl: " + err.Error()
			if !fellBack {
				s.log.Error("no change stream: the directory offers no RFC 4533 syncrepl to this bind user "+
					"(OpenLDAP: load the syncprov overlay and let the bind user read it; 389-ds/FreeIPA: enable the "+
					"Content Synchronization and Retro Changelog plugins; Active Directory has no syncrepl); "+
					"falling back to polling (the directory read whole every poll_interval), and trying syncrepl again at every poll",
					"err", err, "poll_interval", interval)
			}
			fellBack = true
		}
		s.setMode(src, "poll", why)
		send(engine.Trigger{Reason: "poll"})
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (s *server) setMode(src *directorySource, mode, why string) {
	src.polling.Store(mode == "poll")
	s.metrics.setMode(mode)
	s.status.setMode(mode, why)
}

// afterRead records a read of the directory: the rules' history,
// attribution, the userdb provider's state, metrics and status.
func (s *server) afterRead(ctx context.Context, r engine.RunReport) {
	if r.State != nil {
		attr := s.attr.Load()
		changed := !attr.Unchanged(r.State)
		if changed {
			attr = accounting.NewAttributor(r.State)
			s.attr.Store(attr)
		}
		if p := s.userdb.Load(); p != nil {
			p.Set(r.State)
		}
		if err := wiring.RecordReadWith(ctx, s.store, r.State, attr, changed); err != nil {
			s.log.Error("state store", "err", err)
		}
		s.mem.afterRun(r.Full)
	}
	s.metrics.observeRead(r)
	if s.status.recordRead(r) {
		notify("READY=1")
		s.log.Info("started as standby: directory read; the leader applies to the targets")
	}
	notify("STATUS=" + s.status.line())
}

// afterTarget records one target's run: its held plan, metrics, status,
// and the retry queue; it tells systemd when start-up is over.
func (s *server) afterTarget(ctx context.Context, r engine.TargetReport) {
	if err := wiring.RecordResults(ctx, s.store, []engine.Result{r.Result}); err != nil {
		s.log.Error("state store", "err", err)
	}
	s.metrics.observeTarget(r)
	if sch := s.schedules.Load(); sch != nil {
		s.status.setMaintenance(time.Now(), *sch, r.Result)
	}
	queue, err := s.store.Queue(ctx)
	if err != nil {
		s.log.Error("read retry queue", "err", err)
	}
	s.metrics.queueChanges.Reset()
	for _, q := range queue {
		s.metrics.queueChanges.WithLabelValues(q.Target).Set(float64(q.Changes))
	}
	s.metrics.queue.set(queue)
	if s.status.recordTarget(r, queue) {
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

// watchEvents feeds the watcher's events to metrics and status.
type watchEvents struct{ s *server }

func (w watchEvents) Connected(up bool) {
	w.s.metrics.Connected(up)
	w.s.status.setConnected(up)
}

func (w watchEvents) SyncEvent(stream, kind string) { w.s.metrics.SyncEvent(stream, kind) }

func (w watchEvents) RefreshFailed(stream, reason string, err error) {
	w.s.metrics.refreshFailures.WithLabelValues(stream, reason).Inc()
	w.s.status.setStreamError(stream, err)
}

func (w watchEvents) ConnectFailed(err error) { w.s.status.setConnectError(err) }

func (w watchEvents) Deletions(mechanism string, worst time.Duration) {
	w.s.metrics.setDeletions(mechanism, worst)
	w.s.status.setDeletions(mechanism, worst)
}

func (w watchEvents) Live(stream string, resumed bool) {
	w.s.status.setLive(stream, resumed)
	w.s.log.Info("change stream live", "stream", stream, "resumed_from_cookie", resumed)
}

// expiryTimer asks for a run when the next account expires.
type expiryTimer struct {
	send func(engine.Trigger)
	mu   sync.Mutex
	at   time.Time
	t    *time.Timer
}

// arm sets the timer for at (zero: none), replacing the last.
func (x *expiryTimer) arm(at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if at.Equal(x.at) {
		return
	}
	if x.t != nil {
		x.t.Stop()
	}
	x.at, x.t = at, nil
	if !at.IsZero() {
		// A second late: the run's clock must be past the expiry.
		x.t = time.AfterFunc(time.Until(at)+time.Second, func() { x.send(engine.Trigger{Reason: "account expiry"}) })
	}
}

func (x *expiryTimer) stop() { x.arm(time.Time{}) }
