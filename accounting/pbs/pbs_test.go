package pbs

import (
	"strings"
	"testing"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
)

func TestPBS(t *testing.T) {
	d := New(accounting.Options{Cluster: "c"})
	// A quoted value with spaces, hours past 24, an array task, a queued record.
	lines := []string{
		`11/09/2026 23:59:51;Q;9.host;queue=batch`,
		`11/09/2026 23:59:51;E;9[3].host;user=alice group=lab jobname="my job" queue=batch ctime=1700000000 start=1700000100 end=1700100100 exec_host=n1/0-3+n2/0-3 Exit_status=0 resources_used.walltime=27:46:40 account=atlas`,
		`11/09/2026 23:59:51;E;10.host;user=bob group=lab queue=batch ctime=1700000000 start=1700000100 end=1700000200 Exit_status=271 Resource_List.ncpus=2`,
		`not a record`,
		`11/09/2026 23:59:51;E;11.host;user=bob jobname="unterminated`,
		`11/09/2026 23:59:51;E;12.host;user=bob exec_host=n1/x`,
	}
	jobs, bad := accountingtest.DecodeLines(d, lines)
	if len(jobs) != 2 {
		t.Fatalf("jobs: %+v", jobs)
	}
	if j := jobs[0]; j.Name != "my job" || j.ArrayIndex != 3 || j.JobID != "9" || j.Elapsed != 100000 || j.CPUs != 8 || j.Nodes != 2 || j.Account != "atlas" {
		t.Errorf("job 9[3] = %+v", j)
	}
	if j := jobs[1]; j.State != "CANCELLED" || j.CPUs != 2 || j.Elapsed != 100 {
		t.Errorf("job 10 = %+v", j)
	}
	if len(bad) != 3 || !strings.Contains(bad[1].Error(), "unterminated quote") {
		t.Errorf("bad = %v", bad)
	}
}

func FuzzPBS(f *testing.F) {
	f.Add(`12/21/2009 15:27:00;E;6.edge;user=jonesm group=ccrstaff queue=ccr ctime=1261424924 start=1261425023 exec_host=i02n33/7+i02n33/6 end=1261427220 Exit_status=0 resources_used.walltime=00:36:37`)
	f.Add(`01/26/2016 00:00:37;E;2994.pbs;exec_host=c1/0*13+c2/0*13 resources_used.ncpus=26 jobname="a b"`)
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
