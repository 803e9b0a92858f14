package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Held is a plan a guard refused, waiting for an operator's approval.
type Held struct {
	Target string    `json:"target"`
	Digest string    `json:"digest"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// HoldPlan records that a target's plan is held; the same digest keeps the
// date it was first held.
func (s *Store) HoldPlan(ctx context.Context, h Held) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO held_plan (target, digest, reason, since) VALUES (?, ?, ?, ?)
		ON CONFLICT (target) DO UPDATE SET reason = excluded.reason,
		since = CASE WHEN digest = excluded.digest THEN since ELSE excluded.since END, digest = excluded.digest`,
		h.Target, h.Digest, h.Reason, h.Since.Unix())
	return err
}

// HeldPlan returns the target's held plan, or nil.
func (s *Store) HeldPlan(ctx context.Context, target string) (*Held, error) {
	h := Held{Target: target}
	var since int64
	err := s.DB.QueryRowContext(ctx, "SELECT digest, reason, since FROM held_plan WHERE target = ?", target).Scan(&h.Digest, &h.Reason, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	h.Since = time.Unix(since, 0)
	return &h, err
}

// Reconciled forgets a target's held plan and its approval: its plan went
// through (or had nothing to do).
func (s *Store) Reconciled(ctx context.Context, target string) error {
	if _, err := s.DB.ExecContext(ctx, "DELETE FROM held_plan WHERE target = ?", target); err != nil {
		return err
	}
	_, err := s.DB.ExecContext(ctx, "DELETE FROM approval WHERE target = ?", target)
	return err
}

// Approve records an operator's approval of one plan of a target.
func (s *Store) Approve(ctx context.Context, target, digest string, now time.Time) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO approval (target, digest, approved_at) VALUES (?, ?, ?)
		ON CONFLICT (target) DO UPDATE SET digest = excluded.digest, approved_at = excluded.approved_at`, target, digest, now.Unix())
	return err
}

// Approvals returns the recorded approvals, target → digest.
func (s *Store) Approvals(ctx context.Context) (map[string]string, error) {
	rows, err := s.DB.QueryContext(ctx, "SELECT target, digest FROM approval")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var t, d string
		if err := rows.Scan(&t, &d); err != nil {
			return nil, err
		}
		out[t] = d
	}
	return out, rows.Err()
}
