package report

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
	"github.com/collabsync/collabsync/internal/store"
)

func TestAllocations(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), accountingtest.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	day := func(s string) int64 { d, _ := time.Parse(time.DateOnly, s); return d.Unix() / 86400 }
	for _, r := range []struct {
		day, collab string
		cs, gs      int64
	}{
		{"2025-12-31", "atlas", 3600 * 1000, 0}, // last year: not this period's
		{"2026-01-01", "atlas", 3600 * 600, 3600 * 5},
		{"2026-11-30", "atlas", 3600 * 250, 0},
		{"2026-06-01", "lsst", 3600 * 40, 0},
		{"2026-06-01", "cms", 3600 * 10, 0}, // no allocation
	} {
		if _, err := st.DB.Exec("INSERT INTO usage_daily VALUES (?, 'c1', ?, 'u', 'COMPLETED', 1, ?, ?)", day(r.day), r.collab, r.cs, r.gs); err != nil {
			t.Fatal(err)
		}
	}
	save := func(a accounting.Allocations) {
		t.Helper()
		if err := accounting.SaveAllocations(ctx, st.DB, a); err != nil {
			t.Fatal(err)
		}
	}
	save(accounting.Allocations{"atlas": {CoreHours: 1000, GPUHours: 10}, "lsst": {CoreHours: 50}, "gone": {CoreHours: 1}})
	// The next sync: gone lost its allocation, lsst's changed.
	save(accounting.Allocations{"atlas": {CoreHours: 1000, GPUHours: 10}, "lsst": {CoreHours: 400}})
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	uses, err := Allocations(ctx, st.DB, accounting.PeriodYear, at, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Use{
		{"atlas", "2026-01-01", "2027-01-01", 850, 1000, 0.85, 5, 10, 0.5},
		{"lsst", "2026-01-01", "2027-01-01", 40, 400, 0.1, 0, 0, 0},
	}
	if len(uses) != len(want) {
		t.Fatalf("uses %+v", uses)
	}
	for i := range want {
		if uses[i] != want[i] {
			t.Errorf("use %d: %+v, want %+v", i, uses[i], want[i])
		}
	}
	// A quarter holds less.
	q, _ := Allocations(ctx, st.DB, accounting.PeriodQuarter, at, "atlas")
	if len(q) != 1 || q[0].CoreHours != 250 || q[0].PeriodStart != "2026-10-01" {
		t.Errorf("quarter: %+v", q)
	}
	if _, err := Allocations(ctx, st.DB, accounting.PeriodYear, at, "atlsa"); err == nil ||
		err.Error() != `collaboration "atlsa" has no allocation (did you mean atlas?)` {
		t.Errorf("a misspelled collaboration: %v", err)
	}
	var out bytes.Buffer
	if err := WriteAllocations(&out, "table", uses); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"atlas  2026-01-01–2027-01-01      850.00       1000  85.0%       5.00         10  50.0%",
		"lsst  2026-01-01–2027-01-01       40.00        400  10.0%       0.00          0      -"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("table lacks %q:\n%s", line, out.String())
		}
	}
}
