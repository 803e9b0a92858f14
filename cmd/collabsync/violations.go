package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
)

// cmdViolations lists every broken rule. Exit 0: none; 1: some (warnings
// alone do not count), so cron and monitoring can act on it.
func cmdViolations(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("violations", "[--format table|json]")
	format := fs.String("format", "table", "table or json")
	if !a.parseFlags(fs, args) || !checkFormat(a, "violations", *format) {
		return exitUsage
	}
	cfg, st, code := a.openState(ctx)
	if st == nil {
		return code
	}
	defer st.Close()
	state, err := wiring.ReadAndEvaluate(ctx, cfg, st, a.log)
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	if err := st.RecordViolations(ctx, state.Violations, time.Now()); err != nil {
		a.errorf(fmt.Errorf("state store: %w", err))
		return exitFailure
	}
	if *format == "json" {
		vs := state.Violations
		if vs == nil {
			vs = []directory.Violation{} // [], never null
		}
		err = writeJSON(a.stdout, vs)
	} else {
		err = writeViolations(a.stdout, state.Violations)
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	for _, v := range state.Violations {
		if v.Severity == directory.SeverityError {
			return exitFailure
		}
	}
	return exitOK
}

func writeViolations(w io.Writer, vs []directory.Violation) error {
	if len(vs) == 0 {
		_, err := fmt.Fprintln(w, "no violations")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSEVERITY\tNAME\tSINCE\tACTION\tSUBJECT\tREASON")
	for _, v := range vs {
		name := v.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Kind, v.Severity, name, v.Since.Format(time.DateOnly), v.Action, v.Subject, v.Reason)
	}
	return tw.Flush()
}

func checkFormat(a *app, cmd, format string) bool {
	if format != "table" && format != "json" {
		fmt.Fprintf(a.stderr, "collabsync %s: bad --format %q (want table or json)\n", cmd, format)
		return false
	}
	return true
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
