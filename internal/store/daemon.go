package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Cookie returns a syncrepl stream's stored cookie (nil when none).
func (s *Store) Cookie(ctx context.Context, stream string) ([]byte, error) {
	var c []byte
	err := s.DB.QueryRowContext(ctx, "SELECT cookie FROM sync_cookie WHERE stream = ?", stream).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return c, err
}

// SaveCookie stores a stream's cookie; nil forgets it.
func (s *Store) SaveCookie(ctx context.Context, stream string, cookie []byte) error {
	var err error
	if cookie == nil {
		_, err = s.DB.ExecContext(ctx, "DELETE FROM sync_cookie WHERE stream = ?", stream)
	} else {
		_, err = s.DB.ExecContext(ctx, `INSERT INTO sync_cookie (stream, cookie) VALUES (?, ?)
			ON CONFLICT (stream) DO UPDATE SET cookie = excluded.cookie`, stream, cookie)
	}
	if err != nil {
		return fmt.Errorf("save cookie of %s: %w", stream, err)
	}
	return nil
}

// Queued is a target whose last apply failed and waits to be retried.
type Queued struct {
	Target      string    `json:"target"`
	Changes     int       `json:"changes"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error"`
	// FirstFailed is when the target's first failure in this row of
	// failures happened (kept across restarts).
	FirstFailed time.Time `json:"first_failed"`
}

// Queue lists the targets waiting for a retry.
func (s *Store) Queue(ctx context.Context) ([]Queued, error) {
	rows, err := s.DB.QueryContext(ctx, "SELECT target, changes, attempts, next_attempt, last_error, first_failed FROM outbox ORDER BY target")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Queued
	for rows.Next() {
		var q Queued
		var next, first int64
		if err := rows.Scan(&q.Target, &q.Changes, &q.Attempts, &next, &q.LastError, &first); err != nil {
			return nil, err
		}
		q.NextAttempt = time.Unix(0, next).UTC()
		q.FirstFailed = time.Unix(0, first).UTC()
		out = append(out, q)
	}
	return out, rows.Err()
}

// Enqueue records a failed apply and returns the attempts so far.
func (s *Store) Enqueue(ctx context.Context, target string, changes int, cause error, backoff func(attempts int) time.Duration, now time.Time) (Queued, error) {
	var q Queued
	err := s.DB.QueryRowContext(ctx, "SELECT attempts FROM outbox WHERE target = ?", target).Scan(&q.Attempts)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return q, err
	}
	q.Target, q.Changes, q.LastError = target, changes, cause.Error()
	q.Attempts++
	q.NextAttempt = now.Add(backoff(q.Attempts))
	_, err = s.DB.ExecContext(ctx, `INSERT INTO outbox (target, changes, attempts, next_attempt, last_error, first_failed)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (target) DO UPDATE SET changes = excluded.changes, attempts = excluded.attempts,
		next_attempt = excluded.next_attempt, last_error = excluded.last_error`,
		q.Target, q.Changes, q.Attempts, q.NextAttempt.UnixNano(), q.LastError, now.UnixNano())
	return q, err
}

// Dequeue forgets a target's failure after a successful apply.
func (s *Store) Dequeue(ctx context.Context, target string) error {
	_, err := s.DB.ExecContext(ctx, "DELETE FROM outbox WHERE target = ?", target)
	return err
}
