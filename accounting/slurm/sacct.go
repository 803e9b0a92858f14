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
	opts  accounting.Options
	col   columns
	n     int    // expected field count
	state string // the field order, joined (State is called per line)
	// fields is reused from line to line: a log has millions.
	fields []string
}

// columns holds the position of each field the decoder reads, -1 when the
// field order lacks it; resolved once per header, not per line.
type columns struct {
	jobID, cluster, partition, account, group, user, uid, submit, start, end,
	elapsed, elapsedRaw, exitCode, state, nodes, cpus, allocTRES, name int
}

// NewSacct returns a decoder with the XDMoD field order.
func NewSacct(opts accounting.Options) *Sacct {
	d := &Sacct{opts: opts}
	d.setFields(XDMoDFields)
	return d
}

func (d *Sacct) setFields(names []string) {
	pos := make(map[string]int, len(names))
	canonical := make([]string, len(names))
	for i, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if a, ok := aliases[n]; ok {
			n = a
		}
		pos[n] = i
		canonical[i] = n
	}
	at := func(name string) int {
		if i, ok := pos[name]; ok {
			return i
		}
		return -1
	}
	d.col = columns{jobID: at("jobid"), cluster: at("cluster"), partition: at("partition"), account: at("account"),
		group: at("group"), user: at("user"), uid: at("uid"), submit: at("submit"), start: at("start"), end: at("end"),
		elapsed: at("elapsed"), elapsedRaw: at("elapsedraw"), exitCode: at("exitcode"), state: at("state"),
		nodes: at("nnodes"), cpus: at("ncpus"), allocTRES: at("alloctres"), name: at("jobname")}
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
	fields := split(d.fields[:0], string(line), '|')
	d.fields = fields
	if strings.EqualFold(fields[0], "JobID") {
		d.setFields(fields)
		for _, need := range []struct {
			name string
			at   int
		}{{"jobid", d.col.jobID}, {"state", d.col.state}, {"elapsed", d.col.elapsed}, {"ncpus", d.col.cpus}} {
			if need.at < 0 {
				return nil, true, fmt.Errorf("header lacks the %s column", need.name)
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

// split is strings.Split into a reused slice; the fields share s's memory.
func split(dst []string, s string, sep byte) []string {
	for {
		i := strings.IndexByte(s, sep)
		if i < 0 {
			return append(dst, s)
		}
		dst = append(dst, s[:i])
		s = s[i+1:]
	}
}

// get returns the field at column i, "" when the field order lacks it.
func get(fields []string, i int) string {
	if i < 0 {
		return ""
	}
	return fields[i]
}

func (d *Sacct) record(f []string) ([]accounting.Job, error) {
	c := &d.col
	id, err := ParseJobID(get(f, c.jobID))
	if err != nil {
		return nil, err
	}
	if id.Step != "" {
		return nil, errStep
	}
	state, err := accounting.SlurmState(get(f, c.state))
	if err != nil {
		return nil, err
	}
	j := accounting.Job{Cluster: d.opts.Cluster, JobID: id.JobID, HetOffset: id.HetOffset, State: state,
		User: get(f, c.user), Group: get(f, c.group), Account: get(f, c.account),
		Partition: get(f, c.partition), Name: get(f, c.name), ExitCode: get(f, c.exitCode), UID: -1}
	if j.Cluster == "" {
		j.Cluster = get(f, c.cluster)
	}
	if uid := get(f, c.uid); uid != "" {
		if j.UID, err = strconv.ParseInt(uid, 10, 64); err != nil {
			return nil, fmt.Errorf("bad uid %q", uid)
		}
	}
	if j.Submit, err = accounting.ParseLocalTime(get(f, c.submit), d.opts.Location); err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	if j.Start, err = accounting.ParseLocalTime(get(f, c.start), d.opts.Location); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	if j.End, err = accounting.ParseLocalTime(get(f, c.end), d.opts.Location); err != nil {
		return nil, fmt.Errorf("end: %w", err)
	}
	if raw := get(f, c.elapsedRaw); raw != "" {
		j.Elapsed, err = strconv.ParseInt(raw, 10, 64)
	} else {
		j.Elapsed, err = accounting.ParseElapsed(get(f, c.elapsed))
	}
	if err != nil || j.Elapsed < 0 {
		return nil, fmt.Errorf("elapsed: bad value")
	}
	if j.CPUs, err = count(get(f, c.cpus)); err != nil {
		return nil, fmt.Errorf("ncpus: %w", err)
	}
	if j.Nodes, err = count(get(f, c.nodes)); err != nil {
		return nil, fmt.Errorf("nnodes: %w", err)
	}
	j.GPUs = TRESCount(get(f, c.allocTRES), "gres/gpu")
	return expandArray(make([]accounting.Job, 0, max(1, len(id.ArrayIndexes))), j, id), nil
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
	for tres != "" {
		var kv string
		kv, tres, _ = strings.Cut(tres, ",")
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

// expandArray appends the jobs of a record to dst: one per task for an
// array (123_[1-3,5]), else the record itself.
func expandArray(dst []accounting.Job, j accounting.Job, id JobID) []accounting.Job {
	if len(id.ArrayIndexes) == 0 {
		j.ArrayIndex = -1
		return append(dst, j)
	}
	for _, idx := range id.ArrayIndexes {
		j.ArrayIndex = idx
		dst = append(dst, j)
	}
	return dst
}
