package ingest

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// batch is one transaction: jobs, the day totals they add, the checkpoint.
type batch struct {
	tx     *sql.Tx
	insert *sql.Stmt
	source string
	// days accumulates usage of inserted jobs, written at commit.
	days map[dayKey]*dayUsage
	done bool
}

type dayKey struct {
	day                          int64
	cluster, collab, user, state string
}

type dayUsage struct{ jobs, coreSeconds int64 }

func (in *Ingester) newBatch(ctx context.Context, source string) (*batch, error) {
	tx, err := in.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	insert, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO job (cluster, job_id, array_index, het_offset, submit, start,
		end_time, user, uid, grp, account, partition, name, elapsed, cpus, nodes, gpus, state, exit_code, core_seconds,
		collaboration, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	return &batch{tx: tx, insert: insert, source: source, days: map[dayKey]*dayUsage{}}, nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// day is the UTC day a job is accounted on: its end, else its start or submit.
func day(j *accounting.Job) int64 {
	for _, t := range []time.Time{j.End, j.Start, j.Submit} {
		if !t.IsZero() {
			return t.Unix() / 86400
		}
	}
	return 0
}

func (b *batch) add(j *accounting.Job, collab string, stats *Stats) error {
	stats.Jobs++
	cs := j.CoreSeconds()
	res, err := b.insert.Exec(j.Cluster, j.JobID, j.ArrayIndex, j.HetOffset, unix(j.Submit), unix(j.Start), unix(j.End),
		j.User, j.UID, j.Group, j.Account, j.Partition, j.Name, j.Elapsed, j.CPUs, j.Nodes, j.GPUs, j.State, j.ExitCode,
		cs, collab, b.source)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		stats.Duplicates++
		return nil
	}
	stats.Inserted++
	k := dayKey{day(j), j.Cluster, collab, j.User, j.State}
	u := b.days[k]
	if u == nil {
		u = &dayUsage{}
		b.days[k] = u
	}
	u.jobs++
	u.coreSeconds += cs
	if stats.CoreSeconds == nil {
		stats.CoreSeconds = map[UsageKey]int64{}
	}
	stats.CoreSeconds[UsageKey{j.Cluster, collab}] += cs
	if j.End.After(stats.NewestEnd) {
		stats.NewestEnd = j.End
	}
	return nil
}

// commit writes the day totals and the checkpoint with the jobs, in one
// transaction: a crash anywhere leaves all three before or all after.
func (b *batch) commit(ctx context.Context, source string, dev, ino uint64, path string, cp checkpoint, now time.Time, stats *Stats) error {
	upsert, err := b.tx.PrepareContext(ctx, `INSERT INTO usage_daily (day, cluster, collaboration, user, state, jobs, core_seconds)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, cluster, collaboration, user, state)
		DO UPDATE SET jobs = jobs + excluded.jobs, core_seconds = core_seconds + excluded.core_seconds`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	for k, u := range b.days {
		if _, err := upsert.ExecContext(ctx, k.day, k.cluster, k.collab, k.user, k.state, u.jobs, u.coreSeconds); err != nil {
			return fmt.Errorf("day totals: %w", err)
		}
	}
	complete := 0
	if cp.complete {
		complete = 1
	}
	_, err = b.tx.ExecContext(ctx, `INSERT INTO ingest_checkpoint (source, dev, inode, path, offset, line, fingerprint, state,
		complete, hash_state, digest, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, dev, inode)
		DO UPDATE SET path = excluded.path, offset = excluded.offset, line = excluded.line, fingerprint = excluded.fingerprint,
		state = excluded.state, complete = excluded.complete, hash_state = excluded.hash_state, digest = excluded.digest,
		updated_at = excluded.updated_at`,
		source, int64(dev), int64(ino), path, cp.offset, cp.line, cp.fingerprint, cp.state, complete, cp.hashState, cp.digest, now.Unix())
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	b.done = true
	b.insert.Close()
	return b.tx.Commit()
}

func (b *batch) rollback() {
	if !b.done {
		b.done = true
		b.insert.Close()
		b.tx.Rollback()
	}
}

// recordRun notes the source's last run, newest job and bad lines.
func (in *Ingester) recordRun(ctx context.Context, source string, s Stats) error {
	_, err := in.DB.ExecContext(ctx, `INSERT INTO ingest_run (source, last_run, newest_end, bad_lines) VALUES (?, ?, ?, ?)
		ON CONFLICT (source) DO UPDATE SET last_run = excluded.last_run,
		newest_end = max(newest_end, excluded.newest_end), bad_lines = bad_lines + excluded.bad_lines`,
		source, in.now().Unix(), unix(s.NewestEnd), s.BadLines)
	return err
}
