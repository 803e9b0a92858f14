// Package sge decodes Sun/Son of Grid Engine and Univa Grid Engine (8.2+)
// accounting files: colon-separated, one record per job or array task.
// SGE writes epoch seconds, UGE epoch milliseconds; both are read.
package sge

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// Field positions of the accounting(5) format.
const (
	fQueue       = 0
	fGroup       = 2
	fOwner       = 3
	fJobName     = 4
	fJobNumber   = 5
	fAccount     = 6
	fSubmit      = 8
	fStart       = 9
	fEnd         = 10
	fFailed      = 11
	fExitStatus  = 12
	fWallclock   = 13
	fProject     = 31
	fSlots       = 34
	fTaskNumber  = 35
	fPETaskID    = 41
	minFields    = 42
	millisCutoff = 100_000_000_000 // epoch values above this are milliseconds (UGE)
)

// Decoder is an SGE/UGE accounting decoder.
type Decoder struct {
	accounting.LineDecoder
	opts accounting.Options
}

// New returns an SGE/UGE decoder.
func New(opts accounting.Options) *Decoder { return &Decoder{opts: opts} }

// Line implements accounting.Decoder.
func (d *Decoder) Line(line []byte) ([]accounting.Job, bool, error) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
		return nil, true, nil
	}
	f := strings.Split(string(line), ":")
	if len(f) < minFields {
		return nil, true, fmt.Errorf("%d fields, want at least %d", len(f), minFields)
	}
	if pe := f[fPETaskID]; pe != "NONE" && pe != "" {
		return nil, true, nil // a parallel task's own record; the master record carries the slots
	}
	j := accounting.Job{Cluster: d.opts.Cluster, JobID: f[fJobNumber], ArrayIndex: -1, HetOffset: -1, UID: -1,
		User: f[fOwner], Group: f[fGroup], Partition: f[fQueue], Name: f[fJobName], ExitCode: f[fExitStatus]}
	if _, err := strconv.ParseUint(j.JobID, 10, 64); err != nil {
		return nil, true, fmt.Errorf("bad job number %q", j.JobID)
	}
	j.Account = f[fProject]
	if j.Account == "NONE" || j.Account == "" {
		j.Account = f[fAccount]
	}
	var err error
	for _, t := range []struct {
		name string
		s    string
		dst  *time.Time
	}{{"submission_time", f[fSubmit], &j.Submit}, {"start_time", f[fStart], &j.Start}, {"end_time", f[fEnd], &j.End}} {
		if *t.dst, err = epoch(t.s); err != nil {
			return nil, true, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	if task, err := strconv.Atoi(f[fTaskNumber]); err == nil && task > 0 {
		j.ArrayIndex = task
	}
	wall, err := strconv.ParseFloat(f[fWallclock], 64)
	if err != nil || wall < 0 || math.IsInf(wall, 0) || math.IsNaN(wall) {
		return nil, true, fmt.Errorf("bad ru_wallclock %q", f[fWallclock])
	}
	j.Elapsed = int64(wall)
	if j.CPUs, err = strconv.ParseInt(f[fSlots], 10, 64); err != nil || j.CPUs < 0 {
		return nil, true, fmt.Errorf("bad slots %q", f[fSlots])
	}
	j.Nodes = 1
	failed, _ := strconv.Atoi(strings.Fields(f[fFailed] + " 0")[0])
	exit, _ := strconv.Atoi(f[fExitStatus])
	switch {
	case failed != 0 && j.Start.IsZero():
		j.State, j.Elapsed, j.Nodes = "FAILED", 0, 0 // never started
	case failed != 0 || exit != 0:
		j.State = "FAILED"
	default:
		j.State = "COMPLETED"
	}
	return []accounting.Job{j}, true, nil
}

// epoch reads seconds (SGE) or milliseconds (UGE); 0 is unknown.
func epoch(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	switch {
	case n <= 0:
		return time.Time{}, nil
	case n > millisCutoff:
		return time.Unix(n/1000, 0).UTC(), nil // whole seconds, as the peer does
	}
	return time.Unix(n, 0).UTC(), nil
}
