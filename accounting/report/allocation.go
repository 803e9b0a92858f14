package report

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// Use is a collaboration's use of its allocation in the period holding a
// day: hours used there against hours allocated, and their ratio (0 when
// nothing of that resource is allocated).
type Use struct {
	Collaboration      string  `json:"collaboration"`
	PeriodStart        string  `json:"period_start"` // YYYY-MM-DD, inclusive
	PeriodEnd          string  `json:"period_end"`   // exclusive
	CoreHours          float64 `json:"core_hours"`
	AllocatedCoreHours int64   `json:"allocated_core_hours"`
	CoreUsed           float64 `json:"core_used_ratio"`
	GPUHours           float64 `json:"gpu_hours"`
	AllocatedGPUHours  int64   `json:"allocated_gpu_hours"`
	GPUUsed            float64 `json:"gpu_used_ratio"`
}

// Allocations compares each collaboration's allocation (as the last sync
// saved it) with its usage in the period holding at; only collaborations
// with an allocation, or the one asked for (an error naming the closest
// when it has none).
func Allocations(ctx context.Context, db *sql.DB, period accounting.Period, at time.Time, collaboration string) ([]Use, error) {
	allocs, err := accounting.LoadAllocations(ctx, db)
	if err != nil {
		return nil, err
	}
	if collaboration != "" {
		a, ok := allocs[collaboration]
		if !ok {
			names := make([]string, 0, len(allocs))
			for n := range allocs {
				names = append(names, n)
			}
			return nil, fmt.Errorf("collaboration %q has no allocation%s", collaboration, closest(collaboration, names))
		}
		allocs = accounting.Allocations{collaboration: a}
	}
	start, end := period.Bounds(at)
	used := map[string][2]int64{}
	rows, err := db.QueryContext(ctx, `SELECT collaboration, SUM(core_seconds), SUM(gpu_seconds) FROM usage_daily
		WHERE day >= ? AND day < ? GROUP BY collaboration`, start.Unix()/86400, end.Unix()/86400)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var cs, gs int64
		if err := rows.Scan(&name, &cs, &gs); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
		used[name] = [2]int64{cs, gs}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	out := make([]Use, 0, len(allocs))
	for name, a := range allocs {
		u := Use{Collaboration: name, PeriodStart: start.Format(time.DateOnly), PeriodEnd: end.Format(time.DateOnly),
			CoreHours: float64(used[name][0]) / 3600, AllocatedCoreHours: a.CoreHours,
			GPUHours: float64(used[name][1]) / 3600, AllocatedGPUHours: a.GPUHours}
		if a.CoreHours > 0 {
			u.CoreUsed = u.CoreHours / float64(a.CoreHours)
		}
		if a.GPUHours > 0 {
			u.GPUUsed = u.GPUHours / float64(a.GPUHours)
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Collaboration < out[j].Collaboration })
	return out, nil
}

// WriteAllocations prints uses as table, csv or json.
func WriteAllocations(w io.Writer, format string, uses []Use) error {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	pct := func(v float64, allocated int64) string {
		if allocated == 0 {
			return "-"
		}
		return strconv.FormatFloat(100*v, 'f', 1, 64) + "%"
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(uses)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"collaboration", "period_start", "period_end", "core_hours", "allocated_core_hours", "core_used_ratio",
			"gpu_hours", "allocated_gpu_hours", "gpu_used_ratio"})
		for _, u := range uses {
			cw.Write([]string{u.Collaboration, u.PeriodStart, u.PeriodEnd, f(u.CoreHours), strconv.FormatInt(u.AllocatedCoreHours, 10),
				strconv.FormatFloat(u.CoreUsed, 'f', 4, 64), f(u.GPUHours), strconv.FormatInt(u.AllocatedGPUHours, 10),
				strconv.FormatFloat(u.GPUUsed, 'f', 4, 64)})
		}
		cw.Flush()
		return cw.Error()
	case "table":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "COLLABORATION\tPERIOD\tCORE-HOURS\tALLOCATED\tUSED\tGPU-HOURS\tALLOCATED\tUSED\t")
		for _, u := range uses {
			fmt.Fprintf(tw, "%s\t%s–%s\t%s\t%d\t%s\t%s\t%d\t%s\t\n", u.Collaboration, u.PeriodStart, u.PeriodEnd,
				f(u.CoreHours), u.AllocatedCoreHours, pct(u.CoreUsed, u.AllocatedCoreHours),
				f(u.GPUHours), u.AllocatedGPUHours, pct(u.GPUUsed, u.AllocatedGPUHours))
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown format %q (want table, csv or json)", format)
}
