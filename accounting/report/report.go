// Package report sums stored usage: core-hours, GPU-hours and jobs, by collaboration,
// user, month or cluster, or by two of them (user and month: a reporting
// contact's table), with a breakdown by job state. It reads the per-day
// totals kept at ingest, never the jobs themselves.
package report

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/collabsync/collabsync/internal/textdist"
)

// Groupings.
const (
	ByCollaboration = "collaboration"
	ByUser          = "user"
	ByMonth         = "month"
	ByCluster       = "cluster"
)

// Query selects what to sum.
type Query struct {
	// By is a grouping, or two separated by a comma ("user,month").
	By            string
	Collaboration string    // only this collaboration (a reporting contact's view)
	User          string    // only this user's jobs
	Since, Until  time.Time // days [Since, Until); zero is open
}

// Row is one group's usage. Keys holds the group's value of each grouping
// asked for, Key the same joined by "/".
type Row struct {
	Key       string           `json:"key"`
	Keys      []string         `json:"keys"`
	Jobs      int64            `json:"jobs"`
	CoreHours float64          `json:"core_hours"`
	GPUHours  float64          `json:"gpu_hours"`
	ByState   map[string]int64 `json:"jobs_by_state"`
}

var groupExpr = map[string]string{
	ByCollaboration: "collaboration",
	ByUser:          "user",
	ByCluster:       "cluster",
	ByMonth:         "strftime('%Y-%m', day * 86400, 'unixepoch')",
}

// Groupings splits a grouping or two ("user,month"), refusing an unknown
// one, the same one twice, or more than two.
func Groupings(by string) ([]string, error) {
	dims := strings.Split(by, ",")
	if len(dims) > 2 {
		return nil, fmt.Errorf("%q: at most two groupings", by)
	}
	for i, d := range dims {
		if _, ok := groupExpr[d]; !ok {
			return nil, fmt.Errorf("unknown grouping %q (want collaboration, user, month or cluster, or two of them: user,month)", d)
		}
		if i > 0 && d == dims[0] {
			return nil, fmt.Errorf("%q: the same grouping twice", by)
		}
	}
	return dims, nil
}

// Run sums usage as asked; rows come sorted by their keys.
func Run(ctx context.Context, db *sql.DB, q Query) ([]Row, error) {
	dims, err := Groupings(q.By)
	if err != nil {
		return nil, err
	}
	exprs := make([]string, len(dims))
	for i, d := range dims {
		exprs[i] = groupExpr[d]
	}
	since, until := int64(0), int64(1)<<40
	if !q.Since.IsZero() {
		since = q.Since.Unix() / 86400
	}
	if !q.Until.IsZero() {
		until = q.Until.Unix() / 86400
	}
	if q.Collaboration != "" {
		if err := known(ctx, db, "collaboration", q.Collaboration); err != nil {
			return nil, err
		}
	}
	if q.User != "" {
		if err := known(ctx, db, "user", q.User); err != nil {
			return nil, err
		}
	}
	sqlText := "SELECT " + strings.Join(exprs, " || char(31) || ") + ", state, SUM(jobs), SUM(core_seconds), SUM(gpu_seconds) FROM usage_daily WHERE day >= ? AND day < ?"
	args := []any{since, until}
	if q.Collaboration != "" {
		sqlText += " AND collaboration = ?"
		args = append(args, q.Collaboration)
	}
	if q.User != "" {
		sqlText += " AND user = ?"
		args = append(args, q.User)
	}
	sqlText += " GROUP BY 1, 2"
	rows, err := db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byKey := map[string]*Row{}
	for rows.Next() {
		var key, state string
		var jobs, cs, gs int64
		if err := rows.Scan(&key, &state, &jobs, &cs, &gs); err != nil {
			return nil, err
		}
		r := byKey[key]
		if r == nil {
			keys := strings.Split(key, "\x1f")
			r = &Row{Key: strings.Join(keys, "/"), Keys: keys, ByState: map[string]int64{}}
			byKey[key] = r
		}
		r.Jobs += jobs
		r.CoreHours += float64(cs) / 3600
		r.GPUHours += float64(gs) / 3600
		r.ByState[state] += jobs
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Row, 0, len(byKey))
	for _, r := range byKey {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return slices.Compare(out[i].Keys, out[j].Keys) < 0 })
	return out, nil
}

// known refuses a collaboration or user (column, "collaboration" or
// "user": never data) no usage was ever
// recorded for (a typo made an empty table that looked like an idle
// collaboration), naming the closest known names.
func known(ctx context.Context, db *sql.DB, column, name string) error {
	var one int
	err := db.QueryRowContext(ctx, "SELECT 1 FROM usage_daily WHERE "+column+" = ? LIMIT 1", name).Scan(&one)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	rows, err := db.QueryContext(ctx, "SELECT DISTINCT "+column+" FROM usage_daily")
	if err != nil {
		return err
	}
	defer rows.Close()
	var all []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return err
		}
		all = append(all, c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no usage was ever recorded for %s %q%s", column, name, closest(name, all))
}

// closest is " (did you mean ...?)" naming the names within two edits of
// name (case aside), or nothing.
func closest(name string, names []string) string {
	var near []string
	for _, c := range names {
		if d := textdist.Levenshtein(strings.ToLower(c), strings.ToLower(name)); d <= 2 {
			near = append(near, c)
		}
	}
	if len(near) == 0 {
		return ""
	}
	slices.Sort(near)
	return fmt.Sprintf(" (did you mean %s?)", strings.Join(near, ", "))
}

// states lists the states present, the common ones first.
func states(rows []Row) []string {
	seen := map[string]bool{}
	for _, r := range rows {
		for s := range r.ByState {
			seen[s] = true
		}
	}
	var out []string
	for _, s := range []string{"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"} {
		if seen[s] {
			out = append(out, s)
			delete(seen, s)
		}
	}
	var rest []string
	for s := range seen {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// Write prints rows as table, csv or json, with a total line (table);
// keyNames head the key columns, one per grouping. The table and the CSV
// have a GPU-hours column when some job held GPUs.
func Write(w io.Writer, format string, keyNames []string, rows []Row) error {
	st := states(rows)
	gpus := slices.ContainsFunc(rows, func(r Row) bool { return r.GPUHours > 0 })
	hours := func(r Row) []string {
		out := []string{strconv.FormatFloat(r.CoreHours, 'f', 2, 64)}
		if gpus {
			out = append(out, strconv.FormatFloat(r.GPUHours, 'f', 2, 64))
		}
		return out
	}
	hourNames := []string{"core_hours"}
	if gpus {
		hourNames = append(hourNames, "gpu_hours")
	}
	switch format {
	case "json":
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "csv":
		cw := csv.NewWriter(w)
		header := append(append(append(slices.Clone(keyNames), "jobs"), hourNames...), st...)
		cw.Write(header)
		for _, r := range rows {
			rec := append(append(slices.Clone(r.Keys), strconv.FormatInt(r.Jobs, 10)), hours(r)...)
			for _, s := range st {
				rec = append(rec, strconv.FormatInt(r.ByState[s], 10))
			}
			cw.Write(rec)
		}
		cw.Flush()
		return cw.Error()
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "%s\tJOBS\t%s\t", strings.Join(keyNames, "\t"), strings.ReplaceAll(strings.ToUpper(strings.Join(hourNames, "\t")), "_", "-"))
		for _, s := range st {
			fmt.Fprintf(tw, "%s\t", s)
		}
		fmt.Fprintln(tw)
		total := Row{ByState: map[string]int64{}}
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%s\t", strings.Join(r.Keys, "\t"), r.Jobs, strings.Join(hours(r), "\t"))
			for _, s := range st {
				fmt.Fprintf(tw, "%d\t", r.ByState[s])
				total.ByState[s] += r.ByState[s]
			}
			fmt.Fprintln(tw)
			total.Jobs += r.Jobs
			total.CoreHours += r.CoreHours
			total.GPUHours += r.GPUHours
		}
		fmt.Fprintf(tw, "total\t%s%d\t%s\t", strings.Repeat("\t", len(keyNames)-1), total.Jobs, strings.Join(hours(total), "\t"))
		for _, s := range st {
			fmt.Fprintf(tw, "%d\t", total.ByState[s])
		}
		fmt.Fprintln(tw)
		return tw.Flush()
	}
	return fmt.Errorf("unknown format %q (want table, csv or json)", format)
}
