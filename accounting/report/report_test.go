package report

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting/accountingtest"
	"github.com/collabsync/collabsync/internal/store"
)

func TestRunAndWrite(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), accountingtest.Schema())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	day := func(s string) int64 { d, _ := time.Parse(time.DateOnly, s); return d.Unix() / 86400 }
	for _, r := range []struct {
		day                          string
		collab, user, state, cluster string
		jobs, cs, gs                 int64
	}{
		{"2026-10-31", "atlas", "alice", "COMPLETED", "c1", 2, 7200, 0},
		{"2026-11-01", "atlas", "alice", "FAILED", "c1", 1, 3600, 0},
		{"2026-11-02", "atlas", "bob", "COMPLETED", "c2", 3, 10800, 0},
		{"2026-11-30", "lsst", "carol", "TIMEOUT", "c1", 1, 1800, 5400},
		{"2026-12-01", "lsst", "carol", "NODE_FAIL", "c1", 1, 900, 0},
	} {
		_, err := st.DB.Exec("INSERT INTO usage_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)", day(r.day), r.cluster, r.collab, r.user, r.state, r.jobs, r.cs, r.gs)
		if err != nil {
			t.Fatal(err)
		}
	}
	// A collaboration never seen is an error naming the near ones (a
	// typo printed an empty table, exit 0).
	if _, err := Run(context.Background(), st.DB, Query{By: ByUser, Collaboration: "atlsa"}); err == nil ||
		err.Error() != `no usage was ever recorded for collaboration "atlsa" (did you mean atlas?)` {
		t.Errorf("a misspelled collaboration: %v", err)
	}
	if _, err := Run(context.Background(), st.DB, Query{By: ByMonth, User: "alcie"}); err == nil ||
		err.Error() != `no usage was ever recorded for user "alcie" (did you mean alice?)` {
		t.Errorf("a misspelled user: %v", err)
	}
	nov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		q    Query
		want string // key:jobs:core-hours ...
	}{
		{Query{By: ByCollaboration}, "atlas:6:6.00 lsst:2:0.75"},
		{Query{By: ByMonth}, "2026-10:2:2.00 2026-11:5:4.50 2026-12:1:0.25"},
		{Query{By: ByUser, Collaboration: "atlas"}, "alice:3:3.00 bob:3:3.00"},
		{Query{By: ByCollaboration, Since: nov, Until: nov.AddDate(0, 1, 0)}, "atlas:4:4.00 lsst:1:0.50"},
		{Query{By: ByCluster}, "c1:5:3.75 c2:3:3.00"},
		{Query{By: ByMonth, User: "alice"}, "2026-10:2:2.00 2026-11:1:1.00"},
		// Two groupings: a reporting contact's user × month table.
		{Query{By: "user,month", Collaboration: "atlas"}, "alice/2026-10:2:2.00 alice/2026-11:1:1.00 bob/2026-11:3:3.00"},
		{Query{By: "month,collaboration"}, "2026-10/atlas:2:2.00 2026-11/atlas:4:4.00 2026-11/lsst:1:0.50 2026-12/lsst:1:0.25"},
	}
	for _, tt := range tests {
		rows, err := Run(context.Background(), st.DB, tt.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.Key+":"+itoa(r.Jobs)+":"+ftoa(r.CoreHours))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%+v: %s, want %s", tt.q, strings.Join(got, " "), tt.want)
		}
	}
	if _, err := Run(context.Background(), st.DB, Query{By: "planet"}); err == nil {
		t.Error("unknown grouping accepted")
	}
	rows, _ := Run(context.Background(), st.DB, Query{By: ByCollaboration})
	var b bytes.Buffer
	Write(&b, "table", []string{"COLLABORATION"}, rows)
	if !strings.Contains(b.String(), "CORE-HOURS  GPU-HOURS  COMPLETED  FAILED  TIMEOUT  NODE_FAIL") ||
		!regexp.MustCompile(`total +8 +6\.75 +1\.50 `).MatchString(b.String()) {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	Write(&b, "csv", []string{"collaboration"}, rows)
	// lsst's jobs held GPUs: a GPU-hours column beside the core-hours.
	if !strings.HasPrefix(b.String(), "collaboration,jobs,core_hours,gpu_hours,COMPLETED,FAILED,TIMEOUT,NODE_FAIL\natlas,6,6.00,0.00,5,1,0,0\nlsst,2,0.75,1.50,0,0,1,1\n") {
		t.Errorf("csv:\n%s", b.String())
	}
	b.Reset()
	Write(&b, "json", []string{"x"}, nil)
	if strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("empty json: %q", b.String())
	}
	if err := Write(&b, "xml", []string{"x"}, rows); err == nil {
		t.Error("xml accepted")
	}
	// user × month: a column per grouping, in the table and the CSV.
	rows, _ = Run(context.Background(), st.DB, Query{By: "user,month", Collaboration: "atlas"})
	b.Reset()
	Write(&b, "csv", []string{"user", "month"}, rows)
	if !strings.HasPrefix(b.String(), "user,month,jobs,core_hours,COMPLETED,FAILED\nalice,2026-10,2,2.00,2,0\nalice,2026-11,1,1.00,0,1\nbob,2026-11,3,3.00,3,0\n") {
		t.Errorf("user x month csv:\n%s", b.String())
	}
	b.Reset()
	Write(&b, "table", []string{"USER", "MONTH"}, rows)
	if lines := strings.Split(b.String(), "\n"); len(lines) < 5 || strings.Fields(lines[0])[1] != "MONTH" ||
		strings.Join(strings.Fields(lines[4]), " ") != "total 6 6.00 5 1" {
		t.Errorf("user x month table:\n%s", b.String())
	}
	for _, by := range []string{"user,user", "user,month,cluster", "user,planet"} {
		if _, err := Run(context.Background(), st.DB, Query{By: by}); err == nil {
			t.Errorf("grouping %q accepted", by)
		}
	}
}

func itoa(n int64) string   { return strconv.FormatInt(n, 10) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }
