package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
)

func cmdApprove(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("approve", "<target> <digest>")
	fs.SetOutput(io.Discard) // Parse's own messages: said below
	err := fs.Parse(args)
	fs.SetOutput(a.stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		a.helped = true
		fs.SetOutput(a.stdout)
		fs.Usage()
		return exitOK
	case err != nil:
		fmt.Fprintln(a.stderr, err)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return exitUsage
	}
	target, digest := fs.Arg(0), fs.Arg(1)
	cfg := a.loadConfig(config.StoredStateOnly())
	if cfg == nil {
		return exitUsage
	}
	if !slices.Contains(wiring.TargetNames(cfg), target) {
		fmt.Fprintf(a.stderr, "collabsync approve: no target %q in %s (targets: %s)\n", target, a.configPath, strings.Join(wiring.TargetNames(cfg), ", "))
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
