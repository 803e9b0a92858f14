package htcondor

import (
	"strings"
	"testing"

	"github.com/collabsync/collabsync/accounting"
)

const history = `ClusterId = 101
ProcId = 2
Owner = "alice"
AcctGroup = "atlas"
JobStatus = 4
ExitCode = 0
QDate = 1700000000
JobStartDate = 1700000100
CompletionDate = 1700003700
RemoteWallClockTime = 3600.0
CumulativeSuspensionTime = 600
RequestCpus = 4
Cmd = "/bin/sim"
*** ArrivedAt = 1700003700 ClusterId = 101 ProcId = 2
ClusterId = 102
ProcId = 0
User = "bob@example.org"
AccountingGroup = "group_lsst.bob"
JobStatus = 3
QDate = 1700000000
EnteredCurrentStatus = 1700000500
RemoteWallClockTime = 0
*** ArrivedAt = 1700000500
ClusterId = 103
ProcId = 0
this is not an attribute
JobStatus = 4
*** ArrivedAt = 1
ClusterId = 104
ProcId = 0
JobStatus = 2
*** running
`

func TestHTCondor(t *testing.T) {
	d := New(accounting.Options{Cluster: "pool"})
	var jobs []accounting.Job
	var bad []string
	var boundaries int
	for _, l := range strings.Split(history, "\n") {
		js, b, err := d.Line([]byte(l))
		jobs = append(jobs, js...)
		if err != nil {
			bad = append(bad, err.Error())
		}
		if b && strings.HasPrefix(l, "***") {
			boundaries++
		}
	}
	if len(jobs) != 2 || boundaries != 4 {
		t.Fatalf("jobs %+v, boundaries %d", jobs, boundaries)
	}
	if j := jobs[0]; j.JobID != "101" || j.ArrayIndex != 2 || j.CoreSeconds() != 3000*4 || j.Account != "atlas" || j.Name != "/bin/sim" {
		t.Errorf("job 101 = %+v", j)
	}
	if j := jobs[1]; j.User != "bob" || j.Account != "group_lsst" || j.State != "CANCELLED" || j.CPUs != 1 {
		t.Errorf("job 102 = %+v", j)
	}
	if len(bad) != 2 || !strings.Contains(bad[1], "ad skipped") {
		t.Errorf("bad = %v", bad)
	}
}

func FuzzHTCondor(f *testing.F) {
	f.Add(history)
	f.Fuzz(func(t *testing.T, data string) {
		d := New(accounting.Options{})
		for _, l := range strings.Split(data, "\n") {
			jobs, _, _ := d.Line([]byte(l))
			for _, j := range jobs {
				if j.Elapsed < 0 || j.CPUs < 0 {
					t.Errorf("negative usage: %+v", j)
				}
			}
		}
		d.Flush()
	})
}
