package accounting

import "time"

// Period is the span a collaboration's allocation is for.
type Period string

// Allocation periods, in UTC.
const (
	PeriodYear    Period = "year"
	PeriodQuarter Period = "quarter"
	PeriodMonth   Period = "month"
)

// Periods lists every period.
func Periods() []Period { return []Period{PeriodYear, PeriodQuarter, PeriodMonth} }

// Months is how many months the period spans.
func (p Period) Months() int {
	switch p {
	case PeriodMonth:
		return 1
	case PeriodQuarter:
		return 3
	}
	return 12
}

// Bounds is the period holding t: from its first day, inclusive, to the
// first day of the next, exclusive.
func (p Period) Bounds(t time.Time) (start, end time.Time) {
	t = t.UTC()
	switch p {
	case PeriodMonth:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	case PeriodQuarter:
		start = time.Date(t.Year(), (t.Month()-1)/3*3+1, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 3, 0)
	default:
		start = time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(1, 0, 0)
	}
}
