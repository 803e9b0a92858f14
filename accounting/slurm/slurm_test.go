package slurm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
)

func TestParseJobID(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "123", want: "123 [] -1 "},
		{in: "123_4", want: "123 [4] -1 "},
		{in: "123_[1-3,5]", want: "123 [1 2 3 5] -1 "},
		{in: "123_[1-4%2]", want: "123 [1 2 3 4] -1 "},
		{in: "123+0", want: "123 [] 0 "},
		{in: "123+1.batch", want: "123 [] 1 batch"},
		{in: "123.extern", want: "123 [] -1 extern"},
		{in: "123_4.0", want: "123 [4] -1 0"},
		{in: "", bad: true},
		{in: "abc", bad: true},
		{in: "123_[3-1]", bad: true},
		{in: "123_[1-3", bad: true},
		{in: "123.", bad: true},
		{in: "123_[0-99999999]", bad: true},
	}
	for _, tt := range tests {
		id, err := ParseJobID(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("%q accepted: %+v", tt.in, id)
			}
			continue
		}
		if got := fmt.Sprint(id.JobID, " ", id.ArrayIndexes, " ", id.HetOffset, " ", id.Step); err != nil || got != tt.want {
			t.Errorf("%q: %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSacctHeaderDriven(t *testing.T) {
	d := NewSacct(accounting.Options{Cluster: "c", Location: time.UTC})
	lines := []string{
		"JobID|State|Account|User|Start|End|Elapsed|AllocCPUS|Submit|AllocTRES",
		"7|COMPLETED|proj1|alice|2026-01-01T10:00:00|2026-01-01T11:00:00|01:00:00|4|2026-01-01T09:59:00|cpu=4,gres/gpu:a100=2",
		"7.batch|COMPLETED|proj1|alice|2026-01-01T10:00:00|2026-01-01T11:00:00|01:00:00|4|2026-01-01T09:59:00|",
		"8+1|FAILED|proj2|bob|2026-01-02T00:00:00|2026-01-03T00:00:01|1-00:00:01|2|Unknown|",
		"9|RUNNING|proj2|bob|2026-01-02T00:00:00|Unknown|00:10:00|2|Unknown|",
		"10|COMPLETED|proj2|bob",
	}
	jobs, bad := accountingtest.DecodeLines(d, lines)
	if len(jobs) != 2 {
		t.Fatalf("jobs = %+v", jobs)
	}
	if j := jobs[0]; j.CoreSeconds() != 4*3600 || j.GPUs != 2 || j.Account != "proj1" || j.ArrayIndex != -1 {
		t.Errorf("job 7 = %+v", j)
	}
	if j := jobs[1]; j.HetOffset != 1 || j.Elapsed != 86401 || j.State != "FAILED" || !j.Submit.IsZero() {
		t.Errorf("job 8+1 = %+v", j)
	}
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), "4 fields, want 10") {
		t.Errorf("bad = %v", bad)
	}
	// The header survives a restart through State/Restore.
	d2 := NewSacct(accounting.Options{Location: time.UTC})
	d2.Restore(d.State())
	if js, _, err := d2.Line([]byte(lines[1])); err != nil || len(js) != 1 || js[0].CPUs != 4 {
		t.Errorf("restored decoder: %v %v", js, err)
	}
}

func TestJobcomp(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	d := NewJobcomp(accounting.Options{Cluster: "c", Location: paris})
	line := "JobId=42 UserId=alice(1001) GroupId=lab(2001) Name=my big job JobState=CANCELLED by 1001 Partition=debug TimeLimit=60 " +
		"StartTime=2026-07-01T12:00:00 EndTime=2026-07-01T12:30:00 NodeList=n[1-2] NodeCnt=2 ProcCnt=8 WorkDir=/home/alice/my dir " +
		"ReservationName= Tres=cpu=8,mem=1G,node=2 Account=atlas QOS=normal WcKey= Cluster=real SubmitTime=2026-07-01T11:59:00 " +
		"EligibleTime=2026-07-01T11:59:00 ArrayJobId=40 ArrayTaskId=2 DerivedExitCode=0:0 ExitCode=0:15"
	js, _, err := d.Line([]byte(line))
	if err != nil || len(js) != 1 {
		t.Fatalf("%v %v", js, err)
	}
	j := js[0]
	checks := map[string]string{
		"name": j.Name, "user": j.User, "group": j.Group, "state": j.State, "job": j.JobID,
		"start": j.Start.Format(time.RFC3339), "cs": fmt.Sprint(j.CoreSeconds()), "index": fmt.Sprint(j.ArrayIndex), "uid": fmt.Sprint(j.UID),
	}
	want := map[string]string{
		"name": "my big job", "user": "alice", "group": "lab", "state": "CANCELLED", "job": "40",
		"start": "2026-07-01T10:00:00Z", "cs": "14400", "index": "2", "uid": "1001",
	}
	for k, v := range want {
		if checks[k] != v {
			t.Errorf("%s = %q, want %q", k, checks[k], v)
		}
	}
	for _, bad := range []string{"garbage", "JobId=x JobState=COMPLETED", "JobId=1 JobState=COMPLETED StartTime=2026-07-01T12:00:00 EndTime=2026-07-01T11:00:00"} {
		if _, _, err := d.Line([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if js, _, err := d.Line([]byte("JobId=5 JobState=PENDING")); err != nil || len(js) != 0 {
		t.Errorf("pending: %v %v", js, err)
	}
}

func FuzzSacct(f *testing.F) {
	f.Add("4107166|4107166|ub-hpc|general-compute|qos|dspumpkins|dspumpkins|103116|hanx|102216|2015-06-26T19:51:25|2015-06-26T19:51:26|2015-06-28T15:14:49|2015-07-01T13:17:53|2-22:03:04|0:0|CANCELLED by 102216|3|36|36|48000Mn||billing=36,cpu=36,mem=48000M,node=3|3-00:00:00|k10n26s01|x")
	f.Add("JobID|State|Elapsed|NCPUS")
	f.Add("1_[1-3]|1||||||||||||||||COMPLETED|||||||||")
	f.Fuzz(func(t *testing.T, line string) {
		d := NewSacct(accounting.Options{Location: time.UTC})
		jobs, _, err := d.Line([]byte(line))
		if err == nil {
			for _, j := range jobs {
				if j.Elapsed < 0 || j.CPUs < 0 || j.JobID == "" {
					t.Errorf("accepted a job with negative usage or no id: %+v", j)
				}
			}
		}
	})
}

func FuzzJobcomp(f *testing.F) {
	f.Add("JobId=2 UserId=root(0) GroupId=root(0) Name=batch1 JobState=COMPLETED Partition=debug StartTime=2026-01-01T00:00:00 EndTime=2026-01-01T00:00:01 ProcCnt=1 NodeCnt=1")
	f.Add("JobId= JobState=")
	f.Fuzz(func(t *testing.T, line string) {
		jobs, _, err := NewJobcomp(accounting.Options{Location: time.UTC}).Line([]byte(line))
		if err == nil {
			for _, j := range jobs {
				if j.Elapsed < 0 || j.CPUs < 0 {
					t.Errorf("negative usage: %+v", j)
				}
			}
		}
	})
}
