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
	// MaxBadRatio is the share of bad lines among the first SampleLines
	// lines a run reads from a file above which the file is taken to be in
	// another format: nothing from it is stored or checkpointed and the
	// run fails. nil means accounting.DefaultMaxBadRatio; 0 refuses any bad line
	// there, 1 never refuses.
	MaxBadRatio *float64
	// SampleLines is how many lines that decision looks at (default 1000).
	SampleLines int
}

func (s Source) maxBadRatio() float64 {
	if s.MaxBadRatio != nil {
		return *s.MaxBadRatio
	}
	return accounting.DefaultMaxBadRatio
}

func (s Source) sampleLines() int64 {
	if s.SampleLines > 0 {
		return int64(s.SampleLines)
	}
	return accounting.DefaultSampleLines
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
	// Rescan reads every file from its start, ignoring checkpoints, known
	// copies and recorded damage: the natural keys keep it idempotent.
	Rescan bool
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
	// FailedFiles could not be read (to their end) in this run: damaged,
	// unreadable, or in another format. Each is in the returned error.
	FailedFiles int
	// DamagedFiles were found damaged by an earlier run and have not
	// changed since: skipped, not reported again.
	DamagedFiles int
}

func (s *Stats) add(o Stats) {
	s.Files += o.Files
	s.Lines += o.Lines
	s.BadLines += o.BadLines
	s.Jobs += o.Jobs
	s.Inserted += o.Inserted
	s.Duplicates += o.Duplicates
	s.FailedFiles += o.FailedFiles
	s.DamagedFiles += o.DamagedFiles
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

// FileError is a file that could not be read to its end: gone, unreadable,
// or damaged at a byte offset (a truncated or corrupt .gz, an I/O error).
type FileError struct {
	Source string
	Path   string
	// Offset is the byte of the (uncompressed) content where reading
	// failed, -1 when the file could not be opened.
	Offset int64
	// Line is the last line read before the damage; Kept is how many jobs
	// of the lines up to it this run stored (FromLine is the first).
	FromLine, Line, Kept int64
	Err                  error
}

func (e *FileError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("source %s: %s: %v", e.Source, e.Path, e.Err)
	}
	return fmt.Sprintf("source %s: %s: damaged at byte %d of its content (after line %d): %v; kept %d job(s) of lines %d-%d read before it; the file is skipped until it changes",
		e.Source, e.Path, e.Offset, e.Line, e.Err, e.Kept, e.FromLine, e.Line)
}

func (e *FileError) Unwrap() error { return e.Err }

// FormatError is a file most of whose first lines do not decode: it is in
// another format than the source's. Nothing of it was stored.
type FormatError struct {
	Source, Path, Format string
	Bad, Of              int64
	MaxRatio             float64
	First                error // the first bad line
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("source %s: %s: %d of the first %d lines are not format %q records (more than %.0f%%; first: %v); "+
		"nothing of the file was stored or checkpointed: check the source's format (or its max_bad_ratio)",
		e.Source, e.Path, e.Bad, e.Of, e.Format, 100*e.MaxRatio, e.First)
}

// reportedBadLines is how many bad lines per file are logged one by one.
const reportedBadLines = 10

// maxLine bounds a line; a longer one is a bad line, skipped.
const maxLine = 1 << 20

// fingerprintLen is how many leading bytes identify a file's content.
const fingerprintLen = 64

// Ingest reads the source's files, oldest first (rotated files before the
// live one), and records what it did for the source. A file that fails
// (damaged, unreadable, in another format) does not stop the others: the
// returned error joins every file's, each a *FileError or *FormatError.
func (in *Ingester) Ingest(ctx context.Context, src Source, paths []string) (Stats, error) {
	type file struct {
		path  string
		mtime time.Time
	}
	var total Stats
	var errs []error
	files := make([]file, 0, len(paths))
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			total.FailedFiles++
			errs = append(errs, &FileError{Source: src.Name, Path: p, Offset: -1, Err: err})
			continue
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
	for _, f := range files {
		st, err := in.IngestFile(ctx, src, f.path)
		total.add(st)
		if err != nil {
			if ctx.Err() != nil {
				return total, err
			}
			total.FailedFiles++
			errs = append(errs, err)
		}
	}
	if err := in.recordRun(ctx, src.Name, total); err != nil {
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}

func (in *Ingester) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// IngestFile reads one file from its checkpoint on. A file damaged past
// some offset keeps the jobs before it, and its damage is recorded: an
// unchanged damaged file is skipped by later runs without a word.
func (in *Ingester) IngestFile(ctx context.Context, src Source, path string) (Stats, error) {
	stats := Stats{Files: 1}
	newDecoder, ok := Formats()[src.Format]
	if !ok {
		return stats, fmt.Errorf("source %s: unknown format %q", src.Name, src.Format)
	}
	// The inode, size and mtime are the open file's, so a rotation between
	// looking and reading cannot pair one file's checkpoint with another.
	f, openErr := os.Open(path)
	var fi os.FileInfo
	var err error
	if openErr == nil {
		defer f.Close()
		fi, err = f.Stat()
	} else {
		fi, err = os.Stat(path) // unreadable, but there: its damage is recorded
	}
	if err != nil {
		return stats, &FileError{Source: src.Name, Path: path, Offset: -1, Err: errors.Join(openErr, err)}
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stats, fmt.Errorf("source %s: %s: no inode information", src.Name, path)
	}
	id := fileID{source: src.Name, path: path, dev: uint64(sys.Dev), ino: sys.Ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	var cp *checkpoint
	if !in.Rescan {
		if cp, err = in.loadCheckpoint(ctx, src.Name, id.dev, id.ino); err != nil {
			return stats, fmt.Errorf("source %s: %s: load checkpoint: %w", src.Name, path, err)
		}
	}
	if cp != nil && cp.damage != "" {
		if cp.damageSize == id.size && cp.damageMtime == id.mtime {
			stats.DamagedFiles = 1
			in.Log.Debug("damaged file unchanged since it was reported; skipped", "source", src.Name, "path", path, "damage", cp.damage)
			return stats, nil
		}
		in.Log.Info("damaged file changed; reading it again", "source", src.Name, "path", path)
	}
	if openErr != nil {
		return stats, in.damaged(ctx, id, &FileError{Offset: -1, Err: openErr})
	}
	compressed, err := isGzip(f)
	if err != nil {
		return stats, in.damaged(ctx, id, &FileError{Offset: -1, Err: err})
	}
	if cp != nil && cp.damage == "" && (cp.complete || (!compressed && cp.offset == fi.Size())) {
		if ok, err := sameStart(f, compressed, cp.fingerprint); err != nil || ok {
			return stats, err // nothing new (or an error reading it)
		}
	}
	var r io.Reader = f
	if compressed {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return stats, in.damaged(ctx, id, &FileError{Offset: 0, Err: err})
		}
		defer gz.Close()
		r = gz
	}
	dec := newDecoder(src.Options)
	br := bufio.NewReaderSize(r, maxLine)
	var offset, line int64
	head, err := br.Peek(fingerprintLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return stats, in.damaged(ctx, id, &FileError{Offset: 0, Err: err})
	}
	// Peek's bytes live in the reader's buffer, which skipping to the
	// checkpoint below overwrites.
	fp := append(make([]byte, 0, fingerprintLen), head...)
	if cp == nil && len(fp) > 0 && !in.Rescan {
		open := func() (io.ReadCloser, error) { return openContent(path) }
		if cp, err = in.findCopy(ctx, src.Name, fp, open); err != nil {
			return stats, fmt.Errorf("source %s: %s: look for an ingested copy: %w", src.Name, path, err)
		}
		if cp != nil {
			in.Log.Info("file is a copy of one already ingested; resuming where it stopped", "source", src.Name, "path", path, "offset", cp.offset)
		}
	}
	h := sha256.New()
	if cp != nil && cp.offset > 0 && bytes.HasPrefix(fp, cp.fingerprint) {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.hashState); err != nil {
			return stats, fmt.Errorf("source %s: %s: checkpoint hash state: %w", src.Name, path, err)
		}
		if _, err := io.CopyN(io.Discard, br, cp.offset); err != nil {
			return stats, in.damaged(ctx, id, &FileError{Offset: 0, Err: fmt.Errorf("skip to the checkpoint at byte %d: %w", cp.offset, err)})
		}
		offset, line = cp.offset, cp.line
		if err := dec.Restore(cp.state); err != nil {
			return stats, fmt.Errorf("source %s: %s: restore decoder state: %w", src.Name, path, err)
		}
	} else if cp != nil && cp.offset > 0 {
		in.Log.Info("file content changed under its inode; reading it from the start", "source", src.Name, "path", path)
	}
	w := &writer{db: in.DB, source: src.Name, dev: id.dev, ino: id.ino, path: path, now: in.now}
	rd := &reader{in: in, src: src, path: path, size: fi.Size(), compressed: compressed, dec: dec, br: br, hash: h,
		offset: offset, line: line, fp: fp}
	err = rd.run(ctx, w)
	var ferr *FormatError
	if errors.As(err, &ferr) {
		return stats, err // nothing stored: the lines were not read as far as the store knows
	}
	stats.add(rd.stats)
	stats.add(w.stats)
	var rerr *readError
	if errors.As(err, &rerr) {
		return stats, in.damaged(ctx, id, &FileError{Offset: rerr.offset, Err: rerr.err,
			FromLine: line + 1, Line: rerr.line, Kept: w.stats.Inserted + w.stats.Duplicates})
	}
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
	// boundaryHash, when set, is the hash state at the last boundary while
	// hash has already taken bytes beyond it (a long line inside a record).
	boundaryHash []byte

	offset, line int64  // consumed so far
	fp           []byte // the file's first bytes
	pending      []byte // lines of a record not complete yet
	cur          *batch
	stats        Stats // Lines, BadLines, Jobs

	// The format check: batches are held until the first lines are judged.
	held      []*batch
	judged    bool
	undecoded int64 // lines the decoder refused (not implausible jobs)
	firstBad  error
}

// batchWriter takes the reader's batches in order: the store's writer, or
// a test's.
type batchWriter interface {
	write(ctx context.Context, b *batch) error
}

// readError is the file failing under the reader (not a bad line): a
// truncated or corrupt .gz, an I/O error.
type readError struct {
	offset, line int64
	err          error
}

func (e *readError) Error() string { return fmt.Sprintf("read at byte %d: %v", e.offset, e.err) }

// run reads to the end of the file, or to the first error of the reader
// or the writer. After a read error the jobs up to the last record
// boundary are still stored.
func (r *reader) run(ctx context.Context, w batchWriter) error {
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
				err = fmt.Errorf("source %s: %s: %w", r.src.Name, r.path, err)
				cancel()
			} else if r.in.Progress != nil {
				r.in.Progress(r.path, b.cp.offset, r.size)
			}
		}
		written <- err
	}()
	r.cur = &batch{cp: checkpoint{offset: r.offset, line: r.line, state: r.dec.State(), fingerprint: r.fp}}
	readErr := r.read(ctx, batches)
	var rerr *readError
	if errors.As(readErr, &rerr) {
		// Damage, not another format: garbage lines before it are its symptom.
		r.judged = true
	}
	if readErr == nil || rerr != nil {
		// The end of the file, or of what could be read of it.
		if err := r.judge(); err != nil {
			readErr = err
		} else if err := r.send(ctx, batches, r.compressed && readErr == nil); err != nil {
			readErr = err
		}
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

// judge decides, once, whether the lines read so far look like the
// source's format; until then batches are held back.
func (r *reader) judge() error {
	if r.judged {
		return nil
	}
	r.judged = true
	if bad, of := r.undecoded, r.stats.Lines; of > 0 && float64(bad) > r.src.maxBadRatio()*float64(of) {
		r.held = nil
		return &FormatError{Source: r.src.Name, Path: r.path, Format: r.src.Format, Bad: bad, Of: of,
			MaxRatio: r.src.maxBadRatio(), First: r.firstBad}
	}
	return nil
}

// send finishes the current batch's checkpoint and hands the batch over
// (holds it, while the format is not judged yet).
func (r *reader) send(ctx context.Context, batches chan<- *batch, complete bool) error {
	b := r.cur
	b.cp.complete = complete
	var err error
	if b.cp.hashState = r.boundaryHash; b.cp.hashState == nil {
		if b.cp.hashState, err = r.hash.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return err
		}
	}
	b.cp.digest = r.hashSum(b.cp.hashState)
	if len(b.cp.fingerprint) > int(b.cp.offset) && !complete {
		b.cp.fingerprint = b.cp.fingerprint[:b.cp.offset]
	}
	r.cur = &batch{cp: b.cp, jobs: make([]staged, 0, len(b.jobs))}
	r.cur.cp.fingerprint = r.fp
	if !r.judged {
		r.held = append(r.held, b)
		return nil
	}
	for _, h := range append(r.held, b) {
		select {
		case batches <- h:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.held = nil
	return nil
}

// hashSum is the digest of a marshalled hash state.
func (r *reader) hashSum(state []byte) []byte {
	if r.boundaryHash == nil {
		return r.hash.Sum(nil)
	}
	h := sha256.New()
	h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
	return h.Sum(nil)
}

// handle stages a line's jobs, or counts and reports a bad line.
func (r *reader) handle(jobs []accounting.Job, derr error) {
	if derr != nil {
		r.undecoded++
		if r.firstBad == nil {
			r.firstBad = &BadLineError{Path: r.path, Line: r.line, Err: derr}
		}
		r.bad(derr)
	}
	for i := range jobs {
		if err := jobs[i].Check(); err != nil {
			r.bad(fmt.Errorf("job %s: %w", jobs[i].JobID, err))
			return
		}
		r.stats.Jobs++
		r.cur.jobs = append(r.cur.jobs, staged{job: jobs[i], collab: r.in.Attribute(&jobs[i])})
	}
}

// bad counts and reports a bad line.
func (r *reader) bad(err error) {
	r.stats.BadLines++
	if r.stats.BadLines <= reportedBadLines {
		r.in.Log.Warn("bad line skipped", "source", r.src.Name, "err", &BadLineError{Path: r.path, Line: r.line, Err: err})
	}
}

// boundary moves the current batch's checkpoint to what has been read:
// the decoder is between records.
func (r *reader) boundary() {
	r.boundaryHash = nil
	r.cur.cp.offset, r.cur.cp.line, r.cur.cp.state = r.offset, r.line, r.dec.State()
}

// read decodes lines, sending a batch at the first record boundary after
// every batchLines lines.
func (r *reader) read(ctx context.Context, batches chan<- *batch) error {
	inBatch := 0
	sample := r.src.sampleLines()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !r.judged && r.stats.Lines >= sample {
			if err := r.judge(); err != nil {
				return err
			}
		}
		raw, rerr := r.br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			done, err := r.longLine(raw)
			if err != nil || !done {
				return err
			}
			inBatch++
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
				r.boundary()
			}
			return nil
		}
		if rerr != nil {
			return &readError{offset: r.offset, line: r.line, err: rerr}
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
		r.boundary()
		if inBatch >= r.batchLines() {
			if err := r.send(ctx, batches, false); err != nil {
				return err
			}
			inBatch = 0
		}
	}
}

// longLine skips a line longer than maxLine, whose first part is first.
// It is one bad line once its newline is read (or a compressed file ends);
// a live file's last line still being written is not a line yet: done is
// false and nothing of it is consumed as far as the checkpoint knows.
func (r *reader) longLine(first []byte) (done bool, err error) {
	atBoundary := len(r.pending) == 0
	saved := r.boundaryHash
	if saved == nil {
		if saved, err = r.hash.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return false, err
		}
	}
	// Hashed as it streams by: a long line is never held in memory.
	r.hash.Write(r.pending)
	r.pending = r.pending[:0]
	n := int64(len(first))
	r.hash.Write(first)
	raw, rerr := first, bufio.ErrBufferFull
	for errors.Is(rerr, bufio.ErrBufferFull) {
		raw, rerr = r.br.ReadSlice('\n')
		n += int64(len(raw))
		r.hash.Write(raw)
	}
	switch {
	case errors.Is(rerr, io.EOF) && !r.compressed:
		// Unfinished: back to the hash of the last boundary.
		if err := r.hash.(encoding.BinaryUnmarshaler).UnmarshalBinary(saved); err != nil {
			return false, err
		}
		r.boundaryHash = nil
		return false, nil
	case rerr != nil && !errors.Is(rerr, io.EOF):
		return false, &readError{offset: r.offset + n - int64(len(raw)), line: r.line, err: rerr}
	}
	r.offset += n
	r.line++
	r.stats.Lines++
	r.handle(nil, fmt.Errorf("line longer than %d bytes", maxLine))
	if atBoundary {
		r.boundary()
	} else {
		r.boundaryHash = saved // the record it interrupts is still open
	}
	return true, nil
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
