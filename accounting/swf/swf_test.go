package swf

import (
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
)

func TestSWF(t *testing.T) {
	d := New(accounting.Options{Cluster: "ctc"})
	data := `; Version: 2.2
; UnixStartTime: 1700000000
; TimeZoneString: Europe/Paris
1 0 10 100 8 -1 -1 8 3600 -1 1 5 3 -1 1 1 -1 -1
2 60 -1 -1 4 -1 -1 4 3600 -1 5 6 3 -1 1 1 -1 -1
3 120 0 50 -1 -1 -1 2 3600 -1 0 6 3 -1 1 1 -1 -1
4 x 0 50
`
	jobs, bad := accountingtest.DecodeLines(d, strings.Split(data, "\n"))
	if len(jobs) != 3 || len(bad) != 1 {
		t.Fatalf("jobs %+v bad %v", jobs, bad)
	}
	if j := jobs[0]; j.Start != time.Unix(1700000010, 0).UTC() || j.CoreSeconds() != 800 || j.User != "u5" || j.Account != "g3" {
		t.Errorf("job 1 = %+v", j)
	}
	if j := jobs[1]; j.State != "CANCELLED" || !j.Start.IsZero() || j.Elapsed != 0 {
		t.Errorf("job 2 = %+v", j)
	}
	if j := jobs[2]; j.State != "FAILED" || j.CPUs != 2 {
		t.Errorf("job 3 = %+v (requested procs stand in for unknown allocated)", j)
	}
	// The header's start time survives a restart.
	d2 := New(accounting.Options{})
	d2.Restore(d.State())
	js, _, _ := d2.Line([]byte("5 0 0 1 1 -1 -1 1 1 -1 1 1 1 -1 1 1 -1 -1"))
	if js[0].Submit.Unix() != 1700000000 {
		t.Errorf("restored start time: %v", js[0].Submit)
	}
}

func FuzzSWF(f *testing.F) {
	f.Add("; UnixStartTime: 1700000000")
	f.Add("1 0 10 100 8 -1 -1 8 3600 -1 1 5 3 -1 1 1 -1 -1")
	f.Fuzz(func(t *testing.T, line string) {
		jobs, _, err := New(accounting.Options{}).Line([]byte(line))
		if err == nil {
			for _, j := range jobs {
				if j.Elapsed < 0 || j.CPUs < 0 {
					t.Errorf("negative usage: %+v", j)
				}
			}
		}
	})
}
