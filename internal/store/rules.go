package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// Statuses returns what was last provisioned of each subject.
func (s *Store) Statuses(ctx context.Context) (directory.Previous, error) {
	rows, err := s.DB.QueryContext(ctx, "SELECT subject, status, dn, number FROM subject_status")
	if err != nil {
		return nil, fmt.Errorf("read statuses: %w", err)
	}
	defer rows.Close()
	prev := directory.Previous{}
	for rows.Next() {
		var subject string
		var p directory.Provisioned
		if err := rows.Scan(&subject, &p.Status, &p.DN, &p.ID); err != nil {
			return nil, err
		}
		prev[subject] = p
	}
	return prev, rows.Err()
}

// SaveStatuses makes the stored statuses these, in one transaction,
// writing only the rows that differ from stored, what the store held when
// the run read it (the caller's lock keeps it so): a run that changed one
// subject of 100k writes one row, not 100k. A nil stored is read first.
func (s *Store) SaveStatuses(ctx context.Context, stored, statuses directory.Previous, now time.Time) error {
	if stored == nil {
		var err error
		if stored, err = s.Statuses(ctx); err != nil {
			return err
		}
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	del, err := tx.PrepareContext(ctx, "DELETE FROM subject_status WHERE subject = ?")
	if err != nil {
		return err
	}
	defer del.Close()
	for subject := range stored {
		if _, ok := statuses[subject]; !ok {
			if _, err := del.ExecContext(ctx, subject); err != nil {
				return fmt.Errorf("forget status of %s: %w", subject, err)
			}
		}
	}
	upsert, err := tx.PrepareContext(ctx, `INSERT INTO subject_status (subject, status, dn, number, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (subject) DO UPDATE SET status = excluded.status, dn = excluded.dn, number = excluded.number,
		updated_at = excluded.updated_at`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	for subject, p := range statuses {
		if old, ok := stored[subject]; ok && old == p {
			continue
		}
		if _, err := upsert.ExecContext(ctx, subject, p.Status, p.DN, p.ID, now.Unix()); err != nil {
			return fmt.Errorf("save status of %s: %w", subject, err)
		}
	}
	return tx.Commit()
}

// violationKey identifies a violation across runs.
func violationKey(v directory.Violation) (string, string) { return string(v.Kind), v.Subject }

// RecordViolations stores the current violations, forgets those that are
// gone, and sets each one's Since to when it was first seen.
func (s *Store) RecordViolations(ctx context.Context, vs []directory.Violation, now time.Time) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	upsert, err := tx.PrepareContext(ctx, `INSERT INTO violation (kind, subject, first_seen, last_seen) VALUES (?, ?, ?, ?)
		ON CONFLICT (kind, subject) DO UPDATE SET last_seen = excluded.last_seen RETURNING first_seen`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	for i := range vs {
		kind, subject := violationKey(vs[i])
		var first int64
		if err := upsert.QueryRowContext(ctx, kind, subject, now.UnixNano(), now.UnixNano()).Scan(&first); err != nil {
			return fmt.Errorf("record violation %s of %s: %w", kind, subject, err)
		}
		vs[i].Since = time.Unix(0, first).UTC()
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM violation WHERE last_seen < ?", now.UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// ViolationsSince fills Since from the store without recording anything,
// for read-only commands; unseen violations get now.
func (s *Store) ViolationsSince(ctx context.Context, vs []directory.Violation, now time.Time) error {
	stmt, err := s.DB.PrepareContext(ctx, "SELECT first_seen FROM violation WHERE kind = ? AND subject = ?")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range vs {
		kind, subject := violationKey(vs[i])
		var first int64
		switch err := stmt.QueryRowContext(ctx, kind, subject).Scan(&first); {
		case err == nil:
			vs[i].Since = time.Unix(0, first).UTC()
		case errors.Is(err, sql.ErrNoRows):
			vs[i].Since = now.UTC()
		default:
			return fmt.Errorf("read violation %s of %s: %w", kind, subject, err)
		}
	}
	return nil
}
