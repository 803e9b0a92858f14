package slurm

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/collabsync/collabsync/accounting"
)

// jobcompKeys are the keys jobcomp/filetxt writes. Values may contain
// spaces (Name=my job), so a line is split only before a known key.
var jobcompKeys = []string{"JobId", "UserId", "GroupId", "Name", "JobState", "Partition", "TimeLimit", "StartTime",
	"EndTime", "NodeList", "NodeCnt", "ProcCnt", "WorkDir", "ReservationName", "Tres", "Account", "QOS", "WcKey",
	"Cluster", "SubmitTime", "EligibleTime", "ArrayJobId", "ArrayTaskId", "HetJobId", "HetJobOffset",
	"DerivedExitCode", "ExitCode", "StdIn", "StdOut", "StdErr"}

var jobcompSplit = regexp.MustCompile(`(?:^| )(` + strings.Join(jobcompKeys, "|") + `)=`)

// Jobcomp decodes Slurm's jobcomp/filetxt log (JobCompType=jobcomp/filetxt):
// one "Key=value ..." line per finished job, times in local time without
// an offset (Options.Location).
type Jobcomp struct {
	accounting.LineDecoder
	opts accounting.Options
}

// NewJobcomp returns a jobcomp decoder.
func NewJobcomp(opts accounting.Options) *Jobcomp { return &Jobcomp{opts: opts} }

// splitJobcomp returns the line's key/value pairs.
func splitJobcomp(line string) map[string]string {
	idx := jobcompSplit.FindAllStringSubmatchIndex(line, -1)
	kv := make(map[string]string, len(idx))
	for i, m := range idx {
		end := len(line)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		kv[line[m[2]:m[3]]] = line[m[1]:end]
	}
	return kv
}

// nameID splits "alice(1001)" into alice and 1001.
func nameID(s string) (string, int64) {
	name, id, ok := strings.Cut(s, "(")
	if !ok {
		return s, -1
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(id, ")"), 10, 64)
	if err != nil {
		return name, -1
	}
	return name, n
}

// Line implements accounting.Decoder.
func (d *Jobcomp) Line(line []byte) ([]accounting.Job, bool, error) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, true, nil
	}
	kv := splitJobcomp(string(line))
	if kv["JobId"] == "" || kv["JobState"] == "" {
		return nil, true, fmt.Errorf("not a jobcomp record (no JobId or JobState)")
	}
	state, err := accounting.SlurmState(kv["JobState"])
	if errors.Is(err, accounting.ErrNotEnded) {
		return nil, true, nil
	}
	if err != nil {
		return nil, true, err
	}
	j := accounting.Job{Cluster: d.opts.Cluster, JobID: kv["JobId"], ArrayIndex: -1, HetOffset: -1, State: state,
		Account: kv["Account"], Partition: kv["Partition"], Name: kv["Name"], ExitCode: kv["ExitCode"]}
	if _, err := strconv.ParseUint(j.JobID, 10, 64); err != nil {
		return nil, true, fmt.Errorf("bad JobId %q", j.JobID)
	}
	if j.Cluster == "" {
		j.Cluster = kv["Cluster"]
	}
	j.User, j.UID = nameID(kv["UserId"])
	j.Group, _ = nameID(kv["GroupId"])
	if a := kv["ArrayJobId"]; a != "" && a != "0" {
		if j.ArrayIndex, err = strconv.Atoi(kv["ArrayTaskId"]); err != nil {
			return nil, true, fmt.Errorf("bad ArrayTaskId %q", kv["ArrayTaskId"])
		}
		j.JobID = a
	}
	if h := kv["HetJobId"]; h != "" && h != "0" {
		if j.HetOffset, err = strconv.Atoi(kv["HetJobOffset"]); err != nil {
			return nil, true, fmt.Errorf("bad HetJobOffset %q", kv["HetJobOffset"])
		}
		j.JobID = h
	}
	if j.Submit, err = accounting.ParseLocalTime(kv["SubmitTime"], d.opts.Location); err != nil {
		return nil, true, fmt.Errorf("SubmitTime: %w", err)
	}
	if j.Start, err = accounting.ParseLocalTime(kv["StartTime"], d.opts.Location); err != nil {
		return nil, true, fmt.Errorf("StartTime: %w", err)
	}
	if j.End, err = accounting.ParseLocalTime(kv["EndTime"], d.opts.Location); err != nil {
		return nil, true, fmt.Errorf("EndTime: %w", err)
	}
	if !j.Start.IsZero() && !j.End.IsZero() {
		if j.Elapsed = int64(j.End.Sub(j.Start).Seconds()); j.Elapsed < 0 {
			return nil, true, fmt.Errorf("EndTime before StartTime")
		}
	}
	if j.CPUs, err = count(kv["ProcCnt"]); err != nil {
		return nil, true, fmt.Errorf("ProcCnt: %w", err)
	}
	if j.Nodes, err = count(kv["NodeCnt"]); err != nil {
		return nil, true, fmt.Errorf("NodeCnt: %w", err)
	}
	j.GPUs = TRESCount(kv["Tres"], "gres/gpu")
	return []accounting.Job{j}, true, nil
}
