package main

import (
	"context"
	"fmt"
)

func cmdVersion(_ context.Context, a *app, args []string) int {
	if !a.parseFlags(a.newFlagSet("version", ""), args) {
		return exitUsage
	}
	fmt.Fprintln(a.stdout, "collabsync", version)
	return exitOK
}
