package accounting

// SchemaName is the name the state store tracks Migrations' version under.
const SchemaName = "accounting"

// Migrations are the accounting tables' schema, in order (each applied
// once; never edit one that shipped): the jobs and daily usage that
// ingest writes and the reports read, and ingest's checkpoints. The
// program hands them to the state store when it opens it.
func Migrations() []string {
	return []string{
		// 1: a job's natural key makes ingest idempotent; usage is
		// kept per day as well, so reports never scan the jobs.
		`CREATE TABLE job (
			id            INTEGER PRIMARY KEY,
			cluster       TEXT NOT NULL,
			job_id        TEXT NOT NULL,
			array_index   INTEGER NOT NULL,
			het_offset    INTEGER NOT NULL,
			submit        INTEGER NOT NULL, -- unix seconds, 0 unknown
			start         INTEGER NOT NULL,
			end_time      INTEGER NOT NULL,
			user          TEXT NOT NULL,
			uid           INTEGER NOT NULL,
			grp           TEXT NOT NULL,
			account       TEXT NOT NULL,
			partition     TEXT NOT NULL,
			name          TEXT NOT NULL,
			elapsed       INTEGER NOT NULL,
			cpus          INTEGER NOT NULL,
			nodes         INTEGER NOT NULL,
			gpus          INTEGER NOT NULL,
			state         TEXT NOT NULL,
			exit_code     TEXT NOT NULL,
			core_seconds  INTEGER NOT NULL,
			collaboration TEXT NOT NULL, -- attributed at ingest, so reports are stable
			source        TEXT NOT NULL
		);
		CREATE UNIQUE INDEX job_natural_key ON job (cluster, job_id, array_index, het_offset, submit, start, end_time);
		CREATE TABLE usage_daily (
			day           INTEGER NOT NULL, -- unix day of the job's end (UTC)
			cluster       TEXT NOT NULL,
			collaboration TEXT NOT NULL,
			user          TEXT NOT NULL,
			state         TEXT NOT NULL,
			jobs          INTEGER NOT NULL,
			core_seconds  INTEGER NOT NULL,
			PRIMARY KEY (day, cluster, collaboration, user, state)
		) WITHOUT ROWID;
		CREATE TABLE ingest_checkpoint (
			source      TEXT NOT NULL,
			dev         INTEGER NOT NULL,
			inode       INTEGER NOT NULL,
			path        TEXT NOT NULL,
			offset      INTEGER NOT NULL, -- bytes of (uncompressed) content consumed
			line        INTEGER NOT NULL, -- lines consumed, for error messages
			fingerprint BLOB NOT NULL,    -- hash of the first bytes, to notice a reused inode
			state       TEXT NOT NULL,    -- the decoder's (a header)
			complete    INTEGER NOT NULL, -- a compressed file read to its end
			hash_state  BLOB NOT NULL,    -- SHA-256 of the content up to offset, resumable
			digest      BLOB NOT NULL,    -- ... and its sum, to recognize a renamed or recompressed copy
			updated_at  INTEGER NOT NULL,
			PRIMARY KEY (source, dev, inode)
		);
		CREATE TABLE ingest_run (
			source     TEXT PRIMARY KEY,
			last_run   INTEGER NOT NULL,
			newest_end INTEGER NOT NULL, -- the newest job end seen, for lag
			bad_lines  INTEGER NOT NULL
		);`,
		// 2: the natural key leads with (cluster, end_time), so an ingest batch
		// reads the stored keys around its jobs in a few range scans instead of
		// probing the index job by job.
		`DROP INDEX job_natural_key;
		CREATE UNIQUE INDEX job_natural_key ON job (cluster, end_time, job_id, array_index, het_offset, submit, start);`,
		// 3: a file that could not be read to its end (a truncated .gz, an
		// unreadable file) is remembered with its size and mtime: reported
		// once, skipped until it changes.
		`ALTER TABLE ingest_checkpoint ADD COLUMN damage TEXT NOT NULL DEFAULT '';
		ALTER TABLE ingest_checkpoint ADD COLUMN damage_size INTEGER NOT NULL DEFAULT 0;
		ALTER TABLE ingest_checkpoint ADD COLUMN damage_mtime INTEGER NOT NULL DEFAULT 0; -- unix nanoseconds`,
		// 4: GPU-hours per day, beside core-hours, filled from the jobs
		// already stored (a job's day as ingest counts it: its end, else
		// its start, else its submission).
		`ALTER TABLE usage_daily ADD COLUMN gpu_seconds INTEGER NOT NULL DEFAULT 0;
		UPDATE usage_daily SET gpu_seconds = g.gs FROM (
			SELECT CASE WHEN end_time != 0 THEN end_time / 86400 WHEN start != 0 THEN start / 86400 ELSE submit / 86400 END AS day,
				cluster, collaboration, user, state, SUM(gpus * elapsed) AS gs
			FROM job WHERE gpus > 0 GROUP BY 1, 2, 3, 4, 5) AS g
		WHERE g.day = usage_daily.day AND g.cluster = usage_daily.cluster AND g.collaboration = usage_daily.collaboration
			AND g.user = usage_daily.user AND g.state = usage_daily.state;`,
		// 5: collaborations' allocations as the last sync read them, so
		// report and the metrics compare usage with them without the
		// directory.
		`CREATE TABLE allocation (
			collaboration TEXT PRIMARY KEY,
			core_hours    INTEGER NOT NULL,
			gpu_hours     INTEGER NOT NULL
		) WITHOUT ROWID;`,
	}
}
