package main

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/internal/config"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/nss"
)

// newEngine wires the configured source and targets.
func newEngine(cfg *config.Config, a *app) *engine.Engine {
	e := &engine.Engine{Source: ldapx.NewSource(cfg.LDAP, a.log), Log: a.log}
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

// reconcile runs the engine once and prints the plans and directory problems.
func (a *app) reconcile(ctx context.Context, opts engine.Options, format string) int {
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	snap, results, err := newEngine(cfg, a).Run(ctx, opts)
	if snap != nil {
		printProblems(a, snap)
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

func printProblems(a *app, snap *directory.Snapshot) {
	if len(snap.Problems) == 0 {
		return
	}
	fmt.Fprintf(a.stderr, "directory: %d entries left out:\n", len(snap.Problems))
	for _, p := range snap.Problems {
		fmt.Fprintf(a.stderr, "  %s\n", p)
	}
}
