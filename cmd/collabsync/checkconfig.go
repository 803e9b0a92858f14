package main

import (
	"context"
	"fmt"
)

func cmdCheckConfig(_ context.Context, a *app, args []string) int {
	if !parseFlags(a.newFlagSet("check-config", ""), args) {
		return exitUsage
	}
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	fmt.Fprintf(a.stdout, "%s: OK\n", a.configPath)
	return exitOK
}
