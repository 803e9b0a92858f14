package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"github.com/collabsync/collabsync/internal/config"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/nss"
)

// policy turns the configured rules into the directory's Policy.
func policy(cfg *config.Config, now time.Time) directory.Policy {
	r := cfg.Rules
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
	}
}

func openStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.Open(ctx, filepath.Join(cfg.StateDir, "collabsync.db"))
}

// newEngine wires the configured source, rules and targets.
func newEngine(cfg *config.Config, a *app, prev directory.Previous) *engine.Engine {
	pol := policy(cfg, time.Now())
	e := &engine.Engine{
		Source:   ldapx.NewSource(cfg.LDAP, a.log),
		Evaluate: func(s *directory.Snapshot) *directory.State { return directory.Evaluate(s, pol, prev) },
		Log:      a.log,
	}
	if n := cfg.Targets.NSS; n != nil {
		e.Targets = append(e.Targets, engine.GuardedTarget{
			Target: &nss.Target{Dir: n.Dir},
			Guard:  guard(n.Guard),
		})
	}
	return e
}

func guard(g config.Guard) engine.Guard {
	return engine.Guard{MaxDeleteRatio: g.MaxDeleteRatio, MinDeletes: g.MinDeletes}
}

func cmdPlan(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("plan", "[--format text|json]")
	format := fs.String("format", "text", "text or json")
	if !parseFlags(fs, args) {
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(a.stderr, "collabsync plan: bad --format %q\n", *format)
		return exitUsage
	}
	return a.reconcile(ctx, engine.Options{DryRun: true}, *format)
}

func cmdSync(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("sync", "--once [--dry-run] [--allow-deletions]")
	once := fs.Bool("once", false, "run one reconcile and exit (the daemon is 'collabsync serve')")
	dryRun := fs.Bool("dry-run", false, "print the plan, write nothing")
	allow := fs.Bool("allow-deletions", false, "approve deletions beyond each target's guard ratio")
	if !parseFlags(fs, args) {
		return exitUsage
	}
	if !*once {
		fmt.Fprintln(a.stderr, "collabsync sync: only --once is supported; run 'collabsync serve' for the daemon")
		return exitUsage
	}
	return a.reconcile(ctx, engine.Options{DryRun: *dryRun, AllowDeletions: *allow}, "text")
}

// reconcile runs the engine once and prints the plans and a summary of the
// violations. Only a run that writes records the rule history.
func (a *app) reconcile(ctx context.Context, opts engine.Options, format string) int {
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	defer st.Close()
	prev, err := st.Statuses(ctx)
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	state, results, err := newEngine(cfg, a, prev).Run(ctx, opts)
	if state != nil {
		now := time.Now()
		var serr error
		if opts.DryRun {
			serr = st.ViolationsSince(ctx, state.Violations, now)
		} else {
			serr = st.RecordViolations(ctx, state.Violations, now)
			// History moves on only when every target took the state.
			if serr == nil && err == nil {
				serr = st.SaveStatuses(ctx, state.Statuses(), now)
			}
		}
		if serr != nil {
			a.errorf(fmt.Errorf("state store: %w", serr))
			return exitFailure
		}
		summarizeViolations(a, state.Violations)
	}
	plans := make([]*engine.Plan, 0, len(results))
	for _, r := range results {
		if r.Plan != nil {
			plans = append(plans, r.Plan)
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
		return exitFailure
	}
	return exitOK
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
