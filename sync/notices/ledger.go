package notices

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/collabsync/collabsync/sync/engine"
)

// SchemaName is the name the state store tracks Migrations' version
// under.
const SchemaName = "notices"

// Migrations are the ledger's tables in the state store (each applied
// once; never edit one that shipped): the notices each target told, and
// when each target's ledger began (a target without a row has never run:
// its first run records what is true and sends nothing).
func Migrations() []string {
	return []string{
		`CREATE TABLE notice_ledger (
			target  TEXT NOT NULL,
			key     TEXT NOT NULL, -- fact/subject/period/recipient
			value   TEXT NOT NULL, -- what it told ('' for a user's account notices)
			told_at INTEGER NOT NULL,
			PRIMARY KEY (target, key)
		) WITHOUT ROWID;
		CREATE TABLE notice_start (
			target TEXT PRIMARY KEY,
			at     INTEGER NOT NULL
		) WITHOUT ROWID;`,
	}
}

// ledger is a target's ledger in the state store.
type ledger struct {
	db     *sql.DB
	target string
}

// begun reports whether the ledger has begun.
func (l ledger) begun(ctx context.Context) (bool, error) {
	var at int64
	err := l.db.QueryRowContext(ctx, `SELECT at FROM notice_start WHERE target = ?`, l.target).Scan(&at)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the notices ledger: %w", err)
	}
	return true, nil
}

// read returns the notices told, and whether the ledger has begun.
func (l ledger) read(ctx context.Context) ([]engine.Record, bool, error) {
	var at int64
	err := l.db.QueryRowContext(ctx, `SELECT at FROM notice_start WHERE target = ?`, l.target).Scan(&at)
	if err == sql.ErrNoRows {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the notices ledger: %w", err)
	}
	rows, err := l.db.QueryContext(ctx, `SELECT key, value FROM notice_ledger WHERE target = ? ORDER BY key`, l.target)
	if err != nil {
		return nil, false, fmt.Errorf("read the notices ledger: %w", err)
	}
	defer rows.Close()
	var recs []engine.Record
	for rows.Next() {
		r := engine.Record{Kind: kind}
		if err := rows.Scan(&r.Key, &r.Value); err != nil {
			return nil, false, err
		}
		recs = append(recs, r)
	}
	return recs, true, rows.Err()
}

// write records notices told (put) and facts ended (del) in one
// transaction; begin also marks the ledger begun.
func (l ledger) write(ctx context.Context, put []engine.Record, del []string, begin bool, now time.Time) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if begin {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO notice_start (target, at) VALUES (?, ?)`, l.target, now.Unix()); err != nil {
			return err
		}
	}
	for _, key := range del {
		if _, err := tx.ExecContext(ctx, `DELETE FROM notice_ledger WHERE target = ? AND key = ?`, l.target, key); err != nil {
			return err
		}
	}
	if len(put) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO notice_ledger (target, key, value, told_at) VALUES (?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range put {
			if _, err := st.ExecContext(ctx, l.target, r.Key, r.Value, now.Unix()); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write the notices ledger: %w", err)
	}
	return nil
}
