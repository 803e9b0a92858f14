package main

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/internal/buildinfo"
)

func cmdVersion(_ context.Context, a *app, args []string) int {
	if !a.parseFlags(a.newFlagSet("version", ""), args) {
		return exitUsage
	}
	fmt.Fprintln(a.stdout, "collabsync", buildinfo.Read(version))
	return exitOK
}
