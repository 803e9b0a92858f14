package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/store"
)

// cmdViolations lists every broken rule. Exit 0: none; 1: some (warnings
// alone do not count), so cron and monitoring can act on it. With
// --stored it lists what the last run recorded, reading no directory and
// no secret.
func cmdViolations(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("violations", "[--stored] [--format table|json]")
	format := fs.String("format", "table", "table or json")
	stored := fs.Bool("stored", false, "list the violations the last run recorded, without reading the directory")
	if !a.parseFlags(fs, args) || !checkFormat(a, "violations", *format) {
		return exitUsage
	}
	var opts []config.Option
	if *stored {
		opts = append(opts, config.StoredStateOnly())
	}
	cfg, st, code := a.openState(ctx, opts...)
	if st == nil {
		return code
	}
	defer st.Close()
	var vs []directory.Violation
	var err error
	if *stored {
		vs, err = st.Violations(ctx)
	} else {
		vs, err = currentViolations(ctx, a, cfg, st)
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	if *format == "json" {
		if vs == nil {
			vs = []directory.Violation{} // [], never null
		}
		err = writeJSON(a.stdout, vs)
	} else {
		err = writeViolations(a.stdout, vs)
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	for _, v := range vs {
		if v.Severity == directory.SeverityError {
			return exitFailure
		}
	}
	return exitOK
}

// currentViolations reads the directory, applies the rules and records
// what they find.
func currentViolations(ctx context.Context, a *app, cfg *config.Config, st *store.Store) ([]directory.Violation, error) {
	state, err := wiring.ReadAndEvaluate(ctx, cfg, st, a.log)
	if err != nil {
		return nil, err
	}
	if err := st.RecordViolations(ctx, state.Violations, time.Now()); err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	return state.Violations, nil
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
