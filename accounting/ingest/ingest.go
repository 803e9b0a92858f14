package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// Source is one configured log source.
type Source struct {
	Name    string
	Format  string
	Options accounting.Options
}

// Ingester writes jobs into the store.
type Ingester struct {
	DB *sql.DB
	// Attribute names the collaboration a job is charged to.
	Attribute func(*accounting.Job) string
	Log       *slog.Logger
	// BatchLines is how many lines go into one transaction (default 10000).
	BatchLines int
	// Progress, if set, hears how far a file has been stored (from the
	// goroutine that writes to the store; calls never overlap).
	Progress func(path string, done, total int64)
	// Now is the clock (tests set it).
	Now func() time.Time
}

// UsageKey identifies ingested usage for metrics.
type UsageKey struct{ Cluster, Collaboration string }

// Stats is what an ingest did.
type Stats struct {
	Files      int
	Lines      int64
	BadLines   int64
	Jobs       int64 // decoded
	Inserted   int64 // new to the store
	Duplicates int64 // already stored (a re-read)
	// CoreSeconds of the inserted jobs.
	CoreSeconds map[UsageKey]int64
	NewestEnd   time.Time
}

func (s *Stats) add(o Stats) {
	s.Files += o.Files
	s.Lines += o.Lines
	s.BadLines += o.BadLines
	s.Jobs += o.Jobs
	s.Inserted += o.Inserted
	s.Duplicates += o.Duplicates
	for k, v := range o.CoreSeconds {
		if s.CoreSeconds == nil {
			s.CoreSeconds = map[UsageKey]int64{}
		}
		s.CoreSeconds[k] += v
	}
	if o.NewestEnd.After(s.NewestEnd) {
		s.NewestEnd = o.NewestEnd
	}
}

// BadLineError reports one bad line with its file and line number.
type BadLineError struct {
	Path string
	Line int64
	Err  error
}

func (e *BadLineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err) }

// reportedBadLines is how many bad lines per file are logged one by one.
const reportedBadLines = 10

// maxLine bounds a line; a longer one is a bad line, skipped.
const maxLine = 1 << 20

// fingerprintLen is how many leading bytes identify a file's content.
const fingerprintLen = 64

// Ingest reads the source's files, oldest first (rotated files before the
// live one), and records what it did for the source.
func (in *Ingester) Ingest(ctx context.Context, src Source, paths []string) (Stats, error) {
	type file struct {
		path  string
		mtime time.Time
	}
	files := make([]file, 0, len(paths))
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return Stats{}, err
		}
		if st.Mode().IsRegular() {
			files = append(files, file{p, st.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mtime.Equal(files[j].mtime) {
			return files[i].mtime.Before(files[j].mtime)
		}
		return files[i].path > files[j].path // sacct.log.2 before sacct.log.1
	})
	var total Stats
	for _, f := range files {
		st, err := in.IngestFile(ctx, src, f.path)
		total.add(st)
		if err != nil {
			return total, err
		}
	}
	if err := in.recordRun(ctx, src.Name, total); err != nil {
		return total, err
	}
	return total, nil
}

func (in *Ingester) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

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
}

const checkpointColumns = "offset, line, fingerprint, state, complete, hash_state, digest"

func scanCheckpoint(row interface{ Scan(...any) error }) (*checkpoint, error) {
	var c checkpoint
	var complete int
	if err := row.Scan(&c.offset, &c.line, &c.fingerprint, &c.state, &complete, &c.hashState, &c.digest); err != nil {
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

// IngestFile reads one file from its checkpoint on.
func (in *Ingester) IngestFile(ctx context.Context, src Source, path string) (Stats, error) {
	stats := Stats{Files: 1}
	newDecoder, ok := Formats[src.Format]
	if !ok {
		return stats, fmt.Errorf("source %s: unknown format %q", src.Name, src.Format)
	}
	f, err := os.Open(path)
	if err != nil {
		return stats, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return stats, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stats, fmt.Errorf("%s: no inode information", path)
	}
	dev, ino := uint64(sys.Dev), sys.Ino
	cp, err := in.loadCheckpoint(ctx, src.Name, dev, ino)
	if err != nil {
		return stats, fmt.Errorf("%s: load checkpoint: %w", path, err)
	}
	compressed, err := isGzip(f)
	if err != nil {
		return stats, fmt.Errorf("%s: %w", path, err)
	}
	if cp != nil && (cp.complete || (!compressed && cp.offset == fi.Size())) {
		if ok, err := sameStart(f, compressed, cp.fingerprint); err != nil || ok {
			return stats, err // nothing new (or an error reading it)
		}
	}
	var r io.Reader = f
	if compressed {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return stats, fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	dec := newDecoder(src.Options)
	br := bufio.NewReaderSize(r, maxLine)
	var offset, line int64
	head, err := br.Peek(fingerprintLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return stats, fmt.Errorf("%s: %w", path, err)
	}
	if cp == nil && len(head) > 0 {
		open := func() (io.ReadCloser, error) { return openContent(path) }
		if cp, err = in.findCopy(ctx, src.Name, head, open); err != nil {
			return stats, fmt.Errorf("%s: look for an ingested copy: %w", path, err)
		}
		if cp != nil {
			in.Log.Info("file is a copy of one already ingested; resuming where it stopped", "source", src.Name, "path", path, "offset", cp.offset)
		}
	}
	h := sha256.New()
	if cp != nil && cp.offset > 0 && bytes.HasPrefix(head, cp.fingerprint) {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.hashState); err != nil {
			return stats, fmt.Errorf("%s: checkpoint hash state: %w", path, err)
		}
		if _, err := io.CopyN(io.Discard, br, cp.offset); err != nil {
			return stats, fmt.Errorf("%s: skip to checkpoint at byte %d: %w", path, cp.offset, err)
		}
		offset, line = cp.offset, cp.line
		if err := dec.Restore(cp.state); err != nil {
			return stats, fmt.Errorf("%s: restore decoder state: %w", path, err)
		}
	} else if cp != nil {
		in.Log.Info("file content changed under its inode; reading it from the start", "source", src.Name, "path", path)
	}
	fp := append([]byte(nil), head[:min(len(head), fingerprintLen)]...)
	w := &writer{db: in.DB, source: src.Name, dev: dev, ino: ino, path: path, now: in.now}
	rd := &reader{in: in, src: src, path: path, size: fi.Size(), compressed: compressed, dec: dec, br: br, hash: h,
		offset: offset, line: line, fp: fp}
	err = rd.run(ctx, w)
	stats.add(rd.stats)
	stats.add(w.stats)
	return stats, err
}

// reader decodes a file from its checkpoint on, handing batches of jobs to
// the writer running beside it.
type reader struct {
	in         *Ingester
	src        Source
	path       string
	size       int64
	compressed bool
	dec        accounting.Decoder
	br         *bufio.Reader
	hash       hash.Hash // SHA-256 of the content up to the last record boundary

	offset, line int64  // consumed so far
	fp           []byte // the file's first bytes
	pending      []byte // lines of a record not complete yet
	cur          *batch
	stats        Stats // Lines, BadLines, Jobs
}

// run reads to the end of the file, or to the first error of the reader
// or the writer.
func (r *reader) run(ctx context.Context, w *writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One batch in the channel, one being written, one being filled: the
	// memory stays bounded while both cores work.
	batches := make(chan *batch, 1)
	written := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			if err != nil {
				continue // drain: the reader stops at its next send
			}
			if err = w.write(ctx, b); err != nil {
				err = fmt.Errorf("%s: %w", r.path, err)
				cancel()
			} else if r.in.Progress != nil {
				r.in.Progress(r.path, b.cp.offset, r.size)
			}
		}
		written <- err
	}()
	r.cur = &batch{cp: checkpoint{offset: r.offset, line: r.line, state: r.dec.State(), fingerprint: r.fp}}
	readErr := r.read(ctx, batches)
	if readErr == nil {
		readErr = r.send(ctx, batches, r.compressed)
	}
	close(batches)
	// The writer's error is the cause when it cancelled the reader.
	if writeErr := <-written; writeErr != nil {
		return writeErr
	}
	return readErr
}

func (r *reader) batchLines() int {
	if r.in.BatchLines > 0 {
		return r.in.BatchLines
	}
	return 10000
}

// send finishes the current batch's checkpoint and hands the batch over.
func (r *reader) send(ctx context.Context, batches chan<- *batch, complete bool) error {
	b := r.cur
	b.cp.complete = complete
	var err error
	if b.cp.hashState, err = r.hash.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return err
	}
	b.cp.digest = r.hash.Sum(nil)
	if len(b.cp.fingerprint) > int(b.cp.offset) && !complete {
		b.cp.fingerprint = b.cp.fingerprint[:b.cp.offset]
	}
	select {
	case batches <- b:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.cur = &batch{cp: b.cp, jobs: make([]staged, 0, len(b.jobs))}
	r.cur.cp.fingerprint = r.fp
	return nil
}

// handle stages a line's jobs, or counts and reports a bad line.
func (r *reader) handle(jobs []accounting.Job, derr error) {
	if derr != nil {
		r.stats.BadLines++
		if r.stats.BadLines <= reportedBadLines {
			r.in.Log.Warn("bad line skipped", "source", r.src.Name, "err", &BadLineError{Path: r.path, Line: r.line, Err: derr})
		}
	}
	for i := range jobs {
		if err := jobs[i].Check(); err != nil {
			r.handle(nil, fmt.Errorf("job %s: %w", jobs[i].JobID, err))
			return
		}
		r.stats.Jobs++
		r.cur.jobs = append(r.cur.jobs, staged{job: jobs[i], collab: r.in.Attribute(&jobs[i])})
	}
}

// read decodes lines, sending a batch at the first record boundary after
// every batchLines lines.
func (r *reader) read(ctx context.Context, batches chan<- *batch) error {
	inBatch := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, rerr := r.br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			// Skip the rest of an overlong line.
			n := int64(len(raw))
			for errors.Is(rerr, bufio.ErrBufferFull) {
				raw, rerr = r.br.ReadSlice('\n')
				n += int64(len(raw))
			}
			r.offset += n
			r.line++
			r.stats.Lines++
			r.handle(nil, fmt.Errorf("line longer than %d bytes", maxLine))
			continue
		}
		if errors.Is(rerr, io.EOF) {
			// A last line without its newline is still being written to a
			// live file; a compressed file is complete.
			if r.compressed {
				if len(raw) > 0 {
					r.pending = append(r.pending, raw...)
					r.offset += int64(len(raw))
					r.line++
					r.stats.Lines++
					jobs, _, derr := r.dec.Line(raw)
					r.handle(jobs, derr)
				}
				jobs, derr := r.dec.Flush()
				r.handle(jobs, derr)
				r.hash.Write(r.pending)
				r.cur.cp.offset, r.cur.cp.line, r.cur.cp.state = r.offset, r.line, r.dec.State()
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%s: read at byte %d: %w", r.path, r.offset, rerr)
		}
		r.offset += int64(len(raw))
		r.line++
		r.stats.Lines++
		inBatch++
		jobs, boundary, derr := r.dec.Line(raw[:len(raw)-1])
		r.handle(jobs, derr)
		if !boundary {
			r.pending = append(r.pending, raw...) // hashed once its record is complete
			continue
		}
		r.hash.Write(r.pending)
		r.hash.Write(raw)
		r.pending = r.pending[:0]
		r.cur.cp.offset, r.cur.cp.line, r.cur.cp.state = r.offset, r.line, r.dec.State()
		if inBatch >= r.batchLines() {
			if err := r.send(ctx, batches, false); err != nil {
				return err
			}
			inBatch = 0
		}
	}
}

// openContent opens a file's content, decompressing gzip.
func openContent(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	gz, err := isGzip(f)
	if err != nil || !gz {
		return f, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// isGzip sniffs the gzip magic number and rewinds.
func isGzip(f *os.File) (bool, error) {
	var magic [2]byte
	n, err := f.ReadAt(magic[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b, nil
}

// sameStart reports whether the file still begins with the fingerprint.
func sameStart(f *os.File, compressed bool, fp []byte) (bool, error) {
	var r io.Reader = io.NewSectionReader(f, 0, 1<<62)
	if compressed {
		gz, err := gzip.NewReader(io.NewSectionReader(f, 0, 1<<62))
		if err != nil {
			return false, err
		}
		defer gz.Close()
		r = gz
	}
	head := make([]byte, len(fp))
	if _, err := io.ReadFull(r, head); err != nil {
		return false, nil
	}
	return bytes.Equal(head, fp), nil
}
