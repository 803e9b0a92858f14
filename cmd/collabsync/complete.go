package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/store"
)

// cmdComplete prints names for the shell completion (not in the usage):
// targets and accounting sources from the configuration, collaborations
// from the stored rule history (read only: no directory, no password).
// It prints nothing rather than an error.
func cmdComplete(ctx context.Context, a *app, args []string) int {
	if len(args) != 1 {
		return exitUsage
	}
	cfg := a.quietConfig()
	if cfg == nil {
		return exitOK
	}
	var names []string
	switch args[0] {
	case "targets":
		names = wiring.TargetNames(cfg)
	case "sources":
		for _, s := range cfg.Accounting.Sources {
			names = append(names, s.Name)
		}
	case "collaborations":
		names, _ = store.Names(ctx, filepath.Join(cfg.StateDir, "collabsync.db"), directory.SubjectCollaboration)
	default:
		return exitUsage
	}
	for _, n := range names {
		fmt.Fprintln(a.stdout, n)
	}
	return exitOK
}
