package accounting

import (
	"context"
	"database/sql"
	"fmt"
	"maps"

	"github.com/collabsync/collabsync/internal/directory"
)

// Allocations are the collaborations' allocations, by name; only those
// that have one.
type Allocations map[string]directory.Allocation

// AllocationsOf are the allocations of a state's collaborations.
func AllocationsOf(st *directory.State) Allocations {
	out := Allocations{}
	if st == nil {
		return out
	}
	for _, c := range st.Collaborations {
		if c.Allocation != (directory.Allocation{}) {
			out[c.Name] = c.Allocation
		}
	}
	return out
}

// LoadAllocations reads the allocations the last sync saved.
func LoadAllocations(ctx context.Context, db *sql.DB) (Allocations, error) {
	rows, err := db.QueryContext(ctx, `SELECT collaboration, core_hours, gpu_hours FROM allocation`)
	if err != nil {
		return nil, fmt.Errorf("read allocations: %w", err)
	}
	defer rows.Close()
	out := Allocations{}
	for rows.Next() {
		var name string
		var a directory.Allocation
		if err := rows.Scan(&name, &a.CoreHours, &a.GPUHours); err != nil {
			return nil, fmt.Errorf("read allocations: %w", err)
		}
		out[name] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read allocations: %w", err)
	}
	return out, nil
}

// SaveAllocations makes the stored allocations a, writing only what
// differs (every read of the directory saves them; they rarely change).
func SaveAllocations(ctx context.Context, db *sql.DB, a Allocations) error {
	old, err := LoadAllocations(ctx, db)
	if err != nil {
		return err
	}
	if maps.Equal(old, a) {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save allocations: %w", err)
	}
	defer tx.Rollback()
	for name := range old {
		if _, ok := a[name]; !ok {
			if _, err := tx.ExecContext(ctx, `DELETE FROM allocation WHERE collaboration = ?`, name); err != nil {
				return fmt.Errorf("save allocations: %w", err)
			}
		}
	}
	for name, al := range a {
		if o, ok := old[name]; ok && o == al {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO allocation (collaboration, core_hours, gpu_hours) VALUES (?, ?, ?)
			ON CONFLICT (collaboration) DO UPDATE SET core_hours = excluded.core_hours, gpu_hours = excluded.gpu_hours`,
			name, al.CoreHours, al.GPUHours); err != nil {
			return fmt.Errorf("save allocations: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save allocations: %w", err)
	}
	return nil
}
