// Package accounting turns batch schedulers' accounting logs into Job
// records, stores them idempotently in SQLite, attributes them to
// collaborations and reports usage. One sub-package per log format.
package accounting

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Job is one run of a job (or array task, or het component) as the
// scheduler accounted it. Core-hours come from allocated CPUs × elapsed,
// never from summing steps.
type Job struct {
	Cluster    string
	JobID      string // the scheduler's id; for array tasks the array's id
	ArrayIndex int    // -1 when not an array task
	HetOffset  int    // -1 when not a het job component
	User       string
	UID        int64 // -1 when unknown
	Group      string
	Account    string
	Partition  string // partition or queue
	Name       string
	Submit     time.Time // UTC; zero when unknown
	Start      time.Time
	End        time.Time
	Elapsed    int64 // seconds
	CPUs       int64 // allocated
	Nodes      int64
	GPUs       int64
	State      string // COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...
	ExitCode   string
}

// CoreSeconds is elapsed × allocated CPUs.
func (j *Job) CoreSeconds() int64 { return j.Elapsed * j.CPUs }

// GPUSeconds is the GPU time the job held: GPUs × elapsed.
func (j *Job) GPUSeconds() int64 { return j.Elapsed * j.GPUs }

// Limits of a plausible job; beyond them a record is corrupt, and its
// core-seconds could overflow every total it joined.
const (
	maxCPUs    = 100_000_000
	maxElapsed = 100 * 365 * 86400
)

// Check rejects a job no scheduler could have run.
func (j *Job) Check() error {
	switch {
	case j.JobID == "":
		return fmt.Errorf("no job id")
	case j.Elapsed < 0 || j.Elapsed > maxElapsed:
		return fmt.Errorf("implausible elapsed time %d s", j.Elapsed)
	case j.CPUs < 0 || j.CPUs > maxCPUs:
		return fmt.Errorf("implausible CPU count %d", j.CPUs)
	case j.Nodes < 0 || j.GPUs < 0:
		return fmt.Errorf("negative node or GPU count")
	case !j.Start.IsZero() && !j.End.IsZero() && j.End.Before(j.Start):
		return fmt.Errorf("ends before it starts (start %s, end %s)", j.Start.Format(time.RFC3339), j.End.Format(time.RFC3339))
	}
	return nil
}

// Defaults of the format check: a file whose first DefaultSampleLines
// lines are more than DefaultMaxBadRatio bad is taken to be in another
// format (the configuration's defaults; ingest's when none is given).
const (
	DefaultMaxBadRatio = 0.5
	DefaultSampleLines = 1000
)

// Decoder turns the lines of one log into jobs. Formats whose records span
// several lines (HTCondor) say where records end, so checkpoints fall on
// record boundaries; formats with header lines (SWF, sacct with a header)
// keep what the header said in State, so an ingest can resume mid-file.
type Decoder interface {
	// Line decodes one line (without its newline). It returns the jobs the
	// line completes and whether the decoder is now between records. An
	// error means a bad line: the caller counts and reports it, and goes on.
	Line(line []byte) (jobs []Job, boundary bool, err error)
	// Flush ends the input and returns a record still open.
	Flush() ([]Job, error)
	// State is what must survive a restart (e.g. a header); Restore puts
	// it back into a fresh decoder.
	State() string
	Restore(state string) error
}

// LineDecoder gives decoders whose every line is a whole record the
// Decoder methods they have nothing to do in: no open record, no state.
type LineDecoder struct{}

// Flush implements Decoder.
func (LineDecoder) Flush() ([]Job, error) { return nil, nil }

// State implements Decoder.
func (LineDecoder) State() string { return "" }

// Restore implements Decoder.
func (LineDecoder) Restore(string) error { return nil }

// Options are what a source's configuration tells every decoder.
type Options struct {
	Cluster string
	// Location is the time zone of log times written without an offset.
	Location *time.Location
}

// Ended states: runs that are over and count towards usage. Other states
// (PENDING, RUNNING, REQUEUED, ...) are not accounted yet.
var endedStates = map[string]bool{
	"COMPLETED": true, "FAILED": true, "CANCELLED": true, "TIMEOUT": true, "NODE_FAIL": true,
	"PREEMPTED": true, "OUT_OF_MEMORY": true, "BOOT_FAIL": true, "DEADLINE": true, "REVOKED": true,
}

// notEndedStates are known states of jobs that have not ended.
var notEndedStates = map[string]bool{
	"PENDING": true, "RUNNING": true, "REQUEUED": true, "RESIZING": true, "SUSPENDED": true,
	"REQUEUE_FED": true, "REQUEUE_HOLD": true, "SPECIAL_EXIT": true, "STOPPED": true, "SIGNALING": true,
	"STAGE_OUT": true, "CONFIGURING": true, "COMPLETING": true,
}

// ErrNotEnded marks a record of a job still pending or running: skipped,
// not bad.
var ErrNotEnded = fmt.Errorf("job has not ended")

// SlurmState normalizes a Slurm state: "CANCELLED by 1234" is CANCELLED.
// It returns ErrNotEnded for pending or running jobs and an error for a
// state it does not know.
func SlurmState(s string) (string, error) {
	st, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	st = strings.TrimSuffix(strings.ToUpper(st), "+")
	switch {
	case endedStates[st]:
		return st, nil
	case notEndedStates[st]:
		return "", ErrNotEnded
	}
	return "", fmt.Errorf("unknown job state %q", s)
}

// ParseElapsed reads Slurm's [D-]HH:MM:SS, MM:SS or MM:SS.mmm, and PBS's
// HH:MM:SS where HH may exceed 24.
func ParseElapsed(s string) (int64, error) {
	s = strings.TrimSpace(s)
	// Bounds keep a corrupt value from overflowing: a century of days, and
	// no component above a billion.
	const maxDays, maxPart = 36500, 1_000_000_000
	var days int64
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 || n > maxDays {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		days, s = n, rest
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i] // fractional seconds
	}
	nparts := strings.Count(s, ":") + 1
	if nparts > 3 || (days > 0 && nparts != 3) {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	var total int64
	for i, rest := 0, s; i < nparts; i++ {
		var p string
		p, rest, _ = strings.Cut(rest, ":")
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 || n > maxPart || (i > 0 && n >= 60) {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		total = total*60 + n
	}
	if nparts == 1 {
		total *= 60 // a lone number is minutes in Slurm's notation
	}
	return days*86400 + total, nil
}

// ParseLocalTime reads "2006-01-02T15:04:05" (no offset) in loc; "Unknown",
// "None" and "" are the zero time.
func ParseLocalTime(s string, loc *time.Location) (time.Time, error) {
	switch s {
	case "", "Unknown", "None", "N/A":
		return time.Time{}, nil
	}
	if t, ok := fastLocalTime(s, loc); ok {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	return t.UTC(), nil
}

// fastLocalTime reads the fixed layout 2006-01-02T15:04:05 without the
// general parser (a log has millions of them); anything unusual is left to
// time.ParseInLocation, which also gives the error.
func fastLocalTime(s string, loc *time.Location) (time.Time, bool) {
	if len(s) != 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 7)
	d, ok3 := num(8, 10)
	h, ok4 := num(11, 13)
	mi, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, 0, loc)
	if t.Day() != d { // 31 February and the like: let the parser refuse it
		return time.Time{}, false
	}
	return t.UTC(), true
}

// ParseEpoch reads a Unix time in seconds; 0 and -1 are unknown.
func ParseEpoch(s string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad Unix time %q", s)
	}
	if n <= 0 {
		return time.Time{}, nil
	}
	return time.Unix(n, 0).UTC(), nil
}
