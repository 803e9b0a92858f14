package wiring

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
	"github.com/collabsync/collabsync/internal/store"
)

// TestMonthlyReportsAndUse: what the notices target is given from the
// state store: the collaborations that used anything in a month, their
// month by member as CSV and a PNG chart, and the allocations' use.
func TestMonthlyReportsAndUse(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), accountingtest.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	day := func(s string) int64 { d, _ := time.Parse(time.DateOnly, s); return d.Unix() / 86400 }
	for _, r := range []struct{ day, collab, user string }{
		{"2026-10-30", "atlas", "alice"},
		{"2026-11-02", "atlas", "alice"},
		{"2026-11-20", "atlas", "bob"},
		{"2026-10-03", "lsst", "dave"}, // not in November
	} {
		if _, err := st.DB.Exec("INSERT INTO usage_daily VALUES (?, 'c1', ?, ?, 'COMPLETED', 1, ?, 0)", day(r.day), r.collab, r.user, 3600*100); err != nil {
			t.Fatal(err)
		}
	}
	if err := accounting.SaveAllocations(ctx, st.DB, accounting.Allocations{"atlas": {CoreHours: 1200}}); err != nil {
		t.Fatal(err)
	}
	r := monthlyReports{st: st, period: accounting.PeriodYear}
	used, err := r.Used(ctx, "2026-11")
	if err != nil || !slices.Equal(used, []string{"atlas"}) {
		t.Fatalf("used in 2026-11: %v, %v; want [atlas]", used, err)
	}
	files, err := r.Files(ctx, "atlas", "2026-11")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "atlas-2026-11.csv" || files[1].Name != "atlas-2026-11.png" {
		t.Fatalf("files %v", files)
	}
	csv := string(files[0].Data)
	if !strings.Contains(csv, "alice") || !strings.Contains(csv, "bob") || strings.Count(csv, "\n") != 3 {
		t.Errorf("November's CSV (a header, alice, bob):\n%s", csv)
	}
	if !bytes.HasPrefix(files[1].Data, []byte("\x89PNG")) {
		t.Errorf("the chart is not a PNG")
	}
	uses, err := allocationUse(st, accounting.PeriodYear)(ctx, time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	if err != nil || len(uses) != 1 || uses[0].Collaboration != "atlas" || uses[0].Used != 300 || uses[0].Allocated != 1200 || uses[0].Resource != "core-hours" {
		t.Errorf("allocations' use: %+v, %v", uses, err)
	}
}
