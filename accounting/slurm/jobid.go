package slurm

import (
	"fmt"
	"strconv"
	"strings"
)

// JobID is a parsed Slurm job id: 123, 123_4, 123_[1-3,5%2], 123+0, 123.batch.
type JobID struct {
	JobID        string
	ArrayIndexes []int // empty when not an array record
	HetOffset    int   // -1 when not a het component
	Step         string
}

// maxArrayTasks bounds a range expansion, so a corrupt "1_[0-99999999999]"
// cannot exhaust memory.
const maxArrayTasks = 1_000_000

// ParseJobID parses the JobID column of sacct.
func ParseJobID(s string) (JobID, error) {
	id := JobID{HetOffset: -1}
	if s == "" {
		return id, fmt.Errorf("empty job id")
	}
	rest := s
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		rest, id.Step = rest[:i], rest[i+1:]
		if id.Step == "" {
			return id, fmt.Errorf("bad job id %q", s)
		}
	}
	if base, het, ok := strings.Cut(rest, "+"); ok {
		n, err := strconv.Atoi(het)
		if err != nil || n < 0 {
			return id, fmt.Errorf("bad het offset in job id %q", s)
		}
		rest, id.HetOffset = base, n
	}
	base, array, isArray := strings.Cut(rest, "_")
	if _, err := strconv.ParseUint(base, 10, 64); err != nil {
		return id, fmt.Errorf("bad job id %q", s)
	}
	id.JobID = base
	if !isArray {
		return id, nil
	}
	var err error
	if id.ArrayIndexes, err = parseArrayIndexes(array); err != nil {
		return id, fmt.Errorf("job id %q: %w", s, err)
	}
	return id, nil
}

// parseArrayIndexes reads "4" or "[1-3,5%2]" (the %N throttle is ignored).
func parseArrayIndexes(s string) ([]int, error) {
	if !strings.HasPrefix(s, "[") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad array index %q", s)
		}
		return []int{n}, nil
	}
	if !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("unclosed array range %q", s)
	}
	body := s[1 : len(s)-1]
	body, _, _ = strings.Cut(body, "%")
	var out []int
	for _, part := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad array range %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad array range %q", s)
			}
		}
		if len(out)+(b-a+1) > maxArrayTasks {
			return nil, fmt.Errorf("array range %q has more than %d tasks", s, maxArrayTasks)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}
