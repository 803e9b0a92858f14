package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/report"
	"github.com/collabsync/collabsync/app/config"
)

func cmdReport(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("report", "[--by collaboration|user|month|cluster[,another]] [--collaboration X] [--user U] [--since DAY] [--until DAY] [--format table|csv|json|svg|png] | --allocations [--collaboration X] [--at DAY]")
	by := fs.String("by", report.ByCollaboration, "collaboration, user, month or cluster, or two of them (user,month)")
	collab := fs.String("collaboration", "", "only this collaboration (a reporting contact's view: --by user --collaboration X)")
	user := fs.String("user", "", "only this user's jobs")
	since := fs.String("since", "", "from this day (YYYY-MM-DD or YYYY-MM), inclusive")
	until := fs.String("until", "", "to this day (YYYY-MM-DD or YYYY-MM), exclusive")
	format := fs.String("format", "table", "table, csv or json; svg or png: a chart of a collaboration's monthly core-hours by member (needs --collaboration)")
	allocations := fs.Bool("allocations", false, "each collaboration's use of its allocation in the current period (accounting.allocation_period)")
	at := fs.String("at", "", "with --allocations: the period holding this day (YYYY-MM-DD or YYYY-MM) instead of today's")
	if !a.parseFlags(fs, args) {
		return exitUsage
	}
	if *allocations {
		return reportAllocations(ctx, a, *collab, *at, *format)
	}
	q := report.Query{By: *by, Collaboration: *collab, User: *user}
	dims, err := report.Groupings(*by)
	if err == nil {
		q.Since, err = parseDay(*since)
	}
	if err == nil {
		q.Until, err = parseDay(*until)
	}
	if err != nil {
		fmt.Fprintln(a.stderr, "collabsync report:", err)
		return exitUsage
	}
	chart := *format == "svg" || *format == "png"
	if chart {
		if *collab == "" {
			fmt.Fprintln(a.stderr, "collabsync report: a chart is of one collaboration: give --collaboration")
			return exitUsage
		}
		q.By, dims = report.ByMonth+","+report.ByUser, []string{report.ByMonth, report.ByUser}
	}
	switch *format {
	case "table", "csv", "json", "svg", "png":
	default:
		fmt.Fprintf(a.stderr, "collabsync report: bad --format %q\n", *format)
		return exitUsage
	}
	cfg, st, code := a.openState(ctx, config.StoredStateOnly())
	if st == nil {
		return code
	}
	defer st.Close()
	rows, err := report.Run(ctx, st.DB, q)
	if err != nil {
		fmt.Fprintln(a.stderr, "collabsync report:", err)
		return exitUsage
	}
	if chart {
		allocs, err := accounting.LoadAllocations(ctx, st.DB)
		if err != nil {
			a.errorf(err)
			return exitFailure
		}
		perMonth := float64(allocs[*collab].CoreHours) / float64(cfg.Accounting.AllocationPeriod.Months())
		if err := report.Chart(a.stdout, *format, *collab, rows, perMonth); err != nil {
			a.errorf(err)
			return exitFailure
		}
		return exitOK
	}
	names := make([]string, len(dims))
	for i, d := range dims {
		names[i] = strings.ToUpper(d)
	}
	if err := report.Write(a.stdout, *format, names, rows); err != nil {
		a.errorf(err)
		return exitFailure
	}
	return exitOK
}

// parseDay reads YYYY-MM-DD or YYYY-MM (the first of the month).
func parseDay(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither YYYY-MM-DD nor YYYY-MM", s)
}

// reportAllocations prints the collaborations' use of their allocations.
func reportAllocations(ctx context.Context, a *app, collab, at, format string) int {
	day, err := parseDay(at)
	if err == nil && format != "table" && format != "csv" && format != "json" {
		err = fmt.Errorf("--allocations: bad --format %q (want table, csv or json)", format)
	}
	if err != nil {
		fmt.Fprintln(a.stderr, "collabsync report:", err)
		return exitUsage
	}
	if day.IsZero() {
		day = time.Now()
	}
	cfg, st, code := a.openState(ctx, config.StoredStateOnly())
	if st == nil {
		return code
	}
	defer st.Close()
	uses, err := report.Allocations(ctx, st.DB, cfg.Accounting.AllocationPeriod, day, collab)
	if err != nil {
		fmt.Fprintln(a.stderr, "collabsync report:", err)
		return exitUsage
	}
	if err := report.WriteAllocations(a.stdout, format, uses); err != nil {
		a.errorf(err)
		return exitFailure
	}
	return exitOK
}
