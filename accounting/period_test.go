package accounting

import (
	"testing"
	"time"
)

func TestPeriodBounds(t *testing.T) {
	at := time.Date(2026, 12, 5, 13, 0, 0, 0, time.FixedZone("CET", 3600))
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	for _, tt := range []struct {
		p          Period
		at         time.Time
		start, end time.Time
	}{
		{PeriodYear, at, day(2026, 1, 1), day(2027, 1, 1)},
		{PeriodQuarter, at, day(2026, 10, 1), day(2027, 1, 1)},
		{PeriodQuarter, day(2026, 3, 31), day(2026, 1, 1), day(2026, 4, 1)},
		{PeriodMonth, at, day(2026, 12, 1), day(2027, 1, 1)},
		// Just after midnight on New Year in CET is still the old year in UTC.
		{PeriodYear, time.Date(2027, 1, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), day(2026, 1, 1), day(2027, 1, 1)},
	} {
		start, end := tt.p.Bounds(tt.at)
		if !start.Equal(tt.start) || !end.Equal(tt.end) {
			t.Errorf("%s of %v: %v–%v, want %v–%v", tt.p, tt.at, start, end, tt.start, tt.end)
		}
	}
}
