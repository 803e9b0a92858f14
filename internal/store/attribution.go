package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Attribution is what charging jobs to collaborations needs from the
// directory: the collaborations' names and each user's administrative
// collaboration.
type Attribution struct {
	Collaborations []string
	AdminOf        map[string]string // uid → administrative collaboration
	SavedAt        time.Time         // when a sync last confirmed it
}

const (
	attrCollaboration = "collaboration"
	attrUser          = "user"
)

// rows returns the attribution as (kind, name) → collaboration.
func (a *Attribution) rows() map[[2]string]string {
	out := make(map[[2]string]string, len(a.Collaborations)+len(a.AdminOf))
	for _, c := range a.Collaborations {
		out[[2]string{attrCollaboration, c}] = c
	}
	for uid, c := range a.AdminOf {
		out[[2]string{attrUser, uid}] = c
	}
	return out
}

// digest hashes the attribution in a fixed order, without building rows:
// confirming an unchanged one is what every run pays.
func (a *Attribution) digest() []byte {
	collabs := slices.Clone(a.Collaborations)
	slices.Sort(collabs)
	uids := make([]string, 0, len(a.AdminOf))
	for uid := range a.AdminOf {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	h := sha256.New()
	var buf []byte
	field := func(s string) {
		buf = strconv.AppendInt(buf[:0], int64(len(s)), 10)
		buf = append(buf, ':')
		h.Write(buf)
		h.Write([]byte(s))
	}
	for _, c := range collabs {
		field(attrCollaboration)
		field(c)
	}
	for _, uid := range uids {
		field(attrUser)
		field(uid)
		field(a.AdminOf[uid])
	}
	return h.Sum(nil)
}

// SaveAttribution stores the attribution a sync computed. An unchanged one
// only has its date renewed; a changed one writes just its differences.
func (s *Store) SaveAttribution(ctx context.Context, a *Attribution, now time.Time) error {
	digest := a.digest()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var old []byte
	err = tx.QueryRowContext(ctx, "SELECT digest FROM attribution_saved WHERE id = 1").Scan(&old)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !bytes.Equal(old, digest) {
		if err := writeAttributionRows(ctx, tx, a.rows()); err != nil {
			return fmt.Errorf("save attribution: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO attribution_saved (id, digest, saved_at) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, saved_at = excluded.saved_at`, digest, now.Unix()); err != nil {
		return err
	}
	return tx.Commit()
}

// ConfirmAttribution records that a sync found the saved attribution
// unchanged.
func (s *Store) ConfirmAttribution(ctx context.Context, now time.Time) error {
	_, err := s.DB.ExecContext(ctx, "UPDATE attribution_saved SET saved_at = ? WHERE id = 1", now.Unix())
	return err
}

func writeAttributionRows(ctx context.Context, tx *sql.Tx, want map[[2]string]string) error {
	have := map[[2]string]string{}
	rows, err := tx.QueryContext(ctx, "SELECT kind, name, collaboration FROM attribution")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k [2]string
		var c string
		if err := rows.Scan(&k[0], &k[1], &c); err != nil {
			rows.Close()
			return err
		}
		have[k] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	bctx, check := batch(ctx)
	for k := range have {
		if err := check(); err != nil {
			return err
		}
		if _, ok := want[k]; !ok {
			if _, err := tx.ExecContext(bctx, "DELETE FROM attribution WHERE kind = ? AND name = ?", k[0], k[1]); err != nil {
				return err
			}
		}
	}
	upsert, err := tx.PrepareContext(ctx, `INSERT INTO attribution (kind, name, collaboration) VALUES (?, ?, ?)
		ON CONFLICT (kind, name) DO UPDATE SET collaboration = excluded.collaboration`)
	if err != nil {
		return err
	}
	defer upsert.Close()
	for k, c := range want {
		if old, ok := have[k]; ok && old == c {
			continue
		}
		if err := check(); err != nil {
			return err
		}
		if _, err := upsert.ExecContext(bctx, k[0], k[1], c); err != nil {
			return err
		}
	}
	return nil
}

// LoadAttribution returns the attribution the last sync saved; nil when
// no sync has saved one yet.
func (s *Store) LoadAttribution(ctx context.Context) (*Attribution, error) {
	var saved int64
	err := s.DB.QueryRowContext(ctx, "SELECT saved_at FROM attribution_saved WHERE id = 1").Scan(&saved)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load attribution: %w", err)
	}
	a := &Attribution{AdminOf: map[string]string{}, SavedAt: time.Unix(saved, 0)}
	rows, err := s.DB.QueryContext(ctx, "SELECT kind, name, collaboration FROM attribution")
	if err != nil {
		return nil, fmt.Errorf("load attribution: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind, name, collab string
		if err := rows.Scan(&kind, &name, &collab); err != nil {
			return nil, err
		}
		switch kind {
		case attrCollaboration:
			a.Collaborations = append(a.Collaborations, name)
		case attrUser:
			a.AdminOf[name] = collab
		}
	}
	return a, rows.Err()
}
