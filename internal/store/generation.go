package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/collabsync/collabsync/internal/directory"
)

// cache holds tables a process reads on every run, each with the
// generation it was read at.
type cache struct {
	mu sync.Mutex
	// statuses, when not nil, were read at statusGen; statusKnown says
	// the table was at statusGen when this process last read or wrote it.
	statuses     directory.History
	statusGen    int64
	statusKnown  bool
	violations   map[violationKey]storedViolation
	violationGen int64
	// recorded is the list RecordViolations last recorded, in strict
	// (kind, subject) order, dated: what violations holds, as a list. Nil
	// whenever violations is.
	recorded []directory.Violation
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// generation returns a table's write counter (0 before its first write).
func (s *Store) generation(ctx context.Context, q queryer, table string) (int64, error) {
	var gen int64
	err := q.QueryRowContext(ctx, "SELECT gen FROM generation WHERE name = ?", table).Scan(&gen)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return gen, err
}

// bump counts a write of a table, inside the writing transaction.
func (s *Store) bump(ctx context.Context, tx *sql.Tx, table string) (int64, error) {
	var gen int64
	err := tx.QueryRowContext(ctx, `INSERT INTO generation (name, gen) VALUES (?, 1)
		ON CONFLICT (name) DO UPDATE SET gen = gen + 1 RETURNING gen`, table).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("count write of %s: %w", table, err)
	}
	return gen, nil
}
