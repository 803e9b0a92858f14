package main

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/sync/engine"
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
