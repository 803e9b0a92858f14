// Package reconcile turns the configuration into runs of the engine: the
// directory source, the account rules with their stored history, the
// configured targets, and what a run records afterwards. The one-shot
// commands and the daemon share it.
package wiring

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/report"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/localaccounts"
	"github.com/collabsync/collabsync/internal/maintenance"
	"github.com/collabsync/collabsync/internal/statelock"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/notices"
)

// Policy turns the configured rules into the directory's Policy. It reads
// the machine's own accounts, which are reserved.
func Policy(cfg *config.Config, now time.Time) (directory.Policy, error) {
	r := cfg.Rules
	reserved, err := localaccounts.Read(r.LocalPasswd, r.LocalGroup, r.ReservedNames, "rules.reserved_names")
	if err != nil {
		return directory.Policy{}, err
	}
	return directory.Policy{
		Now:                 now,
		ReviewGrace:         time.Duration(r.ReviewGrace),
		ReviewWarning:       time.Duration(r.ReviewWarning),
		ReviewTracked:       cfg.LDAP.Collaborations.Attributes.ReviewedUntil != "",
		MemberDomains:       r.MemberDomains,
		MemberAffiliations:  r.MemberAffiliations,
		AcceptedDomains:     r.AcceptedDomains,
		ProductionSeparator: r.ProductionSeparator,
		ProductionLabel:     regexp.MustCompile(r.ProductionLabel), // validated by config
		Actions:             r.Actions,
		UIDRange:            &directory.IDRange{Min: r.UIDRange.Min, Max: r.UIDRange.Max},
		GIDRange:            &directory.IDRange{Min: r.GIDRange.Min, Max: r.GIDRange.Max},
		Reserved:            reserved,
	}, nil
}

// Evaluate applies the rules, with the stored history, to a snapshot,
// for a command that records no statuses.
func Evaluate(ctx context.Context, cfg *config.Config, st *store.Store, snap *directory.Snapshot) (*directory.State, error) {
	return DryRunRules(cfg, st).Evaluate(ctx, snap, true)
}

// onceRules are the rules of a one-shot command, which evaluates once
// (directory.Evaluator's Once).
func onceRules(cfg *config.Config, st *store.Store) *Rules {
	r := NewRules(cfg, st)
	r.ev.Once = true
	return r
}

// DryRunRules are the rules of a one-shot command that records no
// statuses (a dry run, a report): they look up the history of the few
// subjects they ask after (store.StatusLookup) instead of reading it
// whole, which only a run that saves the statuses needs.
func DryRunRules(cfg *config.Config, st *store.Store) *Rules {
	r := onceRules(cfg, st)
	r.lookup = true
	return r
}

// Rules evaluates the account rules, with the stored history, for an
// engine's runs: a change from the last run evaluates what it can affect
// (directory.Evaluator), a full reconcile everything.
type Rules struct {
	cfg *config.Config
	st  *store.Store
	// Observe, if set, is told of each evaluation: incremental, or why
	// it was whole.
	Observe func(incremental bool, why string)

	mu sync.Mutex // an HA pair's two loops share the rules
	ev directory.Evaluator
	// saved is the last state Save recorded, savedGen the stored
	// statuses' generation it left (-1: unknown).
	saved    *directory.State
	savedGen int64
	// read is the stored statuses as the last run read them, at readGen,
	// held as that run's state and what it differs in (the map of every
	// subject let go: 213 MB at 1M users); nil after a save.
	read    directory.History
	readGen int64
	// lookup: the history is looked up subject by subject, not read
	// whole (DryRunRules).
	lookup bool
}

// NewRules returns the rules of a configuration and state store.
func NewRules(cfg *config.Config, st *store.Store) *Rules {
	return &Rules{cfg: cfg, st: st, savedGen: -1}
}

// Save records a state every target took as provisioned: the statuses
// the hold action compares against next time. While the stored statuses
// are what this process last saved (their generation says nobody else
// wrote since), it writes the difference from that state among the
// subjects the runs between them changed (directory.Evaluator's
// ChangesSince); otherwise the state's difference from the whole history
// (SaveStatuses). At 1M users the whole difference was 1.1M map lookups
// a change.
func (r *Rules) Save(ctx context.Context, state *directory.State) error {
	gen, err := r.st.StatusGeneration(ctx)
	if err != nil {
		return fmt.Errorf("save statuses: %w", err)
	}
	r.mu.Lock()
	since, gone, ok := r.ev.ChangesSince(r.saved, state)
	ok = ok && gen == r.savedGen
	r.mu.Unlock()
	var changed directory.History = since
	if !ok {
		changed, gone = state.StatusDiff()
	}
	after, err := r.st.SaveStatusChanges(ctx, changed, gone, time.Now())
	if err != nil {
		after = -1
	} else if after == 0 {
		after = gen // nothing written
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.saved, r.savedGen = state, after
	r.read = nil
	r.ev.Forget(state)
	if err != nil {
		return fmt.Errorf("save statuses: %w", err)
	}
	return nil
}

// Evaluate applies the rules to a snapshot; full evaluates every subject.
// The history is the state this process saved last while the stored
// statuses are what it saved (their generation says nobody else wrote
// since): the store then keeps no map of every subject besides it (≈10 MB
// at 100k users). Otherwise the stored statuses are read, once: the
// store's map is let go after the evaluation, and the runs until a save
// take the statuses as the evaluated state holds them (directory.State's
// Against).
func (r *Rules) Evaluate(ctx context.Context, snap *directory.Snapshot, full bool) (*directory.State, error) {
	gen, err := r.st.StatusGeneration(ctx)
	if err != nil {
		return nil, err
	}
	pol, err := Policy(r.cfg, time.Now())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var prev directory.History
	var lookup *store.StatusLookup
	read := false
	switch {
	case r.lookup:
		lookup = r.st.StatusLookup(ctx)
		prev = lookup
	case r.saved != nil && r.savedGen >= 0 && r.savedGen == gen:
		prev = r.saved.History()
	case r.read != nil && r.readGen == gen:
		prev = r.read
	default:
		// Read without the lock, as before the history was the saved
		// state: 1.1M rows take seconds at 1M users.
		r.mu.Unlock()
		prev, err = r.st.Statuses(ctx)
		r.mu.Lock()
		if err != nil {
			return nil, err
		}
		read = true
	}
	if full {
		r.ev.Reset()
	}
	before := r.ev.Stats()
	state := r.ev.Evaluate(snap, pol, prev)
	if lookup != nil {
		if err := lookup.Err(); err != nil {
			// What it answered is not the history: nothing is decided.
			r.ev.Reset()
			return nil, err
		}
	}
	if read {
		r.read, r.readGen = state.Against(), gen
		r.st.ForgetStatuses()
	}
	if after := r.ev.Stats(); r.Observe != nil {
		r.Observe(after.Incremental > before.Incremental, after.Why)
	}
	return state, nil
}

// ReadHistoryAhead reads the rules' history, the stored statuses, on
// another goroutine: a run evaluating beside it finds them read (the
// store keeps them until a process writes them, and a caller meanwhile
// waits for the read under way). serve does it while its saved model is
// restored: after it, 1.1M rows at 1M users took 5 s. sync --once does
// it beside the directory's read: at 1M users 1.0-1.4 s faster than
// after it, its peak RSS ≈70 MiB higher (the packed statuses live at the
// read's peak; at 100k neither moved). The returned function stops the
// read if it is still under way and waits for it: call it before the
// store is closed.
func ReadHistoryAhead(ctx context.Context, st *store.Store, log *slog.Logger) (wait func()) {
	return readAhead(ctx, log, "the rules' history", func(ctx context.Context) error {
		_, err := st.Statuses(ctx)
		return err
	})
}

func readAhead(ctx context.Context, log *slog.Logger, what string, read func(context.Context) error) (wait func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := read(ctx); err != nil && ctx.Err() == nil {
			// The run reads them again, and says so if it fails.
			log.Debug("read "+what+" ahead of the run", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// ErrRead marks a failure to read the directory (as opposed to one of the
// state store or the rules' inputs).
var ErrRead = errors.New("read directory")

// ReadAndEvaluate reads the whole directory and applies the rules: the
// effective state, for commands that need it without reconciling.
func ReadAndEvaluate(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) (*directory.State, error) {
	snap, err := ldapx.NewSource(cfg.LDAP, log).Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	return Evaluate(ctx, cfg, st, snap)
}

// OpenStore opens the state directory's database.
func OpenStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.Open(ctx, filepath.Join(cfg.StateDir, "collabsync.db"), Schemas()...)
}

// Schemas are the tables of the features outside the store's own.
func Schemas() []store.Schema {
	return []store.Schema{{Name: accounting.SchemaName, Migrations: accounting.Migrations()},
		{Name: notices.SchemaName, Migrations: notices.Migrations()}}
}

// NewEngine wires a source (the one-shot commands read the directory
// with ldapx.NewSource, the daemon gives its live model), the rules with
// their stored history, and the configured targets. calls, when not nil,
// counts each target's calls to its downstream system by result. The
// rules are a one-shot command's, which evaluates once: the daemon sets
// its own (NewRules).
func NewEngine(cfg *config.Config, log *slog.Logger, st *store.Store, src engine.Source, calls func(target, result string)) *engine.Engine {
	e := &engine.Engine{Source: src, Evaluate: onceRules(cfg, st).Evaluate, Log: log}
	schedules := Schedules(cfg)
	for _, t := range cfg.Targets {
		env := engine.Env{Log: log.With("target", t.Name)}.Filled()
		if calls != nil {
			name := t.Name
			env.Call = func(result string) { calls(name, result) }
		}
		tg := t.Kind.New(t.Name, t.Settings, env)
		if u, ok := tg.(usageTeller); ok && st != nil {
			u.SetUsage(allocationUse(st, cfg.Accounting.AllocationPeriod))
		}
		if l, ok := tg.(ledgerKeeper); ok && st != nil {
			l.SetStateStore(st.DB)
		}
		if r, ok := tg.(reportsTeller); ok && st != nil {
			r.SetReports(monthlyReports{st: st, period: cfg.Accounting.AllocationPeriod})
		}
		gt := engine.GuardedTarget{Target: tg, Guard: guard(t.Guard)}
		if sched := schedules[t.Name]; sched != nil {
			gt.Maintenance = func(now time.Time) (string, time.Time, error) {
				cur, _, err := sched.At(now)
				if err != nil || cur == nil {
					return "", time.Time{}, err
				}
				return WindowName(cur), cur.End, nil
			}
		}
		e.Targets = append(e.Targets, gt)
	}
	return e
}

// ledgerKeeper is a target that keeps a ledger in the state store
// (notices).
type ledgerKeeper interface{ SetStateStore(*sql.DB) }

// usageTeller is a target that tells of the allocations' use (notices).
type usageTeller interface{ SetUsage(notices.UsageFunc) }

// allocationUse reads the allocations' use from the state store, as
// report --allocations does.
func allocationUse(st *store.Store, period accounting.Period) notices.UsageFunc {
	return func(ctx context.Context, at time.Time) ([]notices.Use, error) {
		uses, err := report.Allocations(ctx, st.DB, period, at, "")
		if err != nil {
			return nil, err
		}
		var out []notices.Use
		for _, u := range uses {
			if u.AllocatedCoreHours > 0 {
				out = append(out, notices.Use{Collaboration: u.Collaboration, Resource: "core-hours", PeriodStart: u.PeriodStart,
					PeriodEnd: u.PeriodEnd, Used: u.CoreHours, Allocated: float64(u.AllocatedCoreHours)})
			}
			if u.AllocatedGPUHours > 0 {
				out = append(out, notices.Use{Collaboration: u.Collaboration, Resource: "GPU-hours", PeriodStart: u.PeriodStart,
					PeriodEnd: u.PeriodEnd, Used: u.GPUHours, Allocated: float64(u.AllocatedGPUHours)})
			}
		}
		return out, nil
	}
}

// Schedules returns the maintenance schedule of each target that has one.
func Schedules(cfg *config.Config) map[string]*maintenance.Schedule {
	out := map[string]*maintenance.Schedule{}
	for _, t := range cfg.Targets {
		if !t.Maintenance.Empty() {
			out[t.Name] = maintenance.New(t.Maintenance)
		}
	}
	return out
}

// WindowName is how a window is named in logs and plans.
func WindowName(w *maintenance.Window) string {
	if w.Summary != "" {
		return w.Summary
	}
	return "maintenance window"
}

// TargetNames lists the configured targets' names.
func TargetNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Targets))
	for _, t := range cfg.Targets {
		names = append(names, t.Name)
	}
	return names
}

func guard(g config.Guard) engine.Guard {
	return engine.Guard{MaxDeleteRatio: g.MaxDeleteRatio, MinDeletes: g.MinDeletes}
}

// RecordHistory stores what a one-shot run decided: RecordRead,
// RecordResults and, when every target took the state, SaveStatuses. A
// dry run records nothing.
func RecordHistory(ctx context.Context, st *store.Store, state *directory.State, results []engine.Result, runErr error, dryRun bool) error {
	if dryRun {
		return nil
	}
	if err := RecordRead(ctx, st, state); err != nil {
		return err
	}
	if err := RecordResults(ctx, st, results); err != nil {
		return err
	}
	if runErr != nil {
		return nil
	}
	return SaveStatuses(ctx, st, state)
}

// RecordRead stores what a read of the directory decided: violations
// (with their first-seen dates, filled into state) and what attributing
// accounting jobs needs (so an ingest reads no directory).
func RecordRead(ctx context.Context, st *store.Store, state *directory.State) error {
	return RecordReadWith(ctx, st, state, accounting.NewAttributor(state), true)
}

// RecordReadWith is RecordRead with the state's attributor made already;
// one unchanged since the last record (Attributor.Unchanged) is not saved
// again.
func RecordReadWith(ctx context.Context, st *store.Store, state *directory.State, attr *accounting.Attributor, changed bool) error {
	now := time.Now()
	if err := st.RecordViolations(ctx, state.Violations, now); err != nil {
		return fmt.Errorf("record violations: %w", err)
	}
	if err := accounting.SaveAllocations(ctx, st.DB, accounting.AllocationsOf(state)); err != nil {
		return err
	}
	if !changed {
		if err := st.ConfirmAttribution(ctx, now); err != nil {
			return fmt.Errorf("save attribution: %w", err)
		}
		return nil
	}
	return SaveAttribution(ctx, st, attr, now)
}

// RecordResults stores which plans their guards hold (for 'approve' and
// status); targets that went through are forgotten.
func RecordResults(ctx context.Context, st *store.Store, results []engine.Result) error {
	now := time.Now()
	for _, r := range results {
		switch {
		case r.Plan != nil && r.Plan.Refused != "":
			if err := st.HoldPlan(ctx, store.Held{Target: r.Target, Digest: r.Plan.Digest, Reason: r.Plan.Refused, Since: now}); err != nil {
				return fmt.Errorf("record held plan of %s: %w", r.Target, err)
			}
		case r.Err == nil:
			if err := st.Reconciled(ctx, r.Target); err != nil {
				return fmt.Errorf("forget held plan of %s: %w", r.Target, err)
			}
		}
	}
	return nil
}

// SaveStatuses records a state every target took as provisioned: the
// statuses the hold action compares against next time.
func SaveStatuses(ctx context.Context, st *store.Store, state *directory.State) error {
	changed, gone := state.StatusDiff()
	if _, err := st.SaveStatusChanges(ctx, changed, gone, time.Now()); err != nil {
		return fmt.Errorf("save statuses: %w", err)
	}
	return nil
}

// TargetLock returns the engine's TargetLock for a process: a lock file
// per target in the state directory, waited for up to wait.
func TargetLock(cfg *config.Config, who string, wait time.Duration) func(context.Context, string) (func(), error) {
	return func(ctx context.Context, target string) (func(), error) {
		l, err := statelock.AcquireTarget(ctx, cfg.StateDir, target, who, wait)
		if err != nil {
			return nil, err
		}
		return func() { l.Release() }, nil
	}
}

// SaveAttribution stores what attributing jobs needs.
func SaveAttribution(ctx context.Context, st *store.Store, attr *accounting.Attributor, now time.Time) error {
	collabs, adminOf := attr.Tables()
	if err := st.SaveAttribution(ctx, &store.Attribution{Collaborations: collabs, AdminOf: adminOf}, now); err != nil {
		return fmt.Errorf("save attribution: %w", err)
	}
	return nil
}
