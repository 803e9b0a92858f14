package daemon

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/maintenance"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/userdb"
)

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, why := s.status.ready()
		switch {
		case !ready:
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		case why != "":
			fmt.Fprintln(w, why) // standby
		default:
			fmt.Fprintln(w, "ready")
		}
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
	data    StatusReport
	// startedUp: every target has been reconciled or holds a plan since
	// the daemon started (systemd's READY=1 was sent).
	startedUp bool
	// users and collabs are the configured searches, named when a held
	// plan looks like a search gone wrong.
	users, collabs ldapx.Search
	// grace is how long the directory may be down before not ready.
	grace time.Duration
	now   func() time.Time
	// userdb is the provider's health, nil when none is configured.
	userdb func() *userdb.Health
}

// StatusReport is what /status returns (JSON).
type StatusReport struct {
	Started      time.Time                `json:"started"`
	Ready        bool                     `json:"ready"`
	Directory    DirectoryStatus          `json:"directory"`
	Targets      map[string]*TargetStatus `json:"targets"`
	ChangeStream ChangeStreamStatus       `json:"change_stream"`
	Queue        []store.Queued           `json:"retry_queue"`
	// HA is the lease, when serve is one of an active/passive pair.
	HA *HAStatus `json:"ha,omitempty"`
}

// DirectoryStatus is the directory as the last reconcile took it.
type DirectoryStatus struct {
	LastRead   time.Time `json:"last_read,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	LastReason string    `json:"last_reason,omitempty"`
	Users      int       `json:"users"`
	Violations int       `json:"violations"`
}

// TargetStatus is one target's last run.
type TargetStatus struct {
	LastRun     time.Time `json:"last_run,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Result      string    `json:"result"` // success, failure, or held (by its guard, for approval)
	Added       int       `json:"added"`
	Modified    int       `json:"modified"`
	Deleted     int       `json:"deleted"`
	Error       string    `json:"error,omitempty"`
	// Held is the plan the guard holds, with the command that approves it.
	Held *HeldPlan `json:"held,omitempty"`
	// Maintenance is the window the target is in and the next one, when
	// it has maintenance windows.
	Maintenance *MaintenanceStatus `json:"maintenance,omitempty"`
}

// MaintenanceStatus is a target's current and next maintenance windows.
type MaintenanceStatus struct {
	Current *maintenance.Window `json:"current,omitempty"`
	Next    *maintenance.Window `json:"next,omitempty"`
	// HeldChanges are the changes waiting for the current window's end.
	HeldChanges int    `json:"held_changes"`
	Error       string `json:"error,omitempty"`
}

// HeldPlan is a plan a target's guard holds for an operator's approval.
type HeldPlan struct {
	Digest string    `json:"digest"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Suspect, for a plan that would delete most of its target, is what
	// the directory side suspects: the searches and what they return.
	Suspect string `json:"suspect,omitempty"`
	Approve string `json:"approve"`
}

// ChangeStreamStatus is how changes are followed, and the live model.
type ChangeStreamStatus struct {
	Mode string `json:"mode"`
	// Why says why the daemon polls (the server offers no syncrepl, or
	// the configuration says so).
	Why       string `json:"why,omitempty"`
	Connected bool   `json:"connected"`
	// DownSince is when the directory was last found unreachable (or
	// refusing the bind), while it is; LastError why.
	DownSince time.Time `json:"down_since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Live holds the streams whose refresh is done (true), and Resumed
	// those among them that resumed from a stored cookie.
	Live    map[string]bool `json:"live"`
	Resumed map[string]bool `json:"resumed"`
	// Errors are the streams' last failures, until they are live again.
	Errors map[string]string `json:"errors,omitempty"`
	// UserDB is the userdb provider's health, when serve.userdb is set.
	UserDB *userdb.Health `json:"userdb,omitempty"`
	// Deletions, on Active Directory, is how deleted entries are found.
	Deletions *DeletionStatus `json:"deletions,omitempty"`
	Model     ModelStatus     `json:"model"`
}

// DeletionStatus says how deletions reach the model on Active Directory:
// tombstones (the bind user may read CN=Deleted Objects: by the next
// poll) or scan (a listing of the GUIDs every serve.deletion_scan), and
// the worst-case delay of a deletion.
type DeletionStatus struct {
	Mechanism    string  `json:"mechanism"`
	WorstSeconds float64 `json:"worst_case_delay_seconds"`
}

// ModelStatus is the live directory model: its size, and what the last
// scheduled full read found.
type ModelStatus struct {
	Entries      map[string]int `json:"entries"` // by stream
	LastFullRead time.Time      `json:"last_full_read,omitzero"`
	// Differences counts the entries on which the model and a full read
	// disagreed since the daemon started (each time, the model was rebuilt).
	Differences int `json:"differences"`
}

func newStatus() *status {
	now := time.Now()
	return &status{started: now, now: time.Now, grace: time.Minute, data: StatusReport{Started: now, Targets: map[string]*TargetStatus{},
		ChangeStream: ChangeStreamStatus{Live: map[string]bool{}, Resumed: map[string]bool{}, Model: ModelStatus{Entries: map[string]int{}}}}}
}

func (s *status) configure(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets = wiring.TargetNames(cfg)
	s.users, s.collabs = cfg.LDAP.Users.Search, cfg.LDAP.Collaborations.Search
	s.grace = time.Duration(cfg.Serve.DirectoryGrace)
}

// suspect says what the directory side suspects of a plan that would
// delete most of what its target holds: far more often a search that
// matches the wrong entries (a base DN or filter changed, rights
// withdrawn) than a centre losing most of its people at once.
func (s *status) suspect(p *engine.Plan, st *directory.State) string {
	_, _, del := p.Counts()
	if p.Current == 0 || 2*del <= p.Current {
		return ""
	}
	return fmt.Sprintf("it would delete %d of the %d records the target holds, and the directory now returns %d users "+
		"(base %q, filter %q) and %d collaborations (base %q, filter %q): a base DN or filter that matches the wrong entries, "+
		"or a bind user that lost its read rights, looks like this; check ldap.users and ldap.collaborations before approving",
		del, p.Current, len(st.Users), s.users.BaseDN, s.users.Filter, len(st.Collaborations), s.collabs.BaseDN, s.collabs.Filter)
}

func (s *status) setMode(mode, why string) {
	s.mu.Lock()
	s.data.ChangeStream.Mode, s.data.ChangeStream.Why = mode, why
	s.mu.Unlock()
}

// setConnectError records a failure to connect or bind.
func (s *status) setConnectError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := &s.data.ChangeStream
	cs.Connected, cs.LastError = false, err.Error()
	if cs.DownSince.IsZero() {
		cs.DownSince = s.now()
	}
}

func (s *status) setConnected(up bool) {
	s.mu.Lock()
	if cs := &s.data.ChangeStream; up {
		cs.DownSince, cs.LastError = time.Time{}, ""
	} else if cs.DownSince.IsZero() {
		cs.DownSince = s.now()
	}
	s.data.ChangeStream.Connected = up
	if !up {
		s.data.ChangeStream.Live, s.data.ChangeStream.Resumed = map[string]bool{}, map[string]bool{}
	}
	s.mu.Unlock()
}

func (s *status) setModelSize(sizes map[string]int) {
	s.mu.Lock()
	s.data.ChangeStream.Model.Entries = sizes
	s.mu.Unlock()
}

func (s *status) fullRead(at time.Time, differences int) {
	s.mu.Lock()
	s.data.ChangeStream.Model.LastFullRead = at
	s.data.ChangeStream.Model.Differences += differences
	s.mu.Unlock()
}

func (s *status) setStreamError(stream string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data.ChangeStream.Errors == nil {
		s.data.ChangeStream.Errors = map[string]string{}
	}
	s.data.ChangeStream.Errors[stream] = err.Error()
}

func (s *status) setLive(stream string, resumed bool) {
	s.mu.Lock()
	delete(s.data.ChangeStream.Errors, stream)
	s.data.ChangeStream.Live[stream] = true
	s.data.ChangeStream.Resumed[stream] = resumed
	s.mu.Unlock()
}

func (s *status) setDeletions(mechanism string, worst time.Duration) {
	s.mu.Lock()
	s.data.ChangeStream.Deletions = &DeletionStatus{Mechanism: mechanism, WorstSeconds: worst.Seconds()}
	s.mu.Unlock()
}

// recordRead takes one read of the directory in; it reports whether a
// standby just started up (a standby runs no target).
func (s *status) recordRead(r engine.RunReport) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &s.data
	d.Directory.LastReason = r.Reason
	if r.State == nil {
		d.Directory.LastError = r.Err.Error()
		return false
	}
	d.Directory.LastRead, d.Directory.LastError = r.Started, ""
	d.Directory.Users, d.Directory.Violations = len(r.State.Users), len(r.State.Violations)
	d.Ready, _ = s.readyLocked()
	if !s.startedUp && d.HA != nil && !d.HA.Leader {
		s.startedUp = true
		return true
	}
	return false
}

// recordTarget takes one target's run in; it reports whether the daemon
// just became ready.
func (s *status) recordTarget(r engine.TargetReport, queue []store.Queued) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &s.data
	d.Queue = queue
	res := r.Result
	t := d.Targets[res.Target]
	if t == nil {
		t = &TargetStatus{}
		d.Targets[res.Target] = t
	}
	t.LastRun, t.Error = r.Started, ""
	t.Added, t.Modified, t.Deleted = 0, 0, 0
	switch {
	case res.Maintenance != "":
		t.Result = "maintenance"
	case res.Plan != nil && res.Plan.Refused != "":
		p := res.Plan
		if t.Held == nil || t.Held.Digest != p.Digest {
			t.Held = &HeldPlan{Digest: p.Digest, Reason: p.Refused, Since: r.Started, Suspect: s.suspect(p, r.State),
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
		if ts == nil || (ts.LastSuccess.Before(s.started) && ts.Held == nil && ts.Result != "maintenance") {
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
	cs := &s.data.ChangeStream
	if s.data.Directory.LastRead.IsZero() {
		why := "the directory has not been read yet"
		if cs.LastError != "" {
			why += "; " + cs.LastError
		}
		for _, stream := range slices.Sorted(maps.Keys(cs.Errors)) {
			why += fmt.Sprintf("; change stream %s: %s", stream, cs.Errors[stream])
		}
		return false, why
	}
	if !cs.Connected && !cs.DownSince.IsZero() && s.now().Sub(cs.DownSince) > s.grace {
		why := fmt.Sprintf("the directory has been unreachable since %s (more than serve.directory_grace %v); the targets keep the last state",
			cs.DownSince.UTC().Format(time.RFC3339), s.grace)
		if cs.LastError != "" {
			why += ": " + cs.LastError
		}
		return false, why
	}
	if s.userdb != nil {
		if h := s.userdb(); h != nil && !h.Serving {
			return false, "the userdb provider is not serving: " + h.Err
		}
	}
	if ha := s.data.HA; ha != nil && !ha.Leader {
		if ha.Err != "" {
			return false, "standby, and the HA lease cannot be read: " + ha.Err
		}
		holder := ha.Holder
		if holder == "" {
			holder = "nobody"
		}
		return true, fmt.Sprintf("standby: %s leads (lease generation %d); this process keeps its live model and takes over when the lease lapses", holder, ha.Generation)
	}
	var missing, held []string
	for _, t := range s.targets {
		ts := s.data.Targets[t]
		switch {
		case ts != nil && ts.Held != nil:
			if ts.Held.Suspect != "" {
				held = append(held, fmt.Sprintf("%s holds a plan its guard refused (%s); the directory side suspects a wrong search: %s; "+
					"only if the directory is right, approve it with: %s", t, ts.Held.Reason, ts.Held.Suspect, ts.Held.Approve))
				break
			}
			held = append(held, fmt.Sprintf("%s holds a plan its guard refused (%s); approve it with: %s", t, ts.Held.Reason, ts.Held.Approve))
		case ts != nil && ts.Result == "maintenance":
			// In a maintenance window: its changes wait, as planned.
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

func (s *status) snapshot() StatusReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.data
	out.Targets = make(map[string]*TargetStatus, len(s.data.Targets))
	for k, v := range s.data.Targets {
		c := *v
		if v.Held != nil {
			h := *v.Held
			c.Held = &h
		}
		out.Targets[k] = &c
	}
	out.ChangeStream.Model.Entries = maps.Clone(s.data.ChangeStream.Model.Entries)
	out.ChangeStream.Errors = maps.Clone(s.data.ChangeStream.Errors)
	if s.userdb != nil {
		out.ChangeStream.UserDB = s.userdb()
	}
	out.ChangeStream.Live = maps.Clone(s.data.ChangeStream.Live)
	out.ChangeStream.Resumed = maps.Clone(s.data.ChangeStream.Resumed)
	if d := s.data.ChangeStream.Deletions; d != nil {
		c := *d
		out.ChangeStream.Deletions = &c
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
	if d.HA != nil && !d.HA.Leader {
		return fmt.Sprintf("standby (%s leads, generation %d): last read %s (%s); changes via %s", d.HA.Holder, d.HA.Generation,
			d.Directory.LastRead.Format(time.TimeOnly), d.Directory.LastReason, d.ChangeStream.Mode)
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

// setMaintenance records each target's current and next windows, and
// the changes held for the current one's end by the target that just ran.
func (s *status) setMaintenance(now time.Time, schedules map[string]*maintenance.Schedule, ran engine.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, sched := range schedules {
		t := s.data.Targets[name]
		if t == nil {
			t = &TargetStatus{}
			s.data.Targets[name] = t
		}
		m := &MaintenanceStatus{}
		switch {
		case name == ran.Target && ran.Maintenance != "" && ran.Plan != nil:
			m.HeldChanges = len(ran.Plan.Changes)
		case name != ran.Target && t.Maintenance != nil:
			m.HeldChanges = t.Maintenance.HeldChanges
		}
		var err error
		if m.Current, m.Next, err = sched.At(now); err != nil {
			m.Error = err.Error()
		}
		t.Maintenance = m
	}
}
