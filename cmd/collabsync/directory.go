package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/reconcile"
)

func checkFormat(a *app, cmd, format string) bool {
	if format != "table" && format != "json" {
		fmt.Fprintf(a.stderr, "collabsync %s: bad --format %q (want table or json)\n", cmd, format)
		return false
	}
	return true
}

// cmdViolations lists every broken rule. Exit 0: none; 1: some (warnings
// alone do not count), so cron and monitoring can act on it.
func cmdViolations(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("violations", "[--format table|json]")
	format := fs.String("format", "table", "table or json")
	if !parseFlags(fs, args) || !checkFormat(a, "violations", *format) {
		return exitUsage
	}
	cfg, st, code := a.openState(ctx)
	if st == nil {
		return code
	}
	defer st.Close()
	state, err := reconcile.ReadAndEvaluate(ctx, cfg, st, a.log)
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	if err := st.RecordViolations(ctx, state.Violations, time.Now()); err != nil {
		a.errorf(fmt.Errorf("state store: %w", err))
		return exitFailure
	}
	if *format == "json" {
		err = writeJSON(a.stdout, state.Violations)
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

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// contactJSON is one contact in `contacts --format json`.
type contactJSON struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
	Mail string `json:"mail"`
}

// cmdContacts prints a collaboration's contacts of one role, like the
// centre's laboinfo command.
func cmdContacts(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("contacts", "-g <collaboration> -p <"+roleNames("|")+"> [--format table|json]")
	group := fs.String("g", "", "collaboration name")
	role := fs.String("p", string(directory.RoleCollaboration), "contact role: "+roleNames(", "))
	format := fs.String("format", "table", "table or json")
	if !parseFlags(fs, args) || !checkFormat(a, "contacts", *format) {
		return exitUsage
	}
	if *group == "" {
		fmt.Fprintln(a.stderr, "collabsync contacts: -g <collaboration> is required")
		return exitUsage
	}
	if !slices.Contains(directory.Roles(), directory.Role(*role)) {
		fmt.Fprintf(a.stderr, "collabsync contacts: unknown role %q (want %s)\n", *role, roleNames(", "))
		return exitUsage
	}
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	contacts, err := ldapx.NewSource(cfg.LDAP, a.log).Contacts(ctx, *group)
	if errors.Is(err, ldapx.ErrNotFound) {
		fmt.Fprintf(a.stderr, "collabsync contacts: no collaboration %q\n", *group)
		return exitFailure
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	users := contacts[directory.Role(*role)]
	if *format == "json" {
		out := make([]contactJSON, 0, len(users))
		for _, u := range users {
			out = append(out, contactJSON{UID: u.UID, Name: u.Name, Mail: u.Mail})
		}
		err = writeJSON(a.stdout, out)
	} else if len(users) == 0 {
		_, err = fmt.Fprintf(a.stdout, "%s has no %s contact\n", *group, *role)
	} else {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UID\tNAME\tMAIL")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.UID, u.Name, u.Mail)
		}
		err = tw.Flush()
	}
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	return exitOK
}

// roleNames lists the contact roles for usage messages.
func roleNames(sep string) string {
	var names []string
	for _, r := range directory.Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, sep)
}
