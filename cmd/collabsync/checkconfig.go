package main

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/ldapx"
)

// cmdCheckConfig validates the configuration; with --online it also binds
// to the directory and counts what each search matches.
func cmdCheckConfig(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("check-config", "[--online]")
	online := fs.Bool("online", false, "also connect to the directory and count the entries each search matches")
	if !a.parseFlags(fs, args) {
		return exitUsage
	}
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	if !*online {
		fmt.Fprintf(a.stdout, "%s: OK\n", a.configPath)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "%s: valid\n", a.configPath)
	counts, err := ldapx.NewSource(cfg.LDAP, a.log).Count(ctx)
	for _, s := range ldapx.StreamOrder() {
		if n, ok := counts[s]; ok {
			fmt.Fprintf(a.stdout, "%s: %d entries\n", s, n)
		}
	}
	if err != nil {
		a.errorf(err)
		fmt.Fprintf(a.stdout, "%s: FAILED against the directory\n", a.configPath)
		return exitFailure
	}
	fmt.Fprintf(a.stdout, "%s: OK against the directory\n", a.configPath)
	return exitOK
}
