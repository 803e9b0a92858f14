// Package pbs decodes PBS/TORQUE and PBS Pro accounting logs. Only E (job
// end) records carry usage; the others are skipped.
package pbs

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// Decoder is a PBS accounting decoder.
type Decoder struct {
	accounting.LineDecoder
	opts accounting.Options
}

// New returns a PBS decoder.
func New(opts accounting.Options) *Decoder { return &Decoder{opts: opts} }

// Line implements accounting.Decoder. A record is
// "MM/DD/YYYY HH:MM:SS;E;<job id>;key=value key=value ...".
func (d *Decoder) Line(line []byte) ([]accounting.Job, bool, error) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, true, nil
	}
	parts := strings.SplitN(string(line), ";", 4)
	if len(parts) != 4 {
		return nil, true, fmt.Errorf("not a PBS accounting record (want date;type;id;attributes)")
	}
	if parts[1] != "E" {
		return nil, true, nil
	}
	attrs, err := splitAttrs(parts[3])
	if err != nil {
		return nil, true, err
	}
	j := accounting.Job{Cluster: d.opts.Cluster, ArrayIndex: -1, HetOffset: -1, UID: -1,
		User: attrs["user"], Group: attrs["group"], Partition: attrs["queue"], Name: attrs["jobname"],
		ExitCode: attrs["Exit_status"]}
	if j.JobID, j.ArrayIndex, err = parseID(parts[2]); err != nil {
		return nil, true, err
	}
	j.Account = attrs["account"]
	if j.Account == "" && attrs["project"] != "_pbs_project_default" {
		j.Account = attrs["project"]
	}
	if j.Submit, err = accounting.ParseEpoch(attrs["ctime"]); err != nil {
		return nil, true, fmt.Errorf("ctime: %w", err)
	}
	if j.Start, err = epochOrZero(attrs["start"]); err != nil {
		return nil, true, fmt.Errorf("start: %w", err)
	}
	if j.End, err = epochOrZero(attrs["end"]); err != nil {
		return nil, true, fmt.Errorf("end: %w", err)
	}
	if w, ok := attrs["resources_used.walltime"]; ok {
		if j.Elapsed, err = accounting.ParseElapsed(w); err != nil {
			return nil, true, fmt.Errorf("resources_used.walltime: %w", err)
		}
	} else if !j.Start.IsZero() && j.End.After(j.Start) {
		j.Elapsed = int64(j.End.Sub(j.Start).Seconds())
	}
	hosts, cpus, err := execHost(attrs["exec_host"])
	if err != nil {
		return nil, true, err
	}
	j.Nodes, j.CPUs = hosts, cpus
	if n, err := strconv.ParseInt(attrs["resources_used.ncpus"], 10, 64); err == nil {
		j.CPUs = n // PBS Pro says what it allocated
	}
	if j.CPUs == 0 {
		j.CPUs = nodesSpecCPUs(attrs["Resource_List.nodes"], attrs["Resource_List.ncpus"])
	}
	if j.Nodes == 0 {
		j.Nodes, _ = strconv.ParseInt(attrs["Resource_List.nodect"], 10, 64)
	}
	j.GPUs = gpus(attrs)
	j.State = "COMPLETED"
	if code, err := strconv.Atoi(j.ExitCode); err == nil && code != 0 {
		j.State = "FAILED"
		if code == 271 || code == -11 { // killed by qdel / walltime
			j.State = "CANCELLED"
		}
	}
	return []accounting.Job{j}, true, nil
}

func epochOrZero(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return accounting.ParseEpoch(s)
}

// parseID reads "6.edge.example.org", "6", "123[4].host" (an array task).
func parseID(s string) (string, int, error) {
	id, _, _ := strings.Cut(s, ".")
	index := -1
	if base, rest, ok := strings.Cut(id, "["); ok {
		idx := strings.TrimSuffix(rest, "]")
		if idx != "" {
			n, err := strconv.Atoi(idx)
			if err != nil || n < 0 {
				return "", 0, fmt.Errorf("bad array job id %q", s)
			}
			index = n
		}
		id = base
	}
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", 0, fmt.Errorf("bad job id %q", s)
	}
	return id, index, nil
}

// splitAttrs splits "k=v k2=\"a b\" ..." honouring double quotes.
func splitAttrs(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("attribute without '=' near %q", truncate(s))
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in %s", key)
			}
			val, s = s[1:end+1], s[end+2:]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			val, s = s[:sp], s[sp:]
		} else {
			val, s = s, ""
		}
		out[key] = val
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// execHost counts hosts and CPUs in "n1/0+n1/1+n2/0", "c1/0-3+c2/0-7" or
// "c1/0*13+c2/0*13".
func execHost(s string) (hosts, cpus int64, err error) {
	if s == "" {
		return 0, 0, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, "+") {
		host, slots, ok := strings.Cut(part, "/")
		if !ok || host == "" {
			return 0, 0, fmt.Errorf("bad exec_host entry %q", part)
		}
		seen[host] = true
		switch {
		case strings.Contains(slots, "*"):
			_, n, _ := strings.Cut(slots, "*")
			c, err := strconv.ParseInt(n, 10, 64)
			if err != nil || c < 0 {
				return 0, 0, fmt.Errorf("bad exec_host entry %q", part)
			}
			cpus += c
		default:
			for _, r := range strings.Split(slots, ",") {
				lo, hi, isRange := strings.Cut(r, "-")
				a, err := strconv.ParseInt(lo, 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("bad exec_host entry %q", part)
				}
				b := a
				if isRange {
					if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a {
						return 0, 0, fmt.Errorf("bad exec_host entry %q", part)
					}
				}
				cpus += b - a + 1
			}
		}
	}
	return int64(len(seen)), cpus, nil
}

// nodesSpecCPUs reads CPUs from Resource_List.nodes ("4:ppn=8") or ncpus.
func nodesSpecCPUs(nodes, ncpus string) int64 {
	if n, err := strconv.ParseInt(ncpus, 10, 64); err == nil {
		return n
	}
	count, rest, _ := strings.Cut(nodes, ":")
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil {
		return 0
	}
	for _, p := range strings.Split(rest, ":") {
		if v, ok := strings.CutPrefix(p, "ppn="); ok {
			if ppn, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n * ppn
			}
		}
	}
	return n
}

// gpus reads GPUs from Resource_List.ngpus, Resource_List.gpu(s), or a
// gpus=/gpu= part of Resource_List.nodes or nodect.
func gpus(attrs map[string]string) int64 {
	for _, k := range []string{"Resource_List.ngpus", "Resource_List.gpus", "Resource_List.gpu"} {
		if n, err := strconv.ParseInt(attrs[k], 10, 64); err == nil {
			return n
		}
	}
	for _, k := range []string{"Resource_List.nodes", "Resource_List.nodect"} {
		for _, p := range strings.Split(attrs[k], ":") {
			for _, prefix := range []string{"gpus=", "gpu="} {
				if v, ok := strings.CutPrefix(p, prefix); ok {
					if n, err := strconv.ParseInt(v, 10, 64); err == nil {
						return n
					}
				}
			}
		}
	}
	return 0
}
