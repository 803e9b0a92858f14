package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/reconcile"
)

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
	// Locked before the directory is read: a run that waited reads what is
	// newer than what the run before it applied.
	st, done, ok := a.openStateFor(ctx, cfg, "sync", !opts.DryRun)
	if !ok {
		return exitFailure
	}
	defer done()
	var err error
	if opts.Approved, err = st.Approvals(ctx); err != nil {
		a.errorf(fmt.Errorf("state store: %w", err))
		return exitFailure
	}
	state, results, err := reconcile.NewEngine(cfg, a.log, st).Run(ctx, opts)
	if state != nil {
		if serr := reconcile.RecordHistory(ctx, st, state, results, err, opts.DryRun); serr != nil {
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

func cmdApprove(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("approve", "<target> <digest>")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return exitUsage
	}
	target, digest := fs.Arg(0), fs.Arg(1)
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	if !slices.Contains(reconcile.TargetNames(cfg), target) {
		fmt.Fprintf(a.stderr, "collabsync approve: no target %q in %s (targets: %s)\n", target, a.configPath, strings.Join(reconcile.TargetNames(cfg), ", "))
		return exitUsage
	}
	st, done, ok := a.openStateFor(ctx, cfg, "approve", true)
	if !ok {
		return exitFailure
	}
	defer done()
	held, err := st.HeldPlan(ctx, target)
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	switch {
	case held != nil && held.Digest != digest:
		fmt.Fprintf(a.stderr, "collabsync approve: the plan held for %s is %s (since %s: %s), not %s; nothing approved\n",
			target, held.Digest, held.Since.Format(time.DateTime), held.Reason, digest)
		return exitFailure
	case held == nil:
		fmt.Fprintf(a.stdout, "no plan of %s is held right now; approving plan %s: a run whose plan for %s is exactly it applies it\n", target, digest, target)
	default:
		fmt.Fprintf(a.stdout, "approved plan %s of %s (%s); serve applies it within seconds, or run 'collabsync sync --once'\n", digest, target, held.Reason)
	}
	if err := st.Approve(ctx, target, digest, time.Now()); err != nil {
		a.errorf(err)
		return exitFailure
	}
	a.log.Info("plan approved", "target", target, "digest", digest)
	return exitOK
}
