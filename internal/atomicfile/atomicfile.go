// Package atomicfile replaces files so that readers see the old content or
// the new, never a mix, and a crash leaves no partial file behind.
package atomicfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/collabsync/collabsync/internal/owner"
)

// Write replaces path with data: it writes a temporary file in the same
// directory, fsyncs it, checks it reads back identical and passes verify
// (if not nil), renames it over path and fsyncs the directory. When path
// already holds exactly data, nothing is written and changed is false, so
// the file's mtime stays put.
func Write(path string, data []byte, mode os.FileMode, verify func([]byte) error) (changed bool, err error) {
	if same, err := holds(path, data); err == nil && same {
		return false, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return replace(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, func(tmp string) error {
		if same, err := holds(tmp, data); err != nil {
			return err
		} else if !same {
			return errors.New("content read back differs from what was written")
		}
		if verify != nil {
			return verify(data) // what the file holds
		}
		return nil
	})
}

// Stream replaces path with the content write produces, never holding
// it whole in memory: the content goes to a temporary file once, hashed
// as it goes; the file is fsynced and read back once, its CRC-32C checked
// against the written content's while verify (if not nil) reads it as a
// stream; then it is renamed over path. Unlike Write it does not compare
// with the file in place first: a caller streams content it knows
// differs (an nss apply with changes to make), and the comparison cost a
// second production of the content and a hash of the old file.
func Stream(path string, mode os.FileMode, write func(io.Writer) error, verify func(io.Reader) error) error {
	// CRC-32C, not a cryptographic digest: it checks that the storage gave
	// back what was written (at 1M users two SHA-256 passes over the group
	// file were a tenth of a change's time); nobody forges this file
	// between the write and the read-back.
	table := crc32.MakeTable(crc32.Castagnoli)
	var sum uint32
	var size int64
	_, err := replace(path, mode, func(w io.Writer) error {
		h := crc32.New(table)
		cw := &countingWriter{w: io.MultiWriter(w, h)}
		bw := bufio.NewWriterSize(cw, 64<<10)
		if err := write(bw); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		sum, size = h.Sum32(), cw.n
		return nil
	}, func(tmp string) error {
		f, err := os.Open(tmp)
		if err != nil {
			return err
		}
		defer f.Close()
		h := crc32.New(table)
		back := &countingWriter{w: h}
		r := io.TeeReader(f, back)
		if verify != nil {
			if err := verify(bufio.NewReaderSize(r, 64<<10)); err != nil {
				return err
			}
		}
		if _, err := io.Copy(io.Discard, r); err != nil { // what verify left unread
			return err
		}
		if h.Sum32() != sum || back.n != size {
			return errors.New("content read back differs from what was written")
		}
		return nil
	})
	return err
}

// replace writes a temporary file beside path with fill, fsyncs it, runs
// check on it, renames it over path and fsyncs the directory. A failure
// before the rename leaves path as it was and removes the temporary file.
func replace(path string, mode os.FileMode, fill func(io.Writer) error, check func(tmp string) error) (changed bool, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return false, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer func() {
		if err != nil && !changed {
			os.Remove(tmp.Name())
		}
	}()
	if err = fill(tmp); err == nil {
		if err = owner.Like(tmp, path); err == nil {
			err = tmp.Chmod(mode)
		}
		if err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err = check(tmp.Name()); err != nil {
		return false, fmt.Errorf("verify %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("rename into %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The file is in place; only its durability across a power cut is in doubt.
		return true, fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return true, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// holds reports whether the file at path holds exactly data. It reads in
// blocks: a copy of a file of 100k users would be 7 MB more at once.
func holds(path string, data []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(f, buf)
		if n > len(data) || !bytes.Equal(buf[:n], data[:n]) {
			return false, nil
		}
		data = data[n:]
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return len(data) == 0, nil
		case err != nil:
			return false, err
		}
	}
}

// RemoveStale removes the temporary files Write leaves for path when it is
// killed between creating one and renaming it. Only the caller's own lock
// (no concurrent Write of path) makes this safe.
func RemoveStale(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	stale, err := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+".tmp*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range stale {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
