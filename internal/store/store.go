// Package store is collabsync's SQLite state (modernc.org/sqlite, no cgo):
// opening with the right pragmas, and schema migrations. Each feature keeps
// its tables and queries in its own file here.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/collabsync/collabsync/internal/statelock"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// Store is an open state database.
type Store struct {
	DB   *sql.DB
	path string

	cache cache
}

// migrations are applied in order, each once; never edit one that shipped.
var migrations = []string{
	// 1: rule history
	`CREATE TABLE subject_status (
		subject    TEXT PRIMARY KEY,
		status     TEXT NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE violation (
		kind       TEXT NOT NULL,
		subject    TEXT NOT NULL,
		first_seen INTEGER NOT NULL, -- unix nanoseconds
		last_seen  INTEGER NOT NULL,
		PRIMARY KEY (kind, subject)
	);`,
	// 2: the daemon's change stream and retry queue
	`CREATE TABLE sync_cookie (
		stream TEXT PRIMARY KEY,
		cookie BLOB NOT NULL
	);
	CREATE TABLE outbox (
		target       TEXT PRIMARY KEY,
		changes      INTEGER NOT NULL, -- how many changes wait
		attempts     INTEGER NOT NULL,
		next_attempt INTEGER NOT NULL, -- unix nanoseconds
		last_error   TEXT NOT NULL
	);`,
	// 3: accounting. A job's natural key makes ingest idempotent; usage is
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
	// 4: the natural key leads with (cluster, end_time), so an ingest batch
	// reads the stored keys around its jobs in a few range scans instead of
	// probing the index job by job.
	`DROP INDEX job_natural_key;
	CREATE UNIQUE INDEX job_natural_key ON job (cluster, end_time, job_id, array_index, het_offset, submit, start);`,
	// 5: a file that could not be read to its end (a truncated .gz, an
	// unreadable file) is remembered with its size and mtime: reported
	// once, skipped until it changes.
	`ALTER TABLE ingest_checkpoint ADD COLUMN damage TEXT NOT NULL DEFAULT '';
	ALTER TABLE ingest_checkpoint ADD COLUMN damage_size INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE ingest_checkpoint ADD COLUMN damage_mtime INTEGER NOT NULL DEFAULT 0; -- unix nanoseconds`,
	// 6: what attributing jobs needs from the directory, as the last sync
	// saw it, so an ingest needs no LDAP read.
	`CREATE TABLE attribution (
		kind          TEXT NOT NULL, -- 'collaboration': a name; 'user': uid → administrative collaboration
		name          TEXT NOT NULL,
		collaboration TEXT NOT NULL,
		PRIMARY KEY (kind, name)
	) WITHOUT ROWID;
	CREATE TABLE attribution_saved (
		id       INTEGER PRIMARY KEY CHECK (id = 1),
		digest   BLOB NOT NULL, -- of the rows, so an unchanged directory writes nothing
		saved_at INTEGER NOT NULL -- unix seconds of the sync that last confirmed them
	);`,
	// 7: who was provisioned with which name and number, so an incumbent
	// keeps them against a newcomer.
	`ALTER TABLE subject_status ADD COLUMN dn TEXT NOT NULL DEFAULT '';
	ALTER TABLE subject_status ADD COLUMN number INTEGER NOT NULL DEFAULT -1;`,
	// 8: plans held by their guards, and operators' approvals of them
	// (bound to a plan's digest), so serve can apply an approved plan.
	`CREATE TABLE held_plan (
		target TEXT PRIMARY KEY,
		digest TEXT NOT NULL,
		reason TEXT NOT NULL,
		since  INTEGER NOT NULL -- unix seconds this digest was first held
	);
	CREATE TABLE approval (
		target      TEXT PRIMARY KEY,
		digest      TEXT NOT NULL,
		approved_at INTEGER NOT NULL
	);`,
	// 9: how long a target has been failing, for the retry queue's metrics.
	`ALTER TABLE outbox ADD COLUMN first_failed INTEGER NOT NULL DEFAULT 0; -- unix nanoseconds`,
	// 10: a counter per table that every write of it bumps, so a process
	// may keep the table in memory and re-read it only when another
	// process wrote it (the daemon's run per change reads no 100k rows).
	`CREATE TABLE generation (
		name TEXT PRIMARY KEY,
		gen  INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// 11: the daemon's live directory model, entry by entry as the
	// directory sent it, so a restart resumes the change stream from its
	// cookie instead of reading the whole directory again. digest names
	// the searches and mappings it was built with.
	`CREATE TABLE live_entry (
		stream TEXT NOT NULL,
		key    TEXT NOT NULL, -- entryUUID
		dn     TEXT NOT NULL,
		attrs  BLOB NOT NULL, -- JSON: attribute → values, as received
		PRIMARY KEY (stream, key)
	) WITHOUT ROWID;
	CREATE TABLE live_model (
		id     INTEGER PRIMARY KEY CHECK (id = 1),
		digest TEXT NOT NULL
	);
	DELETE FROM sync_cookie; -- cookies from before the model was kept`,
}

// openLockWait bounds the wait for another process opening the database.
const openLockWait = time.Minute

// Open opens (creating if needed) the database at path and migrates it.
// The database and its -wal and -shm files are 0600 whatever the umask:
// they hold directory data.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// Opening is serialised between processes: switching a new database to
	// WAL fails at once (SQLITE_BUSY, no busy wait) while another process
	// does the same, and migrations must run once. The lock is held only
	// while opening, and is not the state directory's run lock, which the
	// caller may hold.
	lock, err := statelock.AcquireFile(ctx, path+".open-lock", "collabsync (opening the state database)", openLockWait)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	// SQLite creates -wal and -shm with the database file's mode, so the
	// database is created first, with the mode wanted; files an older
	// version created are narrowed.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("restrict %s to its owner: %w", p, err)
		}
	}
	// WAL lets readers (status, reports) run beside the writer; a busy
	// timeout waits for a concurrent CLI instead of failing at once, so it
	// comes first: switching to WAL needs a moment alone.
	// The path is escaped: in a file: URI '#' would end it, '?' start the
	// parameters and '%' escape, each opening another database.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{DB: db, path: path}
	if err := s.migrate(ctx); err != nil { // opens the first connection, inside the lock
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.DB.Close() }

// migrate applies the missing migrations in one IMMEDIATE transaction: it
// takes SQLite's write lock before reading the schema version, so two
// processes opening a new database at once migrate it once (the second
// waits, then finds nothing to do).
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version == len(migrations) {
		return nil // the common case takes no write lock
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	commit := false
	defer func() {
		if !commit {
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this collabsync knows (%d)", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	commit = true
	return nil
}

// batch returns the context for the statements of a loop over many rows
// and a check the loop calls once per row. The driver starts a goroutine
// to watch each statement's context when it can be cancelled (110k of
// them for the statuses of a first run at 100k users): the statements get
// one that cannot, and the check looks at ctx every 1000 rows instead.
func batch(ctx context.Context) (context.Context, func() error) {
	n := 0
	return context.WithoutCancel(ctx), func() error {
		if n++; n%1000 == 0 {
			return ctx.Err()
		}
		return nil
	}
}

// Names lists the names of the subjects of a kind (collaboration, user)
// the rule history holds, reading the database without changing it (no
// lock, no migration, no file made): for shell completion.
func Names(ctx context.Context, path, kind string) ([]string, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT substr(subject, ?) FROM subject_status WHERE subject LIKE ? ORDER BY 1", len(kind)+2, kind+"/%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
