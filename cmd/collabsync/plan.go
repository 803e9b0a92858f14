package main

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/sync/engine"
)

func cmdPlan(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("plan", "[--format text|json] [--check]")
	format := fs.String("format", "text", "text or json")
	check := fs.Bool("check", false, "exit 3 when some target would change, 0 when none would (for monitoring and CI)")
	if !a.parseFlags(fs, args) {
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(a.stderr, "collabsync plan: bad --format %q\n", *format)
		return exitUsage
	}
	code, changes := a.reconcile(ctx, engine.Options{DryRun: true}, *format)
	if *check && code == exitOK && changes {
		return exitChanges
	}
	return code
}
