package wiring

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/report"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/sync/notices"
)

// reportsTeller is a target that sends the monthly usage reports
// (notices).
type reportsTeller interface{ SetReports(notices.Reports) }

// monthlyReports are the collaborations' monthly usage reports from the
// state store, as report --by user and report --format png make them.
type monthlyReports struct {
	st     *store.Store
	period accounting.Period
}

var _ notices.Reports = monthlyReports{}

func monthBounds(month string) (time.Time, time.Time, error) {
	start, err := time.Parse("2006-01", month)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("month %q: %w", month, err)
	}
	return start, start.AddDate(0, 1, 0), nil
}

// Used implements notices.Reports.
func (r monthlyReports) Used(ctx context.Context, month string) ([]string, error) {
	since, until, err := monthBounds(month)
	if err != nil {
		return nil, err
	}
	rows, err := report.Run(ctx, r.st.DB, report.Query{By: report.ByCollaboration, Since: since, Until: until})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, row := range rows {
		if row.Jobs > 0 {
			out = append(out, row.Key)
		}
	}
	return out, nil
}

// Files implements notices.Reports: the month by member as CSV, and the
// chart of the twelve months up to it against the allocation as PNG.
func (r monthlyReports) Files(ctx context.Context, collaboration, month string) ([]notices.File, error) {
	since, until, err := monthBounds(month)
	if err != nil {
		return nil, err
	}
	rows, err := report.Run(ctx, r.st.DB, report.Query{By: report.ByUser, Collaboration: collaboration, Since: since, Until: until})
	if err != nil {
		return nil, err
	}
	var table bytes.Buffer
	if err := report.Write(&table, "csv", []string{"USER"}, rows); err != nil {
		return nil, err
	}
	rows, err = report.Run(ctx, r.st.DB, report.Query{By: report.ByMonth + "," + report.ByUser, Collaboration: collaboration,
		Since: until.AddDate(-1, 0, 0), Until: until})
	if err != nil {
		return nil, err
	}
	allocs, err := accounting.LoadAllocations(ctx, r.st.DB)
	if err != nil {
		return nil, err
	}
	var chart bytes.Buffer
	perMonth := float64(allocs[collaboration].CoreHours) / float64(r.period.Months())
	if err := report.Chart(&chart, "png", collaboration, rows, perMonth); err != nil {
		return nil, err
	}
	name := collaboration + "-" + month
	return []notices.File{
		{Name: name + ".csv", ContentType: "text/csv", Data: table.Bytes()},
		{Name: name + ".png", ContentType: "image/png", Data: chart.Bytes()},
	}, nil
}
