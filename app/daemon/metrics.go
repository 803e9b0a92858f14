package daemon

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/collabsync/collabsync/internal/buildinfo"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/statelock"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/userdb"
)

// metrics are the daemon's, on a private registry (never the global one).
type metrics struct {
	reg *prometheus.Registry

	runs            *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	changes         *prometheus.CounterVec
	lastSuccess     *prometheus.GaugeVec
	directoryReads  *prometheus.CounterVec
	fullReads       *prometheus.CounterVec
	evaluations     *prometheus.CounterVec
	plans           *prometheus.CounterVec
	modelDiffs      *prometheus.CounterVec
	modelEntries    *prometheus.GaugeVec
	drift           *prometheus.CounterVec
	targetCalls     *prometheus.CounterVec
	inMaintenance   *prometheus.GaugeVec
	refreshFailures *prometheus.CounterVec
	state           *stateCollector
	ldapConnected   prometheus.Gauge
	changeMode      *prometheus.GaugeVec
	deletionDelay   *prometheus.GaugeVec
	syncEvents      *prometheus.CounterVec
	queueChanges    *prometheus.GaugeVec
	reloads         *prometheus.CounterVec
	held            *prometheus.GaugeVec
	queue           *queueCollector
	lockBusy        prometheus.Counter
	// userdb is the provider serve.userdb runs, when it does.
	userdb atomic.Pointer[userdb.Provider]
	// ha says who leads, when serve is one of a pair.
	ha haMetrics
	// ready is what /readyz answers from.
	ready atomic.Pointer[status]

	ingestCoreSeconds *prometheus.CounterVec
	ingestJobs        *prometheus.CounterVec
	ingestBadLines    *prometheus.CounterVec
	ingestRuns        *prometheus.CounterVec
	ingestLast        *prometheus.GaugeVec
	ingestLag         *prometheus.GaugeVec
	ingestFailedFiles *prometheus.CounterVec
	ingestUnreadable  *prometheus.GaugeVec
	allocationUsed    *prometheus.GaugeVec
}

func newMetrics(version string) *metrics {
	bi := buildinfo.Read(version)
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_reconcile_runs_total", Help: "Reconcile runs per target and result (success, failure, refused).",
		}, []string{"target", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "collabsync_reconcile_duration_seconds", Help: "Time to plan and apply one target.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"target"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_changes_applied_total", Help: "Records changed downstream, per target and operation.",
		}, []string{"target", "op"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_last_success_timestamp_seconds", Help: "When each target last reconciled successfully.",
		}, []string{"target"}),
		directoryReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_directory_reads_total", Help: "Reconciles that took the directory's state (from the live model or a full read), by result.",
		}, []string{"result"}),
		fullReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_directory_full_reads_total",
			Help: "Whole-directory reads, by reason: refresh (a syncrepl refresh without a cookie: start, or the server asked), schedule (full_reconcile), poll.",
		}, []string{"reason"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_rules_evaluations_total",
			Help: "Evaluations of the account rules, by kind: incremental (the subjects a change can affect) or whole (start, full reconcile, a change of policy, an entry added, removed or renamed, a review date or expiry reached).",
		}, []string{"kind"}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_target_plans_total",
			Help: "Plans made per target, by kind: difference (from the records the target holds and the entries changed since the state they were desired for) or whole (the whole desired state diffed).",
		}, []string{"target", "kind"}),
		modelDiffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_live_model_differences_total",
			Help: "Entries on which the live model differed from a scheduled full read, per stream (a bug: the model is rebuilt).",
		}, []string{"stream"}),
		modelEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_live_model_entries", Help: "Entries the live directory model holds, per stream.",
		}, []string{"stream"}),
		refreshFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_syncrepl_refresh_failures_total",
			Help: "Syncrepl refreshes that did not complete, per stream and reason (stalled: nothing came for ldap.refresh_timeout, e.g. cut by a server size limit).",
		}, []string{"stream", "reason"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_target_drift_total",
			Help: "Records a full reconcile found changed downstream behind collabsync's back (and repaired), per target.",
		}, []string{"target"}),
		targetCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_target_calls_total",
			Help: "Calls a target made to its downstream system (REST requests, commands), by result: an HTTP status code, \"error\" for no answer, \"exit N\" for a command.",
		}, []string{"target", "result"}),
		inMaintenance: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_target_in_maintenance",
			Help: "1 while a target is in a maintenance window (its changes held until the window ends), else 0.",
		}, []string{"target"}),
		state: newStateCollector(),
		ldapConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "collabsync_ldap_connected", Help: "1 while the change stream is connected to the directory.",
		}),
		changeMode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_change_stream_mode", Help: "How changes are noticed: 1 for the mode in use (syncrepl; usn: Active Directory's uSNChanged; poll: full reads).",
		}, []string{"mode"}),
		deletionDelay: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_ad_deletion_delay_seconds",
			Help: "On Active Directory, the worst-case delay of a deletion for the mechanism in use (tombstones: by the next poll; scan: GUIDs listed every serve.deletion_scan), 0 for the other.",
		}, []string{"mechanism"}),
		syncEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_syncrepl_events_total", Help: "Syncrepl messages per stream and type (add, modify, delete, present, info).",
		}, []string{"stream", "type"}),
		queueChanges: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_retry_queue_changes", Help: "Changes waiting in the retry queue, per target.",
		}, []string{"target"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_config_reloads_total", Help: "Configuration reloads (SIGHUP) by result.",
		}, []string{"result"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collabsync_plan_held", Help: "1 while a target's guard holds its plan for an operator's approval (collabsync approve).",
		}, []string{"target"}),
	}
	m.queue = newQueueCollector()
	m.lockBusy = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "collabsync_state_lock_busy_total", Help: "Runs postponed because another process held the state directory's lock too long.",
	})
	m.ingestCoreSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "collabsync_accounting_core_seconds_total", Help: "Core-seconds of newly ingested jobs, per cluster and collaboration.",
	}, []string{"cluster", "collaboration"})
	m.ingestJobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "collabsync_accounting_jobs_total", Help: "Jobs read from accounting logs, per source; result is new or duplicate.",
	}, []string{"source", "result"})
	m.ingestBadLines = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "collabsync_accounting_bad_lines_total", Help: "Accounting log lines that could not be read, per source.",
	}, []string{"source"})
	m.ingestRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "collabsync_accounting_ingest_runs_total", Help: "Scheduled ingests per source and result (success, failure, skipped).",
	}, []string{"source", "result"})
	m.ingestLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "collabsync_accounting_last_ingest_timestamp_seconds", Help: "When each source was last ingested successfully.",
	}, []string{"source"})
	m.ingestLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "collabsync_accounting_lag_seconds", Help: "Age of the newest job end each source has delivered.",
	}, []string{"source"})
	m.ingestFailedFiles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "collabsync_accounting_failed_files_total", Help: "Files an ingest could not read to their end (damaged, unreadable, another format), per source.",
	}, []string{"source"})
	m.ingestUnreadable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "collabsync_accounting_unreadable_files", Help: "Files the last ingest of each source could not read: failed now, or damaged and skipped until they change.",
	}, []string{"source"})
	m.allocationUsed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "collabsync_allocation_used_ratio",
		Help: "Share of each collaboration's allocation used in the current accounting.allocation_period, per resource (core, gpu); set at start and after each ingest.",
	}, []string{"collaboration", "resource"})
	m.reg.MustRegister(m.ingestCoreSeconds, m.ingestJobs, m.ingestBadLines, m.ingestRuns, m.ingestLast, m.ingestLag,
		m.ingestFailedFiles, m.ingestUnreadable, m.allocationUsed)
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "collabsync_build_info", Help: "Always 1; the release version, commit and Go version are labels.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	build.Set(1)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "collabsync_ready",
		Help: "1 while /readyz says ready (the directory read and reachable, every target reconciled or holding a plan, the userdb provider serving).",
	}, func() float64 {
		if s := m.ready.Load(); s != nil {
			if ready, _ := s.ready(); ready {
				return 1
			}
		}
		return 0
	}))
	m.reg.MustRegister(newUserDBCollector(func() *userdb.Health {
		if p := m.userdb.Load(); p != nil {
			h := p.Health()
			return &h
		}
		return nil
	}))
	m.reg.MustRegister(m.fullReads, m.evaluations, m.plans, m.modelDiffs, m.modelEntries, m.drift, m.targetCalls, m.inMaintenance, m.refreshFailures)
	m.reg.MustRegister(m.runs, m.duration, m.changes, m.lastSuccess, m.directoryReads, m.state,
		m.ldapConnected, m.changeMode, m.deletionDelay, m.syncEvents, m.queueChanges, m.reloads, m.held, m.queue, m.lockBusy, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// evaluation counts one evaluation of the rules.
func (m *metrics) evaluation(incremental bool, _ string) {
	kind := "whole"
	if incremental {
		kind = "incremental"
	}
	m.evaluations.WithLabelValues(kind).Inc()
}

// observeRead updates the metrics from one read of the directory.
func (m *metrics) observeRead(r engine.RunReport) {
	if busy := (*statelock.BusyError)(nil); errors.As(r.Err, &busy) {
		m.lockBusy.Inc()
		return
	}
	if r.State == nil {
		m.directoryReads.WithLabelValues("failure").Inc()
		return
	}
	m.directoryReads.WithLabelValues("success").Inc()
	m.state.state.Store(r.State)
}

// observeTarget updates the metrics from one target's run.
func (m *metrics) observeTarget(r engine.TargetReport) {
	res := r.Result
	if busy := (*statelock.BusyError)(nil); errors.As(res.Err, &busy) {
		m.lockBusy.Inc()
	}
	result := "success"
	switch {
	case res.Plan != nil && res.Plan.Refused != "":
		result = "refused"
	case res.Err != nil:
		result = "failure"
	}
	m.runs.WithLabelValues(res.Target, result).Inc()
	if res.Plan != nil {
		kind := "whole"
		if res.ByDifference {
			kind = "difference"
		}
		m.plans.WithLabelValues(res.Target, kind).Inc()
	}
	if result == "refused" {
		m.held.WithLabelValues(res.Target).Set(1)
	} else {
		m.held.WithLabelValues(res.Target).Set(0)
	}
	m.duration.WithLabelValues(res.Target).Observe(res.Duration.Seconds())
	m.drift.WithLabelValues(res.Target).Add(float64(res.Drift))
	in := 0.0
	if res.Maintenance != "" {
		in = 1
	}
	m.inMaintenance.WithLabelValues(res.Target).Set(in)
	if res.Applied {
		add, mod, del := res.Plan.Counts()
		m.changes.WithLabelValues(res.Target, string(engine.OpAdd)).Add(float64(add))
		m.changes.WithLabelValues(res.Target, string(engine.OpModify)).Add(float64(mod))
		m.changes.WithLabelValues(res.Target, string(engine.OpDelete)).Add(float64(del))
	}
	if result == "success" {
		m.lastSuccess.WithLabelValues(res.Target).Set(float64(time.Now().Unix()))
	}
}

// Connected and SyncEvent take the watcher's events (through watchEvents).
// targetCall counts one call of a target to its downstream system.
func (m *metrics) targetCall(target, result string) {
	m.targetCalls.WithLabelValues(target, result).Inc()
}

func (m *metrics) Connected(up bool) {
	if up {
		m.ldapConnected.Set(1)
	} else {
		m.ldapConnected.Set(0)
	}
}

func (m *metrics) SyncEvent(stream, kind string) { m.syncEvents.WithLabelValues(stream, kind).Inc() }

// setDeletions says how Active Directory's deletions are found.
func (m *metrics) setDeletions(mechanism string, worst time.Duration) {
	for _, x := range []string{"tombstones", "scan"} {
		v := 0.0
		if x == mechanism {
			v = worst.Seconds()
		}
		m.deletionDelay.WithLabelValues(x).Set(v)
	}
}

func (m *metrics) setMode(mode string) {
	for _, x := range []string{"syncrepl", "usn", "poll"} {
		v := 0.0
		if x == mode {
			v = 1
		}
		m.changeMode.WithLabelValues(x).Set(v)
	}
}

// userdbCollector reports the userdb provider's health at scrape time.
type userdbCollector struct {
	health                  func() *userdb.Health // nil when none is configured
	serving, conns, refused *prometheus.Desc
}

func newUserDBCollector(health func() *userdb.Health) *userdbCollector {
	return &userdbCollector{health: health,
		serving: prometheus.NewDesc("collabsync_userdb_serving", "1 while the userdb provider (serve.userdb) listens on its socket.", nil, nil),
		conns:   prometheus.NewDesc("collabsync_userdb_connections", "Connections the userdb provider holds open.", nil, nil),
		refused: prometheus.NewDesc("collabsync_userdb_refused_connections_total",
			"Connections closed at once: their peer's uid, or the provider, was at its cap.", nil, nil),
	}
}

func (c *userdbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.serving
	ch <- c.conns
	ch <- c.refused
}

func (c *userdbCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.health()
	if h == nil {
		return
	}
	serving := 0.0
	if h.Serving {
		serving = 1
	}
	ch <- prometheus.MustNewConstMetric(c.serving, prometheus.GaugeValue, serving)
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(h.Connections))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(h.Refused))
}

// queueCollector reports the retry queue as of the last run: how many
// targets wait, and how old each one's first failure is at scrape time.
type queueCollector struct {
	mu       sync.Mutex
	first    map[string]time.Time
	attempts map[string]int
	depth    *prometheus.Desc
	age      *prometheus.Desc
	tries    *prometheus.Desc
}

func newQueueCollector() *queueCollector {
	return &queueCollector{
		depth: prometheus.NewDesc("collabsync_retry_queue_targets", "Targets waiting in the retry queue.", nil, nil),
		age: prometheus.NewDesc("collabsync_retry_queue_oldest_seconds",
			"Seconds since the first failure of each queued target's current row of failures (across restarts).", []string{"target"}, nil),
		tries: prometheus.NewDesc("collabsync_retry_queue_attempts", "Failed attempts of each queued target so far.", []string{"target"}, nil),
	}
}

func (q *queueCollector) set(queue []store.Queued) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.first, q.attempts = map[string]time.Time{}, map[string]int{}
	for _, e := range queue {
		q.first[e.Target], q.attempts[e.Target] = e.FirstFailed, e.Attempts
	}
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.depth
	ch <- q.age
	ch <- q.tries
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(q.depth, prometheus.GaugeValue, float64(len(q.first)))
	for t, at := range q.first {
		ch <- prometheus.MustNewConstMetric(q.age, prometheus.GaugeValue, time.Since(at).Seconds(), t)
		ch <- prometheus.MustNewConstMetric(q.tries, prometheus.GaugeValue, float64(q.attempts[t]), t)
	}
}

// stateCollector reports the directory's objects and the rule violations
// of the last read, counted when scraped: counting 1.1M subjects on every
// change was 30 ms of each at 1M users, for a scrape every 15 s or so.
type stateCollector struct {
	state               atomic.Pointer[directory.State]
	objects, violations *prometheus.Desc
}

func newStateCollector() *stateCollector {
	return &stateCollector{
		objects: prometheus.NewDesc("collabsync_directory_objects", "Directory objects by kind and effective state, as of the last read.",
			[]string{"kind", "state"}, nil),
		violations: prometheus.NewDesc("collabsync_violations", "Current rule violations by kind and severity.", []string{"kind", "severity"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.violations
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state.Load()
	if st == nil {
		return
	}
	type key struct{ a, b string }
	objects := map[key]int{}
	for _, u := range st.Users {
		objects[key{"user", string(u.Status)}]++
	}
	for _, c := range st.Collaborations {
		objects[key{"collaboration", string(c.Status)}]++
	}
	for _, p := range st.ProductionAccounts {
		state := directory.StatusPending
		if p.Active {
			state = directory.StatusActive
		}
		objects[key{"production_account", string(state)}]++
	}
	for k, n := range objects {
		ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(n), k.a, k.b)
	}
	violations := map[key]int{}
	for i := range st.Violations {
		// Not a copy of each: the store dates a state's violations in
		// place (their Since) after the state is made.
		v := &st.Violations[i]
		violations[key{string(v.Kind), string(v.Severity)}]++
	}
	for k, n := range violations {
		ch <- prometheus.MustNewConstMetric(c.violations, prometheus.GaugeValue, float64(n), k.a, k.b)
	}
}
