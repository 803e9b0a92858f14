package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/collabsync/collabsync/internal/directory"
)

// LookupLimit is how many subjects a StatusLookup looks up one by one
// before it reads the table whole.
const LookupLimit = 1000

// StatusLookup is the stored statuses for a run that records none (a dry
// run, a report of violations): its rules ask after the few subjects a
// hold or a clash concerns, so each is looked up on its own instead of
// the table read whole (at 1M users 1.1M rows, 1.2 s of CPU beside the
// directory's read, which has no core to spare). After LookupLimit
// lookups, and for Len and All, the table is read whole (Statuses) and
// answers the rest.
//
// A failed read answers "none" and is kept: the caller fails the run on
// Err, never acting on what the lookup answered.
type StatusLookup struct {
	ctx context.Context
	s   *Store

	mu    sync.Mutex
	asked int
	whole directory.History
	err   error
}

var _ directory.History = (*StatusLookup)(nil)

// StatusLookup returns the stored statuses, looked up as they are asked
// after; ctx bounds every lookup.
func (s *Store) StatusLookup(ctx context.Context) *StatusLookup {
	return &StatusLookup{ctx: ctx, s: s}
}

// Provisioned implements directory.History.
func (l *StatusLookup) Provisioned(key string) (directory.Provisioned, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.asked++; l.asked > LookupLimit {
		if h := l.readWhole(); h != nil {
			return h.Provisioned(key)
		}
		return directory.Provisioned{}, false
	}
	if l.err != nil {
		return directory.Provisioned{}, false
	}
	var p directory.Provisioned
	err := l.s.DB.QueryRowContext(l.ctx, "SELECT status, dn, number FROM subject_status WHERE subject = ?", key).Scan(&p.Status, &p.DN, &p.ID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return directory.Provisioned{}, false
	case err != nil:
		l.err = fmt.Errorf("read the status of %s: %w", key, err)
		return directory.Provisioned{}, false
	}
	return p, true
}

// Len implements directory.History.
func (l *StatusLookup) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.readWhole(); h != nil {
		return h.Len()
	}
	return 0
}

// All implements directory.History.
func (l *StatusLookup) All(fn func(key string, p directory.Provisioned)) {
	l.mu.Lock()
	h := l.readWhole()
	l.mu.Unlock()
	if h != nil {
		h.All(fn)
	}
}

// Err is the first read that failed, if any.
func (l *StatusLookup) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// readWhole reads the table, once; nil after a failed read (l.mu held).
func (l *StatusLookup) readWhole() directory.History {
	if l.whole == nil && l.err == nil {
		l.whole, l.err = l.s.Statuses(l.ctx)
	}
	if l.err != nil {
		return nil
	}
	return l.whole
}
