package main

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/ldapx/lease"
	"github.com/collabsync/collabsync/sync/engine"
)

func cmdSync(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("sync", "--once [--dry-run] [--allow-deletions]")
	once := fs.Bool("once", false, "run one reconcile and exit (the daemon is 'collabsync serve')")
	dryRun := fs.Bool("dry-run", false, "print the plan, write nothing")
	allow := fs.Bool("allow-deletions", false, "approve deletions beyond each target's guard ratio")
	if !a.parseFlags(fs, args) {
		return exitUsage
	}
	if !*once {
		fmt.Fprintln(a.stderr, "collabsync sync: only --once is supported; run 'collabsync serve' for the daemon")
		return exitUsage
	}
	if !*dryRun && !a.mayApply(ctx) {
		return exitFailure
	}
	code, _ := a.reconcile(ctx, engine.Options{DryRun: *dryRun, AllowDeletions: *allow}, "text")
	return code
}

// mayApply says whether this host may apply when it is one of an HA
// pair: not while the other host's serve holds the lease (its next run
// would undo or redo what this one writes), nor when the lease cannot be
// read (who leads is unknown).
func (a *app) mayApply(ctx context.Context) bool {
	cfg := a.loadConfig()
	if cfg == nil || cfg.HA == nil {
		return true
	}
	ha := cfg.HA
	holder, gen, held, err := lease.Holder(ctx, lease.Config{Server: ha.Settings, DN: ha.LeaseDN, Holder: ha.Holder})
	switch {
	case err != nil:
		a.errorf(fmt.Errorf("ha: cannot tell which host of the pair leads, so nothing is applied (--dry-run plans): %w", err))
		return false
	case held && holder != ha.Holder:
		a.errorf(fmt.Errorf("ha: %s leads this pair (lease %s, generation %d): apply from there, or stop its serve first; --dry-run plans from here", holder, ha.LeaseDN, gen))
		return false
	}
	return true
}

// reconcile runs the engine once and prints the plans and a summary of the
// violations; changes says whether any plan has a change. Only a run that
// writes records the rule history.
func (a *app) reconcile(ctx context.Context, opts engine.Options, format string) (code int, changes bool) {
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage, false
	}
	// Locked before the directory is read: a run that waited reads what is
	// newer than what the run before it applied.
	st, done, ok := a.openStateFor(ctx, cfg, "sync", !opts.DryRun)
	if !ok {
		return exitFailure, false
	}
	defer done()
	// A dry run reads no history: its peak is not a run's that saves.
	memory := "reconcile"
	if opts.DryRun {
		memory = "plan"
	}
	defer wiring.OneShotMemory(ctx, cfg, st, a.log, memory)(ctx)
	var err error
	if opts.Approved, err = st.Approvals(ctx); err != nil {
		a.errorf(fmt.Errorf("state store: %w", err))
		return exitFailure, false
	}
	eng := wiring.NewEngine(cfg, a.log, st, ldapx.NewSource(cfg.LDAP, a.log), nil)
	if opts.DryRun {
		// It saves no statuses: the rules look up the few they need.
		// Its violations are only counted (summarizeViolations): their
		// first-seen dates are not read (100k stored rows at 1M users
		// took a core from the rules).
		eng.Evaluate = wiring.DryRunRules(cfg, st).Evaluate
	} else {
		// The rules' history is read beside the directory.
		defer wiring.ReadHistoryAhead(ctx, st, a.log)()
	}
	// serve runs each target on its own: a target it is applying is
	// waited for, the others are not.
	eng.TargetLock = wiring.TargetLock(cfg, "collabsync sync", a.lockWait)
	state, results, err := eng.Run(ctx, opts)
	if state != nil {
		if serr := wiring.RecordHistory(ctx, st, state, results, err, opts.DryRun); serr != nil {
			a.errorf(fmt.Errorf("state store: %w", serr))
			return exitFailure, false
		}
		summarizeViolations(a, state.Violations)
	}
	plans := make([]*engine.Plan, 0, len(results))
	for _, r := range results {
		if r.Plan != nil {
			plans = append(plans, r.Plan)
			changes = changes || len(r.Plan.Changes) > 0
		}
	}
	write := engine.WriteText
	if format == "json" {
		write = engine.WriteJSON
	}
	if werr := write(a.stdout, plans); err == nil {
		err = werr
	}
	if err != nil {
		a.errorf(err)
		return exitFailure, changes
	}
	return exitOK, changes
}

func summarizeViolations(a *app, vs []directory.Violation) {
	if len(vs) == 0 {
		return
	}
	errs := 0
	for _, v := range vs {
		if v.Severity == directory.SeverityError {
			errs++
		}
	}
	fmt.Fprintf(a.stderr, "directory: %d violation(s), %d warning(s); 'collabsync violations' lists them\n", errs, len(vs)-errs)
}
