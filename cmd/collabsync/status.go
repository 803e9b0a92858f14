package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/maintenance"
)

// targetWindows is one target's maintenance as status prints it.
type targetWindows struct {
	Target  string              `json:"target"`
	Kind    string              `json:"kind"`
	Current *maintenance.Window `json:"current,omitempty"`
	Next    *maintenance.Window `json:"next,omitempty"`
	Error   string              `json:"error,omitempty"`
}

func cmdStatus(_ context.Context, a *app, args []string) int {
	fs := a.newFlagSet("status", "[--format table|json]")
	format := fs.String("format", "table", "table or json")
	if !a.parseFlags(fs, args) {
		return exitUsage
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(a.stderr, "collabsync status: bad --format %q\n", *format)
		return exitUsage
	}
	cfg := a.loadConfig(config.StoredStateOnly())
	if cfg == nil {
		return exitUsage
	}
	now := time.Now()
	schedules := wiring.Schedules(cfg)
	rows := make([]targetWindows, 0, len(cfg.Targets))
	code := exitOK
	for _, t := range cfg.Targets {
		row := targetWindows{Target: t.Name, Kind: t.Kind.Name}
		if sched := schedules[t.Name]; sched != nil {
			var err error
			if row.Current, row.Next, err = sched.At(now); err != nil {
				row.Error, code = err.Error(), exitFailure
			}
		}
		rows = append(rows, row)
	}
	if *format == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rows)
		return code
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tKIND\tMAINTENANCE NOW\tNEXT WINDOW")
	window := func(win *maintenance.Window, none string) string {
		if win == nil {
			return none
		}
		return fmt.Sprintf("%s %s → %s", wiring.WindowName(win), win.Start.UTC().Format(time.RFC3339), win.End.UTC().Format(time.RFC3339))
	}
	for _, r := range rows {
		now, next := window(r.Current, "-"), window(r.Next, "-")
		if r.Error != "" {
			now, next = "error: "+r.Error, ""
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Target, r.Kind, now, next)
	}
	w.Flush()
	return code
}
