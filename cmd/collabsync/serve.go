package main

import (
	"context"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/daemon"
)

func cmdServe(ctx context.Context, a *app, args []string) int {
	if !a.parseFlags(a.newFlagSet("serve", ""), args) {
		return exitUsage
	}
	cfg, st, code := a.openState(ctx)
	if st == nil {
		return code
	}
	defer st.Close()
	if err := daemon.Run(ctx, daemon.Options{ConfigPath: a.configPath, LoadConfig: func(path string) (*config.Config, error) { return loadConfig(path) }, Config: cfg, Store: st, Log: a.log, Version: version}); err != nil {
		a.errorf(err)
		return exitFailure
	}
	return exitOK
}
