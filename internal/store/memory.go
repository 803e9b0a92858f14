package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PeakLive is the peak live heap of the last run of command, 0 if none
// was recorded.
func (s *Store) PeakLive(ctx context.Context, command string) (uint64, error) {
	var peak int64
	err := s.DB.QueryRowContext(ctx, `SELECT peak_live FROM run_memory WHERE command = ?`, command).Scan(&peak)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the last run's memory: %w", err)
	}
	return uint64(max(peak, 0)), nil
}

// SavePeakLive records the peak live heap of a run of command.
func (s *Store) SavePeakLive(ctx context.Context, command string, peak uint64, at time.Time) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO run_memory (command, peak_live, measured_at) VALUES (?, ?, ?)
		ON CONFLICT (command) DO UPDATE SET peak_live = excluded.peak_live, measured_at = excluded.measured_at`,
		command, int64(peak), at.Unix())
	if err != nil {
		return fmt.Errorf("record the run's memory: %w", err)
	}
	return nil
}
