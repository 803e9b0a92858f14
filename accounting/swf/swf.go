// Package swf decodes the Standard Workload Format (Parallel Workloads
// Archive): ';' header comments, then 18 whitespace-separated fields per
// job, -1 for unknown. Times are seconds after the header's UnixStartTime.
package swf

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// Field positions (SWF 2.2).
const (
	fJob = iota
	fSubmit
	fWait
	fRun
	fAllocProcs
	fAvgCPU
	fMem
	fReqProcs
	fReqTime
	fReqMem
	fStatus
	fUser
	fGroup
	fExe
	fQueue
	fPartition
	fPreceding
	fThink
	nFields
)

// Decoder is an SWF decoder. The UnixStartTime header is its state.
type Decoder struct {
	opts  accounting.Options
	start int64
}

// New returns an SWF decoder.
func New(opts accounting.Options) *Decoder { return &Decoder{opts: opts} }

func (*Decoder) Flush() ([]accounting.Job, error) { return nil, nil }

// State implements accounting.Decoder.
func (d *Decoder) State() string { return strconv.FormatInt(d.start, 10) }

// Restore implements accounting.Decoder.
func (d *Decoder) Restore(s string) error {
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	d.start = n
	return err
}

// Line implements accounting.Decoder.
func (d *Decoder) Line(line []byte) ([]accounting.Job, bool, error) {
	s := strings.TrimSpace(string(bytes.TrimRight(line, "\r")))
	if s == "" {
		return nil, true, nil
	}
	if strings.HasPrefix(s, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(s[1:]), "UnixStartTime:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return nil, true, fmt.Errorf("bad UnixStartTime %q", strings.TrimSpace(v))
			}
			d.start = n
		}
		return nil, true, nil
	}
	f := strings.Fields(s)
	if len(f) != nFields {
		return nil, true, fmt.Errorf("%d fields, want %d", len(f), nFields)
	}
	v := make([]int64, nFields)
	for i, x := range f {
		n, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return nil, true, fmt.Errorf("field %d: %q is not a number", i+1, x)
		}
		v[i] = int64(n)
	}
	if v[fJob] < 0 {
		return nil, true, fmt.Errorf("bad job number %d", v[fJob])
	}
	j := accounting.Job{Cluster: d.opts.Cluster, JobID: strconv.FormatInt(v[fJob], 10), ArrayIndex: -1, HetOffset: -1,
		UID: v[fUser], Partition: known(v[fPartition], "p"), Account: known(v[fGroup], "g"),
		User: known(v[fUser], "u"), Group: known(v[fGroup], "g")}
	if v[fSubmit] >= 0 {
		j.Submit = time.Unix(d.start+v[fSubmit], 0).UTC()
		if v[fWait] >= 0 {
			j.Start = j.Submit.Add(time.Duration(v[fWait]) * time.Second)
			if v[fRun] >= 0 {
				j.End = j.Start.Add(time.Duration(v[fRun]) * time.Second)
			}
		}
	}
	j.Elapsed = max(v[fRun], 0)
	j.CPUs = v[fAllocProcs]
	if j.CPUs < 0 {
		j.CPUs = max(v[fReqProcs], 0)
	}
	switch v[fStatus] {
	case 0:
		j.State = "FAILED"
	case 5:
		j.State = "CANCELLED"
	default: // 1 completed; 2-4 partial executions; -1 unknown
		j.State = "COMPLETED"
	}
	return []accounting.Job{j}, true, nil
}

// known names an SWF id ("u12"), or "" for -1.
func known(id int64, prefix string) string {
	if id < 0 {
		return ""
	}
	return prefix + strconv.FormatInt(id, 10)
}
