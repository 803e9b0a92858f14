// Package genlog writes synthetic Slurm accounting logs (sacct
// --parsable2, Open XDMoD's field order) for benchmarks and crash tests.
// The same parameters always give the same bytes.
package genlog

import (
	"bufio"
	"fmt"
	"io"
	"time"
)

// Params size the log.
type Params struct {
	Jobs     int
	Users    int // user names u000000..; default 1000
	Accounts int // account names c00000..; default 100
	Start    time.Time
}

// Write writes the log and returns the total core-seconds of its jobs, for
// tests that check an ingest against the truth.
func Write(w io.Writer, p Params) (coreSeconds int64, err error) {
	if p.Users == 0 {
		p.Users = 1000
	}
	if p.Accounts == 0 {
		p.Accounts = 100
	}
	if p.Start.IsZero() {
		p.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	states := []string{"COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED by 0"}
	for i := 0; i < p.Jobs; i++ {
		submit := p.Start.Add(time.Duration(i) * 7 * time.Second)
		start := submit.Add(time.Duration(i%600) * time.Second)
		elapsed := int64(60 + (i*7919)%36000)
		end := start.Add(time.Duration(elapsed) * time.Second)
		cpus := int64(1 << (i % 6))
		coreSeconds += elapsed * cpus
		user := fmt.Sprintf("u%06d", i%p.Users)
		account := fmt.Sprintf("c%05d", i%p.Accounts)
		const tf = "2006-01-02T15:04:05"
		_, err = fmt.Fprintf(bw, "%d|%d|gen|compute|normal|%s|grp|2000|%s|%d|%s|%s|%s|%s|%02d:%02d:%02d|0:0|%s|1|%d|%d|4000M||billing=%d,cpu=%d,node=1|12:00:00|n001|job%d\n",
			100000+i, 100000+i, account, user, 10000+i%p.Users, submit.Format(tf), submit.Format(tf), start.Format(tf), end.Format(tf),
			elapsed/3600, elapsed%3600/60, elapsed%60, states[i%len(states)], cpus, cpus, cpus, cpus, i)
		if err != nil {
			return 0, err
		}
	}
	return coreSeconds, bw.Flush()
}
