package sge

import (
	"strings"
	"testing"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
)

// record builds an accounting line with the fields that matter set.
func record(kv map[int]string) string {
	f := make([]string, 45)
	for i := range f {
		f[i] = "0"
	}
	f[fPETaskID], f[fProject] = "NONE", "NONE"
	for i, v := range kv {
		f[i] = v
	}
	return strings.Join(f, ":")
}

func TestSGE(t *testing.T) {
	d := New(accounting.Options{Cluster: "c"})
	lines := []string{
		"# Version: 8.1.9",
		record(map[int]string{fJobNumber: "1", fOwner: "alice", fProject: "atlas", fSubmit: "1700000000", fStart: "1700000010", fEnd: "1700000110", fWallclock: "100", fSlots: "4", fTaskNumber: "3"}),
		record(map[int]string{fJobNumber: "2", fOwner: "bob", fFailed: "26", fSubmit: "1700000000", fWallclock: "0", fSlots: "1"}),
		record(map[int]string{fJobNumber: "3", fOwner: "bob", fPETaskID: "1.node1", fWallclock: "100", fSlots: "1"}),
		record(map[int]string{fJobNumber: "4", fOwner: "bob", fExitStatus: "137", fSubmit: "1700000000000", fStart: "1700000010000", fEnd: "1700000110500", fWallclock: "100.5", fSlots: "2"}),
		"short:line",
	}
	jobs, bad := accountingtest.DecodeLines(d, lines)
	if len(jobs) != 3 || len(bad) != 1 {
		t.Fatalf("jobs %+v, bad %v", jobs, bad)
	}
	if j := jobs[0]; j.Account != "atlas" || j.ArrayIndex != 3 || j.CoreSeconds() != 400 || j.State != "COMPLETED" {
		t.Errorf("job 1 = %+v", j)
	}
	if j := jobs[1]; j.State != "FAILED" || j.Elapsed != 0 || j.Account != "0" {
		t.Errorf("failed start = %+v", j)
	}
	if j := jobs[2]; j.State != "FAILED" || j.End.Unix() != 1700000110 || j.CoreSeconds() != 200 {
		t.Errorf("UGE job = %+v", j)
	}
}

func FuzzSGE(f *testing.F) {
	f.Add("myqueue:testhost:jdoe:jdoe:mpi-mem-test:22947:sge:0:1310761621:1311095354:1311095414:0:0:60:60.050000:0.080000:104188.000000:0:0:0:0:28001:0:0:0.000000:24:0:0:0:41:549:NONE:defaultdepartment:mype:1:0:60.130000:7.335452:0.000044:-l h_cpu=36000 -pe mype 1:0.000000:NONE:189153280.000000:0:0")
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
