// Package store is collabsync's SQLite state (modernc.org/sqlite, no cgo):
// opening with the right pragmas, and schema migrations. Each feature keeps
// its tables and queries in its own file here; a feature elsewhere (the
// accounting tables, with the ingest and the reports that query them)
// hands its own migrations to Open as a Schema.
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

	"github.com/collabsync/collabsync/internal/owner"
	"github.com/collabsync/collabsync/internal/statelock"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// Store is an open state database.
type Store struct {
	DB   *sql.DB
	path string

	cache cache
}

// Schema is a feature's tables: its migrations, applied in order, each
// once, and tracked under its name. Never edit a migration that shipped.
type Schema struct {
	Name       string
	Migrations []string
}

// migrations are the store's own (schema "store"). Until 2026-12 every
// feature's migrations were one list numbered by PRAGMA user_version; the
// accounting tables were its third to fifth (see legacy).
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
	// 3: what attributing jobs needs from the directory, as the last sync
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
	// 4: who was provisioned with which name and number, so an incumbent
	// keeps them against a newcomer.
	`ALTER TABLE subject_status ADD COLUMN dn TEXT NOT NULL DEFAULT '';
	ALTER TABLE subject_status ADD COLUMN number INTEGER NOT NULL DEFAULT -1;`,
	// 5: plans held by their guards, and operators' approvals of them
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
	// 6: how long a target has been failing, for the retry queue's metrics.
	`ALTER TABLE outbox ADD COLUMN first_failed INTEGER NOT NULL DEFAULT 0; -- unix nanoseconds`,
	// 7: a counter per table that every write of it bumps, so a process
	// may keep the table in memory and re-read it only when another
	// process wrote it (the daemon's run per change reads no 100k rows).
	`CREATE TABLE generation (
		name TEXT PRIMARY KEY,
		gen  INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// 8: the daemon's live directory model, entry by entry as the
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
	// 9: what each violation says, so it can be listed from the state
	// alone (violations --stored: no directory, no password).
	`ALTER TABLE violation ADD COLUMN severity TEXT NOT NULL DEFAULT '';
	ALTER TABLE violation ADD COLUMN name TEXT NOT NULL DEFAULT '';
	ALTER TABLE violation ADD COLUMN reason TEXT NOT NULL DEFAULT '';
	ALTER TABLE violation ADD COLUMN action TEXT NOT NULL DEFAULT '';`,
	// 10: the peak live heap of a command's last run, which sizes the
	// next run's memory limit (internal/heaplimit).
	`CREATE TABLE run_memory (
		command     TEXT PRIMARY KEY,
		peak_live   INTEGER NOT NULL, -- bytes
		measured_at INTEGER NOT NULL  -- unix seconds
	) WITHOUT ROWID;`,
}

// openLockWait bounds the wait for another process opening the database.
const openLockWait = time.Minute

// Open opens (creating if needed) the database at path and migrates the
// store's own tables and those of the schemas given. The database and its
// -wal and -shm files are 0600 whatever the umask: they hold directory
// data.
func Open(ctx context.Context, path string, schemas ...Schema) (*Store, error) {
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
	// Root's -wal and -shm take the database's owner (SQLite does that).
	err = owner.Like(f, filepath.Dir(path))
	f.Close()
	if err != nil {
		return nil, err
	}
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
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
		// Every transaction takes the write lock when it begins: one that
		// read first and wrote later failed with SQLITE_BUSY_SNAPSHOT at
		// once, whatever the busy timeout, when another process (a plan
		// recording its memory) had written in between.
		"&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{DB: db, path: path}
	if err := s.migrate(ctx, schemas); err != nil { // opens the first connection, inside the lock
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.DB.Close() }

// tracked is PRAGMA user_version once each schema's version is kept in
// the schema_version table; any other value is the single list's version
// of the releases before (0: a new database).
const tracked = 1000

// legacy is, in order, the schema each migration of the single list
// belonged to.
var legacy = []string{"store", "store", "accounting", "accounting", "accounting", "store", "store", "store", "store", "store", "store"}

// legacyVersion is the version of a schema in a database of the single
// list at version v.
func legacyVersion(schema string, v int) int {
	n := 0
	for _, name := range legacy[:v] {
		if name == schema {
			n++
		}
	}
	return n
}

// migrate applies the missing migrations of every schema in one IMMEDIATE
// transaction: it takes SQLite's write lock before reading the versions,
// so two processes opening a new database at once migrate it once (the
// second waits, then finds nothing to do).
func (s *Store) migrate(ctx context.Context, schemas []Schema) error {
	schemas = append([]Schema{{Name: "store", Migrations: migrations}}, schemas...)
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if current, err := versions(ctx, conn); err == nil && upToDate(schemas, current) {
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
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	switch {
	case v == tracked:
	case v > len(legacy):
		return fmt.Errorf("database schema version %d is newer than this collabsync knows", v)
	default:
		// A new database, or one of the single list: each schema's version
		// is counted from it.
		if _, err := conn.ExecContext(ctx, `CREATE TABLE schema_version (
			name    TEXT PRIMARY KEY,
			version INTEGER NOT NULL
		) WITHOUT ROWID`); err != nil {
			return err
		}
		for _, name := range []string{"store", "accounting"} {
			if _, err := conn.ExecContext(ctx, "INSERT INTO schema_version (name, version) VALUES (?, ?)", name, legacyVersion(name, v)); err != nil {
				return err
			}
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", tracked)); err != nil {
			return err
		}
	}
	current, err := versions(ctx, conn)
	if err != nil {
		return err
	}
	for _, sc := range schemas {
		have := current[sc.Name]
		if have > len(sc.Migrations) {
			return fmt.Errorf("the %s tables are at version %d, newer than this collabsync knows (%d)", sc.Name, have, len(sc.Migrations))
		}
		for i := have; i < len(sc.Migrations); i++ {
			if _, err := conn.ExecContext(ctx, sc.Migrations[i]); err != nil {
				return fmt.Errorf("%s migration %d: %w", sc.Name, i+1, err)
			}
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO schema_version (name, version) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version`, sc.Name, len(sc.Migrations)); err != nil {
			return err
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	commit = true
	return nil
}

// versions reads each schema's version (an error before the database
// tracks them).
func versions(ctx context.Context, conn *sql.Conn) (map[string]int, error) {
	rows, err := conn.QueryContext(ctx, "SELECT name, version FROM schema_version")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var name string
		var v int
		if err := rows.Scan(&name, &v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, rows.Err()
}

func upToDate(schemas []Schema, current map[string]int) bool {
	for _, sc := range schemas {
		if current[sc.Name] != len(sc.Migrations) {
			return false
		}
	}
	return true
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
