package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
)

// checkpoint is how far a file has been read.
type checkpoint struct {
	offset, line int64
	fingerprint  []byte
	state        string
	complete     bool
	// hashState is the running SHA-256 of the content up to offset, digest
	// its sum: a file under a new inode whose first offset bytes have that
	// digest is a copy (a rotation compressed or renamed) and resumes there.
	hashState, digest []byte
	// damage says why the file could not be read past offset; the file
	// then had damageSize bytes and mtime damageMtime (unix nanoseconds).
	damage                  string
	damageSize, damageMtime int64
}

const checkpointColumns = "offset, line, fingerprint, state, complete, hash_state, digest, damage, damage_size, damage_mtime"

func scanCheckpoint(row interface{ Scan(...any) error }) (*checkpoint, error) {
	var c checkpoint
	var complete int
	if err := row.Scan(&c.offset, &c.line, &c.fingerprint, &c.state, &complete, &c.hashState, &c.digest,
		&c.damage, &c.damageSize, &c.damageMtime); err != nil {
		return nil, err
	}
	c.complete = complete != 0
	return &c, nil
}

func (in *Ingester) loadCheckpoint(ctx context.Context, source string, dev, ino uint64) (*checkpoint, error) {
	c, err := scanCheckpoint(in.DB.QueryRowContext(ctx, "SELECT "+checkpointColumns+` FROM ingest_checkpoint
		WHERE source = ? AND dev = ? AND inode = ?`, source, int64(dev), int64(ino)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return c, err
}

// findCopy looks for a checkpoint of another file of the source whose
// content this file starts with, comparing SHA-256 digests; the file then
// resumes where that one stopped instead of re-reading every job.
func (in *Ingester) findCopy(ctx context.Context, source string, head []byte, open func() (io.ReadCloser, error)) (*checkpoint, error) {
	rows, err := in.DB.QueryContext(ctx, "SELECT "+checkpointColumns+` FROM ingest_checkpoint
		WHERE source = ? AND offset > 0 ORDER BY offset DESC`, source)
	if err != nil {
		return nil, err
	}
	var candidates []*checkpoint
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		if len(c.digest) > 0 && len(c.fingerprint) > 0 && bytes.HasPrefix(head, c.fingerprint) {
			candidates = append(candidates, c)
		}
	}
	rows.Close()
	for _, c := range candidates {
		r, err := open()
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		n, err := io.CopyN(h, r, c.offset)
		r.Close()
		if err == nil && n == c.offset && bytes.Equal(h.Sum(nil), c.digest) {
			return c, nil
		}
	}
	return nil, nil
}

// fileID identifies a file of a source and what it looked like.
type fileID struct {
	source, path string
	dev, ino     uint64
	size, mtime  int64
}

// damaged records a file's damage (fe says where and why; the file is
// id's), so later runs skip it until it changes, reports it once in the
// log, and returns it.
func (in *Ingester) damaged(ctx context.Context, id fileID, fe *FileError) error {
	fe.Source, fe.Path = id.source, id.path
	in.Log.Error("accounting file damaged; the jobs before the damage are kept, the rest of it is skipped until the file changes",
		"source", id.source, "err", fe)
	_, err := in.DB.ExecContext(ctx, `INSERT INTO ingest_checkpoint (source, dev, inode, path, offset, line, fingerprint, state,
		complete, hash_state, digest, updated_at, damage, damage_size, damage_mtime)
		VALUES (?, ?, ?, ?, 0, 0, X'', '', 0, X'', X'', ?, ?, ?, ?) ON CONFLICT (source, dev, inode)
		DO UPDATE SET path = excluded.path, updated_at = excluded.updated_at, damage = excluded.damage,
		damage_size = excluded.damage_size, damage_mtime = excluded.damage_mtime`,
		id.source, int64(id.dev), int64(id.ino), id.path, in.now().Unix(), fe.Err.Error(), id.size, id.mtime)
	if err != nil {
		return errors.Join(fe, fmt.Errorf("source %s: %s: record the damage: %w", id.source, id.path, err))
	}
	return fe
}
