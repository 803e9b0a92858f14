package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// Statuses returns what was last provisioned of each subject, packed (at
// 1M users 1.1M subjects, 213 MB as a map, about half packed). It is
// shared with later calls: cached until a process writes the table or
// ForgetStatuses.
func (s *Store) Statuses(ctx context.Context) (directory.History, error) {
	gen, err := s.generation(ctx, s.DB, "subject_status")
	if err != nil {
		return nil, fmt.Errorf("read statuses: %w", err)
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	if s.cache.statuses != nil && s.cache.statusGen == gen {
		return s.cache.statuses, nil
	}
	var b directory.HistoryBuilder
	var n, size int
	if err := s.DB.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(length(CAST(subject AS BLOB)) + length(CAST(dn AS BLOB))), 0) FROM subject_status").Scan(&n, &size); err != nil {
		return nil, fmt.Errorf("read statuses: %w", err)
	}
	b.Grow(n, size)
	rows, err := s.DB.QueryContext(ctx, "SELECT subject, status, dn, number FROM subject_status")
	if err != nil {
		return nil, fmt.Errorf("read statuses: %w", err)
	}
	defer rows.Close()
	var subject, status, dn sql.RawBytes
	var id int64
	for rows.Next() {
		if err := rows.Scan(&subject, &status, &dn, &id); err != nil {
			return nil, fmt.Errorf("read statuses: %w", err)
		}
		b.Add(subject, directory.Status(status), dn, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read statuses: %w", err)
	}
	if !b.Complete() {
		return nil, fmt.Errorf("read statuses: table subject_status in %s holds more than 255 distinct statuses or 4 GiB of subjects", s.path)
	}
	prev := b.History()
	s.cache.statuses, s.cache.statusGen, s.cache.statusKnown = prev, gen, true
	return prev, nil
}

// ForgetStatuses drops the cached map of the stored statuses: its reader
// holds them another way (directory.State.Against) and a later call reads
// the table again.
func (s *Store) ForgetStatuses() {
	s.cache.mu.Lock()
	s.cache.statuses = nil
	s.cache.mu.Unlock()
}

// SaveStatuses makes the stored statuses these, writing only the rows that
// differ from stored, what the store held when the run read it (the
// caller's lock keeps it so): a run that changed one subject of 100k writes
// one row, not 100k. A nil stored is read first. It is SaveStatusChanges
// for a caller holding the whole new map.
func (s *Store) SaveStatuses(ctx context.Context, stored directory.History, statuses directory.Previous, now time.Time) error {
	if stored == nil {
		var err error
		if stored, err = s.Statuses(ctx); err != nil {
			return err
		}
	}
	changed := directory.Previous{}
	for subject, p := range statuses {
		if old, ok := stored.Provisioned(subject); !ok || old != p {
			changed[subject] = p
		}
	}
	var gone []string
	stored.All(func(subject string, _ directory.Provisioned) {
		if _, ok := statuses[subject]; !ok {
			gone = append(gone, subject)
		}
	})
	_, err := s.SaveStatusChanges(ctx, changed, gone, now)
	return err
}

// StatusGeneration counts the writes of the stored statuses, by any
// process.
func (s *Store) StatusGeneration(ctx context.Context) (int64, error) {
	gen, err := s.generation(ctx, s.DB, "subject_status")
	if err != nil {
		return 0, fmt.Errorf("read statuses: %w", err)
	}
	return gen, nil
}

// SaveStatusChanges applies a run's difference from the stored statuses
// (directory.State.StatusDiff): changed (or new) subjects are written,
// gone ones deleted, in one transaction; a run that changed nothing
// writes nothing. The cached map is dropped either way, not kept up to
// date: serve's next run takes the state it saved as the history
// (wiring.Rules), and a map of every subject beside it was 10 MB at 100k
// users. gen is the
// StatusGeneration the save left when the table was as this process last
// read or wrote it as the save began (no other process wrote since), else
// -1; 0 when there was nothing to write.
func (s *Store) SaveStatusChanges(ctx context.Context, changed directory.History, gone []string, now time.Time) (gen int64, err error) {
	if changed == nil {
		changed = directory.Previous(nil)
	}
	if changed.Len() == 0 && len(gone) == 0 {
		// The caller takes the state it saved as the history all the
		// same: the map is dropped (at 1M users serve held 213 MB of it
		// at rest after a restart that changed nothing).
		s.ForgetStatuses()
		return 0, nil
	}
	err = s.saveStatusChanges(ctx, changed, gone, now, &gen)
	return gen, err
}

func (s *Store) saveStatusChanges(ctx context.Context, changed directory.History, gone []string, now time.Time, saved *int64) error {
	*saved = -1
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	before, err := s.generation(ctx, tx, "subject_status")
	if err != nil {
		return err
	}
	bctx, check := batch(ctx)
	for _, subject := range gone {
		if err := check(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(bctx, "DELETE FROM subject_status WHERE subject = ?", subject); err != nil {
			return fmt.Errorf("forget status of %s: %w", subject, err)
		}
	}
	upsert, err := tx.PrepareContext(ctx, `INSERT INTO subject_status (subject, status, dn, number, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (subject) DO UPDATE SET status = excluded.status, dn = excluded.dn, number = excluded.number,
		updated_at = excluded.updated_at`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	changed.All(func(subject string, p directory.Provisioned) {
		if err == nil {
			err = check()
		}
		if err != nil {
			return
		}
		if _, err = upsert.ExecContext(bctx, subject, p.Status, p.DN, p.ID, now.Unix()); err != nil {
			err = fmt.Errorf("save status of %s: %w", subject, err)
		}
	})
	if err != nil {
		return err
	}
	gen, err := s.bump(ctx, tx, "subject_status")
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	s.cache.statuses = nil
	if !s.cache.statusKnown || s.cache.statusGen != before {
		s.cache.statusKnown = false // another process wrote meanwhile
		return nil
	}
	s.cache.statusGen, *saved = gen, gen
	return nil
}

// violationKey identifies a violation across runs.
type violationKey struct{ kind, subject string }

func keyOf(v directory.Violation) violationKey { return violationKey{string(v.Kind), v.Subject} }

// storedViolation is a violation's row: when it was first seen and what
// it said last.
type storedViolation struct {
	first                          int64 // unix nanoseconds
	severity, name, reason, action string
}

// wordsOf is what v says, as its row keeps it (first unset).
func wordsOf(v directory.Violation) storedViolation {
	return storedViolation{severity: string(v.Severity), name: v.Name, reason: v.Reason, action: string(v.Action)}
}

func (sv storedViolation) says(v directory.Violation) bool {
	return sv.severity == string(v.Severity) && sv.name == v.Name && sv.reason == v.Reason && sv.action == string(v.Action)
}

// RecordViolations stores the current violations, forgets those that are
// gone, and sets each one's Since to when it was first seen. Only new,
// changed and gone violations are written. Violations in (kind, subject)
// order, as a state holds them, are walked beside the list recorded last
// (againstRecorded), else looked up in the cached ones, and no map of
// them is made: at 1M users with 100k standing violations, two new maps
// a run were a tenth of a change's time. The store keeps vs until the
// next call: the caller does not change it (a state's violations, which
// nothing changes but their Since, filled in here).
func (s *Store) RecordViolations(ctx context.Context, vs []directory.Violation, now time.Time) error {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	stored, err := s.violationsLocked(ctx)
	if err != nil {
		return err
	}
	written, gone, strict := againstRecorded(s.cache.recorded, vs, now)
	if !strict {
		written, gone = againstStored(stored, vs, now)
	}
	s.cache.recorded = nil
	// Of several violations of one key, the last is what is stored.
	var lastAt map[violationKey]int // the last violation of each key, when not in order
	if !strict && !inStrictOrder(vs) {
		lastAt = make(map[violationKey]int, len(vs))
		for i, v := range vs {
			lastAt[keyOf(v)] = i
		}
	}
	record := func(i int) storedViolation {
		k, j := keyOf(vs[i]), i
		if lastAt != nil {
			j = lastAt[k]
		} else {
			for j+1 < len(vs) && keyOf(vs[j+1]) == k {
				j++
			}
		}
		sv := wordsOf(vs[j])
		sv.first = vs[i].Since.UnixNano()
		return sv
	}
	if err := s.writeViolations(ctx, stored, vs, written, gone, record, now); err != nil {
		return err
	}
	if s.cache.violations != nil && lastAt == nil {
		s.cache.recorded = vs // what the cache now holds
	}
	return nil
}

// keyLess orders violation keys as a state orders its violations.
func keyLess(a, b violationKey) bool {
	return a.kind < b.kind || a.kind == b.kind && a.subject < b.subject
}

// inStrictOrder reports whether vs are in (kind, subject) order with no
// key twice.
func inStrictOrder(vs []directory.Violation) bool {
	for i := 1; i < len(vs); i++ {
		if !keyLess(keyOf(vs[i-1]), keyOf(vs[i])) {
			return false
		}
	}
	return true
}

// againstRecorded dates vs and finds what to write and what is gone by
// walking them beside the list recorded last, when both are in strict
// order (strict false otherwise, and vs to be dated again): a run that
// changed one violation of 100k compares lists that share their strings
// instead of looking each one up (at 1M users the lookups were 43 ms of
// each change).
func againstRecorded(rec, vs []directory.Violation, now time.Time) (written []int, gone []violationKey, strict bool) {
	if rec == nil {
		return nil, nil, false
	}
	j := 0
	for i := range vs {
		k := keyOf(vs[i])
		if i > 0 && !keyLess(keyOf(vs[i-1]), k) {
			return nil, nil, false
		}
		for ; j < len(rec) && keyLess(keyOf(rec[j]), k); j++ {
			gone = append(gone, keyOf(rec[j]))
		}
		if j < len(rec) && keyOf(rec[j]) == k {
			if !wordsOf(rec[j]).says(vs[i]) {
				written = append(written, i)
			}
			date(&vs[i], rec[j].Since)
			j++
			continue
		}
		written = append(written, i)
		date(&vs[i], time.Unix(0, now.UnixNano()).UTC())
	}
	for ; j < len(rec); j++ {
		gone = append(gone, keyOf(rec[j]))
	}
	return written, gone, true
}

// date sets v's Since, only if it differs: a list that two states share
// (the rules keep the last run's when a change leaves it as it was) is
// dated already, and is read meanwhile through the older state.
func date(v *directory.Violation, since time.Time) {
	if v.Since != since {
		v.Since = since
	}
}

// againstStored dates vs and finds what to write and what is gone by
// looking each one up among the stored violations.
func againstStored(stored map[violationKey]storedViolation, vs []directory.Violation, now time.Time) (written []int, gone []violationKey) {
	found, inOrder := 0, true
	for i, v := range vs {
		k := keyOf(v)
		again := false
		if i > 0 {
			prev := keyOf(vs[i-1])
			again = prev == k
			inOrder = inOrder && (prev.kind < k.kind || prev.kind == k.kind && prev.subject <= k.subject)
		}
		sv, ok := stored[k]
		if !ok {
			sv.first = now.UnixNano()
		} else if !again {
			found++ // keys stored and current, each once while in order
		}
		if !ok || !sv.says(v) {
			written = append(written, i)
		}
		date(&vs[i], time.Unix(0, sv.first).UTC())
	}
	if !inOrder || found != len(stored) {
		current := make(map[violationKey]bool, len(vs))
		for _, v := range vs {
			current[keyOf(v)] = true
		}
		for k := range stored {
			if !current[k] {
				gone = append(gone, k)
			}
		}
	}
	return written, gone
}

// writeViolations writes the violations of vs at written (each as record
// makes it) and deletes those gone, keeping the cache in step.
func (s *Store) writeViolations(ctx context.Context, stored map[violationKey]storedViolation, vs []directory.Violation, written []int, gone []violationKey,
	record func(int) storedViolation, now time.Time) error {
	if len(written) == 0 && len(gone) == 0 {
		return nil
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	up, err := tx.PrepareContext(ctx, `INSERT INTO violation (kind, subject, first_seen, last_seen, severity, name, reason, action)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, subject) DO UPDATE SET last_seen = excluded.last_seen,
		severity = excluded.severity, name = excluded.name, reason = excluded.reason, action = excluded.action`)
	if err != nil {
		return err
	}
	defer up.Close()
	bctx, check := batch(ctx)
	for _, i := range written {
		if err := check(); err != nil {
			return err
		}
		v := vs[i]
		sv := record(i)
		if _, err := up.ExecContext(bctx, string(v.Kind), v.Subject, sv.first, now.UnixNano(), sv.severity, sv.name, sv.reason, sv.action); err != nil {
			return fmt.Errorf("record violation %s of %s: %w", v.Kind, v.Subject, err)
		}
	}
	del, err := tx.PrepareContext(ctx, "DELETE FROM violation WHERE kind = ? AND subject = ?")
	if err != nil {
		return err
	}
	defer del.Close()
	for _, k := range gone {
		if err := check(); err != nil {
			return err
		}
		if _, err := del.ExecContext(bctx, k.kind, k.subject); err != nil {
			return fmt.Errorf("forget violation %s of %s: %w", k.kind, k.subject, err)
		}
	}
	before, err := s.generation(ctx, tx, "violation")
	if err != nil {
		return err
	}
	gen, err := s.bump(ctx, tx, "violation")
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		s.cache.violations = nil
		return err
	}
	if before != s.cache.violationGen {
		s.cache.violations = nil // another process wrote meanwhile: read again
		return nil
	}
	// The cache becomes what was written, in place.
	for _, k := range gone {
		delete(stored, k)
	}
	for _, i := range written {
		stored[keyOf(vs[i])] = record(i)
	}
	s.cache.violationGen = gen
	return nil
}

// violationsLocked returns the stored violations, from the cache while no
// process wrote them (cache.mu held).
func (s *Store) violationsLocked(ctx context.Context) (map[violationKey]storedViolation, error) {
	gen, err := s.generation(ctx, s.DB, "violation")
	if err != nil {
		return nil, fmt.Errorf("read violations: %w", err)
	}
	if s.cache.violations != nil && s.cache.violationGen == gen {
		return s.cache.violations, nil
	}
	rows, err := s.DB.QueryContext(ctx, "SELECT kind, subject, first_seen, severity, name, reason, action FROM violation")
	if err != nil {
		return nil, fmt.Errorf("read violations: %w", err)
	}
	defer rows.Close()
	out := map[violationKey]storedViolation{}
	for rows.Next() {
		var k violationKey
		var sv storedViolation
		if err := rows.Scan(&k.kind, &k.subject, &sv.first, &sv.severity, &sv.name, &sv.reason, &sv.action); err != nil {
			return nil, err
		}
		out[k] = sv
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	s.cache.violations, s.cache.violationGen, s.cache.recorded = out, gen, nil
	return out, nil
}

// Violations returns the violations the last recording run found, sorted
// by kind and subject: what `violations --stored` lists without reading
// the directory.
func (s *Store) Violations(ctx context.Context) ([]directory.Violation, error) {
	s.cache.mu.Lock()
	stored, err := s.violationsLocked(ctx)
	s.cache.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make([]directory.Violation, 0, len(stored))
	for k, sv := range stored {
		out = append(out, directory.Violation{Kind: directory.ViolationKind(k.kind), Subject: k.subject,
			Severity: directory.Severity(sv.severity), Name: sv.name, Reason: sv.reason, Action: directory.Action(sv.action),
			Since: time.Unix(0, sv.first).UTC()})
	}
	slices.SortFunc(out, func(a, b directory.Violation) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return out, nil
}
