// Package slurm decodes Slurm accounting: `sacct --parsable2` output and
// jobcomp/filetxt logs.
package slurm

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/collabsync/collabsync/accounting"
)

// XDMoDFields is the field order of Open XDMoD's sacct call (and the
// default when a file has no header line):
//
//	sacct --allusers --parsable2 --noheader --allocations --duplicates --format \
//	  jobid,jobidraw,cluster,partition,qos,account,group,gid,user,uid,submit,eligible,start,end,elapsed,exitcode,state,nnodes,ncpus,reqcpus,reqmem,reqtres,alloctres,timelimit,nodelist,jobname
var XDMoDFields = []string{"jobid", "jobidraw", "cluster", "partition", "qos", "account", "group", "gid", "user", "uid",
	"submit", "eligible", "start", "end", "elapsed", "exitcode", "state", "nnodes", "ncpus", "reqcpus", "reqmem",
	"reqtres", "alloctres", "timelimit", "nodelist", "jobname"}

// aliases map sacct's column names to the ones this decoder reads.
var aliases = map[string]string{"alloccpus": "ncpus", "elapsedraw": "elapsedraw", "jobname": "jobname"}

// Sacct decodes `sacct --parsable2`. A first line that names the columns
// (sacct -P without --noheader) sets the field order; otherwise it is
// XDMoDFields. Job steps (123.batch, 123.0) are skipped: core-hours come
// from the allocation records.
type Sacct struct {
	opts   accounting.Options
	fields map[string]int
	n      int    // expected field count
	state  string // the field order, joined (State is called per line)
}

// NewSacct returns a decoder with the XDMoD field order.
func NewSacct(opts accounting.Options) *Sacct {
	d := &Sacct{opts: opts}
	d.setFields(XDMoDFields)
	return d
}

func (d *Sacct) setFields(names []string) {
	d.fields = make(map[string]int, len(names))
	canonical := make([]string, len(names))
	for i, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if a, ok := aliases[n]; ok {
			n = a
		}
		d.fields[n] = i
		canonical[i] = n
	}
	d.n = len(names)
	d.state = strings.Join(canonical, "|")
}

// State implements accounting.Decoder: the field order.
func (d *Sacct) State() string { return d.state }

// Restore implements accounting.Decoder.
func (d *Sacct) Restore(state string) error {
	if state != "" {
		d.setFields(strings.Split(state, "|"))
	}
	return nil
}

// Flush implements accounting.Decoder.
func (d *Sacct) Flush() ([]accounting.Job, error) { return nil, nil }

// errStep marks a job step line: skipped, not bad.
var errStep = errors.New("job step")

// Line implements accounting.Decoder.
func (d *Sacct) Line(line []byte) ([]accounting.Job, bool, error) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return nil, true, nil
	}
	fields := strings.Split(string(line), "|")
	if strings.EqualFold(fields[0], "JobID") {
		d.setFields(fields)
		for _, need := range []string{"jobid", "state", "elapsed", "ncpus"} {
			if _, ok := d.fields[need]; !ok {
				return nil, true, fmt.Errorf("header lacks the %s column", need)
			}
		}
		return nil, true, nil
	}
	if len(fields) != d.n {
		return nil, true, fmt.Errorf("%d fields, want %d", len(fields), d.n)
	}
	jobs, err := d.record(fields)
	if errors.Is(err, errStep) || errors.Is(err, accounting.ErrNotEnded) {
		return nil, true, nil
	}
	return jobs, true, err
}

func (d *Sacct) get(fields []string, name string) string {
	if i, ok := d.fields[name]; ok {
		return fields[i]
	}
	return ""
}

func (d *Sacct) record(f []string) ([]accounting.Job, error) {
	id, err := ParseJobID(d.get(f, "jobid"))
	if err != nil {
		return nil, err
	}
	if id.Step != "" {
		return nil, errStep
	}
	state, err := accounting.SlurmState(d.get(f, "state"))
	if err != nil {
		return nil, err
	}
	j := accounting.Job{Cluster: d.opts.Cluster, JobID: id.JobID, HetOffset: id.HetOffset, State: state,
		User: d.get(f, "user"), Group: d.get(f, "group"), Account: d.get(f, "account"),
		Partition: d.get(f, "partition"), Name: d.get(f, "jobname"), ExitCode: d.get(f, "exitcode"), UID: -1}
	if j.Cluster == "" {
		j.Cluster = d.get(f, "cluster")
	}
	if uid := d.get(f, "uid"); uid != "" {
		if j.UID, err = strconv.ParseInt(uid, 10, 64); err != nil {
			return nil, fmt.Errorf("bad uid %q", uid)
		}
	}
	if j.Submit, err = accounting.ParseLocalTime(d.get(f, "submit"), d.opts.Location); err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	if j.Start, err = accounting.ParseLocalTime(d.get(f, "start"), d.opts.Location); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	if j.End, err = accounting.ParseLocalTime(d.get(f, "end"), d.opts.Location); err != nil {
		return nil, fmt.Errorf("end: %w", err)
	}
	if raw := d.get(f, "elapsedraw"); raw != "" {
		j.Elapsed, err = strconv.ParseInt(raw, 10, 64)
	} else {
		j.Elapsed, err = accounting.ParseElapsed(d.get(f, "elapsed"))
	}
	if err != nil || j.Elapsed < 0 {
		return nil, fmt.Errorf("elapsed: bad value")
	}
	if j.CPUs, err = count(d.get(f, "ncpus")); err != nil {
		return nil, fmt.Errorf("ncpus: %w", err)
	}
	if j.Nodes, err = count(d.get(f, "nnodes")); err != nil {
		return nil, fmt.Errorf("nnodes: %w", err)
	}
	j.GPUs = TRESCount(d.get(f, "alloctres"), "gres/gpu")
	return expandArray(j, id), nil
}

// count parses a non-negative count; empty is 0.
func count(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad count %q", s)
	}
	return n, nil
}

// TRESCount returns the count of one TRES ("gres/gpu") in a TRES string
// such as "billing=36,cpu=36,gres/gpu=2,mem=48000M,node=3"; typed
// entries ("gres/gpu:a100=2") add up.
func TRESCount(tres, name string) int64 {
	var total int64
	for _, kv := range strings.Split(tres, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || (k != name && !strings.HasPrefix(k, name+":")) {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if k == name {
				return n // the total, when present, wins over typed parts
			}
			total += n
		}
	}
	return total
}

// expandArray turns a record of an array (123_[1-3,5]) into one job per
// task; other records are one job.
func expandArray(j accounting.Job, id JobID) []accounting.Job {
	if len(id.ArrayIndexes) == 0 {
		j.ArrayIndex = -1
		return []accounting.Job{j}
	}
	out := make([]accounting.Job, len(id.ArrayIndexes))
	for i, idx := range id.ArrayIndexes {
		out[i] = j
		out[i].ArrayIndex = idx
	}
	return out
}
