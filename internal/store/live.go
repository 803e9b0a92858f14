package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// LoadModel calls each for every entry of the live model saved under
// digest and returns the streams' cookies. A model saved under another
// digest (other searches or mappings) is discarded: nothing is returned.
// attrs are the model's own encoding of an entry, which its digest
// versions (live_entry's schema comment says JSON: the form until the
// model's journal version 3, whose binary form ldapx encodes).
func (s *Store) LoadModel(ctx context.Context, digest string, each func(stream, key, dn string, attrs []byte) error) (map[string][]byte, error) {
	var saved string
	err := s.DB.QueryRowContext(ctx, "SELECT digest FROM live_model WHERE id = 1").Scan(&saved)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && saved != digest) {
		return nil, s.clearModel(ctx, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("read saved live model: %w", err)
	}
	rows, err := s.DB.QueryContext(ctx, "SELECT stream, key, dn, attrs FROM live_entry")
	if err != nil {
		return nil, fmt.Errorf("read saved live model: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var stream, key, dn string
		var attrs []byte
		if err := rows.Scan(&stream, &key, &dn, &attrs); err != nil {
			return nil, fmt.Errorf("read saved live model: %w", err)
		}
		if err := each(stream, key, dn, attrs); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read saved live model: %w", err)
	}
	rows.Close()
	cookies := map[string][]byte{}
	crows, err := s.DB.QueryContext(ctx, "SELECT stream, cookie FROM sync_cookie")
	if err != nil {
		return nil, fmt.Errorf("read cookies: %w", err)
	}
	defer crows.Close()
	for crows.Next() {
		var stream string
		var c []byte
		if err := crows.Scan(&stream, &c); err != nil {
			return nil, err
		}
		cookies[stream] = c
	}
	return cookies, crows.Err()
}

// clearModel forgets the saved model and cookies, and starts one under digest.
func (s *Store) clearModel(ctx context.Context, digest string) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{"DELETE FROM live_entry", "DELETE FROM sync_cookie"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("clear saved live model: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO live_model (id, digest) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET digest = excluded.digest`, digest); err != nil {
		return fmt.Errorf("clear saved live model: %w", err)
	}
	return tx.Commit()
}

// SaveModel applies changes of the live model and the cookies that cover
// them in one transaction, so a saved cookie never runs ahead of the saved
// entries (a nil cookie forgets the stream's). ops hands each change to
// its yield: an entry as received, or its deletion (attrs nil).
func (s *Store) SaveModel(ctx context.Context, ops func(yield func(stream, key, dn string, attrs []byte) error) error, cookies map[string][]byte) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	put, err := tx.PrepareContext(ctx, `INSERT INTO live_entry (stream, key, dn, attrs) VALUES (?, ?, ?, ?)
		ON CONFLICT (stream, key) DO UPDATE SET dn = excluded.dn, attrs = excluded.attrs`)
	if err != nil {
		return err
	}
	defer put.Close()
	del, err := tx.PrepareContext(ctx, "DELETE FROM live_entry WHERE stream = ? AND key = ?")
	if err != nil {
		return err
	}
	defer del.Close()
	bctx, check := batch(ctx)
	if err := ops(func(stream, key, dn string, attrs []byte) error {
		if err := check(); err != nil {
			return err
		}
		var err error
		if attrs == nil {
			_, err = del.ExecContext(bctx, stream, key)
		} else {
			_, err = put.ExecContext(bctx, stream, key, dn, attrs)
		}
		if err != nil {
			return fmt.Errorf("save live model entry %s: %w", dn, err)
		}
		return nil
	}); err != nil {
		return err
	}
	for stream, c := range cookies {
		if c == nil {
			_, err = tx.ExecContext(ctx, "DELETE FROM sync_cookie WHERE stream = ?", stream)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO sync_cookie (stream, cookie) VALUES (?, ?)
				ON CONFLICT (stream) DO UPDATE SET cookie = excluded.cookie`, stream, c)
		}
		if err != nil {
			return fmt.Errorf("save cookie of %s: %w", stream, err)
		}
	}
	return tx.Commit()
}
