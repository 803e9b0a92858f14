package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// age sets a file's mtime d in the past, so files sort oldest first.
func age(t *testing.T, path string, d time.Duration) {
	t.Helper()
	at := time.Now().Add(-d)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// sacctRange is jobs from..to, one CPU for an hour each.
func sacctRange(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		b.WriteString(sacctLine(i, 1, "a"))
	}
	return b.String()
}

// TestEmptyRotatedFile: logrotate leaves an empty live file; it neither
// fails the ingest nor keeps the newer files from being read, and its
// lines are read once it grows.
func TestEmptyRotatedFile(t *testing.T) {
	e := newEnv(t)
	old := e.write("sacct.log.1", sacctRange(1, 3), os.O_TRUNC)
	age(t, old, 2*time.Hour)
	empty := e.write("sacct.log.2", "", os.O_TRUNC)
	age(t, empty, time.Hour)
	live := e.write("sacct.log", sacctRange(4, 5), os.O_TRUNC)
	st, err := e.in.Ingest(context.Background(), sacctSource, []string{old, empty, live})
	if err != nil {
		t.Fatalf("ingest with an empty file: %v", err)
	}
	if st.Inserted != 5 || st.Files != 3 {
		t.Errorf("stats %+v, want 5 jobs from 3 files", st)
	}
	e.write("sacct.log.2", sacctRange(6, 7), os.O_APPEND)
	if st := e.ingest(sacctSource, old, empty, live); st.Inserted != 2 || st.Lines != 2 {
		t.Errorf("the empty file grew: %+v", st)
	}
	if jobs, _ := e.totals(); jobs != 7 {
		t.Errorf("jobs = %d", jobs)
	}
}

// TestDamagedFiles: a truncated .gz, a corrupt .gz and a file that is gone
// between the glob and the read. Each is reported once with its file and
// byte offset, the jobs before the damage are kept, the other files are
// read, and the run returns an error; the next run neither re-reads nor
// re-reports them until the file changes.
func TestDamagedFiles(t *testing.T) {
	e := newEnv(t)
	whole := gzipped(t, []byte(sacctRange(1, 100)))
	truncated := e.write("sacct.log.3.gz", string(whole[:len(whole)/2]), os.O_TRUNC)
	age(t, truncated, 3*time.Hour)
	corrupt := gzipped(t, []byte(sacctRange(101, 200)))
	for i := len(corrupt) / 2; i < len(corrupt)/2+16; i++ {
		corrupt[i] ^= 0xff
	}
	bad := e.write("sacct.log.2.gz", string(corrupt), os.O_TRUNC)
	age(t, bad, 2*time.Hour)
	dangling := filepath.Join(e.dir, "sacct.log.1")
	os.Symlink(filepath.Join(e.dir, "gone"), dangling)
	live := e.write("sacct.log", sacctRange(300, 309), os.O_TRUNC)
	paths := []string{truncated, bad, dangling, live}

	st, err := e.in.Ingest(context.Background(), sacctSource, paths)
	if err == nil {
		t.Fatal("damaged files did not fail the run")
	}
	for _, want := range []string{truncated + ": damaged at byte ", bad + ": damaged at byte ", dangling} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Errorf("error %T is no *FileError", err)
	}
	if st.FailedFiles != 3 {
		t.Errorf("FailedFiles = %d, want 3", st.FailedFiles)
	}
	// The live file is read in full; the truncated one up to its damage.
	var live10, before int64
	e.db.QueryRow("SELECT count(*) FROM job WHERE CAST(job_id AS INTEGER) BETWEEN 300 AND 309").Scan(&live10)
	e.db.QueryRow("SELECT count(*) FROM job WHERE CAST(job_id AS INTEGER) < 100").Scan(&before)
	if live10 != 10 {
		t.Errorf("%d of the live file's 10 jobs stored", live10)
	}
	if before == 0 {
		t.Error("no job decoded before the truncation was kept")
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("kept %d job(s)", before)) {
		t.Errorf("the error does not say which jobs were kept (%d):\n%v", before, err)
	}
	jobs, _ := e.totals()
	logged := strings.Count(e.log.String(), "damaged at byte")

	// Unchanged damaged files are not read or reported again.
	st, err = e.in.Ingest(context.Background(), sacctSource, []string{truncated, bad, live})
	if err != nil || st.Lines != 0 || st.BadLines != 0 {
		t.Errorf("second run: err %v, %+v", err, st)
	}
	if st.DamagedFiles != 2 {
		t.Errorf("DamagedFiles = %d, want 2 (still known damaged)", st.DamagedFiles)
	}
	if n := strings.Count(e.log.String(), "damaged at byte"); n != logged {
		t.Errorf("damage logged again: %d times, was %d", n, logged)
	}
	if j, _ := e.totals(); j != jobs {
		t.Errorf("jobs %d → %d", jobs, j)
	}

	// The truncated file is completed (logrotate's compression finished):
	// it resumes where the damage stopped it.
	os.WriteFile(truncated, whole, 0o644)
	st, err = e.in.Ingest(context.Background(), sacctSource, []string{truncated, bad, live})
	if err != nil {
		t.Fatal(err)
	}
	if st.Inserted != 100-before || st.Duplicates != 0 {
		t.Errorf("completed file: %+v (had %d before)", st, before)
	}
}

// TestWrongFormatIsNotCheckpointed: a sacct log read as pbs fails the run
// naming source, file and format, and stores no checkpoint; once the
// format is fixed the jobs are read.
func TestWrongFormatIsNotCheckpointed(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctRange(1, 20), os.O_TRUNC)
	pbs := Source{Name: "s", Format: "pbs", Options: sacctSource.Options}
	_, err := e.in.Ingest(context.Background(), pbs, []string{p})
	if err == nil {
		t.Fatal("a sacct log read as pbs did not fail")
	}
	for _, want := range []string{"source s", p, `format "pbs"`, "20 of the first 20 lines"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	var n int
	e.db.QueryRow("SELECT count(*) FROM ingest_checkpoint").Scan(&n)
	if n != 0 {
		t.Errorf("%d checkpoint(s) stored for a file read in the wrong format", n)
	}
	if st := e.ingest(sacctSource, p); st.Inserted != 20 {
		t.Errorf("after fixing the format: %+v", st)
	}
}

// TestBadRatioThreshold: a few bad lines pass; the threshold is the
// configured one, zero included.
func TestBadRatioThreshold(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctRange(1, 3)+"garbage\n", os.O_TRUNC)
	if _, err := e.in.Ingest(context.Background(), sacctSource, []string{p}); err != nil {
		t.Errorf("1 bad line in 4 failed: %v", err)
	}
	e2 := newEnv(t)
	p = e2.write("sacct.log", sacctRange(1, 3)+"garbage\n", os.O_TRUNC)
	strict := sacctSource
	strict.MaxBadRatio = ptr(0.0)
	if _, err := e2.in.Ingest(context.Background(), strict, []string{p}); err == nil {
		t.Error("max_bad_ratio 0 let a bad line through")
	}
}

func ptr[T any](v T) *T { return &v }

// TestRescan: a file checkpointed while read in the wrong format (as
// collabsync before this check did) is read again on request, idempotently.
func TestRescan(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctRange(1, 20), os.O_TRUNC)
	lax := Source{Name: "s", Format: "pbs", Options: sacctSource.Options, MaxBadRatio: ptr(1.0)}
	if st := e.ingest(lax, p); st.BadLines != 20 {
		t.Fatalf("%+v", st)
	}
	if st := e.ingest(sacctSource, p); st.Lines != 0 {
		t.Fatalf("checkpointed file read again without --rescan: %+v", st)
	}
	// A copy is recognized by its content and skipped too, unless rescanned.
	cp := e.write("copy.log", sacctRange(1, 20), os.O_TRUNC)
	if st := e.ingest(sacctSource, cp); st.Lines != 0 {
		t.Fatalf("copy read: %+v", st)
	}
	e.in.Rescan = true
	if st := e.ingest(sacctSource, cp); st.Inserted != 20 {
		t.Errorf("rescan of the copy: %+v", st)
	}
	if st := e.ingest(sacctSource, p); st.Lines != 20 || st.Inserted != 0 || st.Duplicates != 20 {
		t.Errorf("rescan again: %+v", st)
	}
	e.in.Rescan = false
	if jobs, cs := e.totals(); jobs != 20 || cs != 20*3600 {
		t.Errorf("totals %d %d", jobs, cs)
	}
}

// TestResumeLargeFile: a 5 MB log appended to and ingested four times,
// then rotated and gzipped: only the new lines are read each time (the
// fingerprint of a resumed file is its head, not bytes from its middle).
func TestResumeLargeFile(t *testing.T) {
	e := newEnv(t)
	e.in.BatchLines = 10000
	n := 0
	var all strings.Builder
	chunk := func(k int) string {
		s := sacctRange(n+1, n+k)
		n += k
		all.WriteString(s)
		return s
	}
	p := e.write("sacct.log", chunk(30000), os.O_TRUNC) // ≈ 5 MB
	if fi, _ := os.Stat(p); fi.Size() < 4<<20 {
		t.Fatalf("log is only %d bytes", fi.Size())
	}
	if st := e.ingest(sacctSource, p); st.Lines != 30000 {
		t.Fatalf("first: %+v", st)
	}
	for round := 1; round <= 4; round++ {
		e.write("sacct.log", chunk(100), os.O_APPEND)
		if st := e.ingest(sacctSource, p); st.Lines != 100 || st.Inserted != 100 {
			t.Errorf("round %d read %d lines, %d new (want 100)", round, st.Lines, st.Inserted)
		}
	}
	if strings.Contains(e.log.String(), "changed under its inode") {
		t.Errorf("an appended file was taken for a new one:\n%s", e.log.String())
	}
	rotated := filepath.Join(e.dir, "sacct.log.1.gz")
	os.WriteFile(rotated, gzipped(t, []byte(all.String())), 0o644)
	os.Remove(p)
	if st := e.ingest(sacctSource, rotated); st.Lines != 0 {
		t.Errorf("gzipped rotation read %d lines again", st.Lines)
	}
}

// TestLongUnfinishedLastLine: a last line over the line limit without its
// newline is not counted until it is complete, then counted once.
func TestLongUnfinishedLastLine(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("x", maxLine+10)
	p := e.write("sacct.log", sacctRange(1, 2)+long, os.O_TRUNC)
	for run := 1; run <= 2; run++ {
		if st := e.ingest(sacctSource, p); st.BadLines != 0 {
			t.Errorf("run %d counted the unfinished line: %+v", run, st)
		}
	}
	e.write("sacct.log", "\n"+sacctLine(3, 1, "a"), os.O_APPEND)
	if st := e.ingest(sacctSource, p); st.BadLines != 1 || st.Inserted != 1 {
		t.Errorf("completed: %+v", st)
	}
	if st := e.ingest(sacctSource, p); st.Lines != 0 {
		t.Errorf("read again: %+v", st)
	}
	// The checkpoint's hash covers the long line: a copy is recognized.
	data, _ := os.ReadFile(p)
	cp := e.write("copy.log.gz", string(gzipped(t, data)), os.O_TRUNC)
	if st := e.ingest(sacctSource, cp); st.Lines != 0 {
		t.Errorf("copy of a file with a long line read again: %+v", st)
	}
}

// TestEndBeforeStartIsBad: a job that ends before it starts is a bad line.
func TestEndBeforeStartIsBad(t *testing.T) {
	e := newEnv(t)
	line := strings.Replace(sacctLine(1, 1, "a"), "2026-01-01T01:00:00|2026-01-01T02:00:00", "2026-01-01T02:00:00|2026-01-01T01:00:00", 1)
	p := e.write("sacct.log", line+sacctLine(2, 1, "a"), os.O_TRUNC)
	if st := e.ingest(sacctSource, p); st.BadLines != 1 || st.Inserted != 1 {
		t.Errorf("%+v", st)
	}
	if !strings.Contains(e.log.String(), "ends before it starts") {
		t.Errorf("log: %s", e.log.String())
	}
}

var _ = accounting.Job{}

// FuzzIngestFile: any file content, in any format, ingests without a
// panic; read again unchanged it yields nothing new, and a gzipped copy of
// it nothing new either, whatever happened the first time.
func FuzzIngestFile(f *testing.F) {
	f.Add(0, []byte(sacctRange(1, 3)+"garbage\n"+sacctLine(4, 1, "a")))
	f.Add(2, []byte("ClusterId = 1\nProcId = 0\nOwner = \"u\"\nJobStatus = 4\nRemoteWallClockTime = 100\nRequestCpus = 2\nCompletionDate = 1700000000\n*** x\n"))
	f.Add(5, []byte("; UnixStartTime: 1700000000\n1 0 0 10 1 -1 -1 1 10 -1 1 1 1 -1 1 1 -1 -1\n2 0 0 10"))
	formats := Formats().Names()
	f.Fuzz(func(t *testing.T, format int, data []byte) {
		if format < 0 {
			format = -format
		}
		e := newEnv(t)
		e.in.BatchLines = 2
		src := Source{Name: "f", Format: formats[format%len(formats)], Options: sacctSource.Options}
		p := e.write("log", string(data), os.O_TRUNC)
		first, _ := e.in.Ingest(context.Background(), src, []string{p})
		jobs, cs := e.totals()
		if first.Inserted != jobs {
			t.Errorf("stats say %d new jobs, the store has %d", first.Inserted, jobs)
		}
		again, err := e.in.Ingest(context.Background(), src, []string{p})
		if err == nil && (again.Inserted != 0 || again.Duplicates != 0) {
			t.Errorf("unchanged file read again: %+v", again)
		}
		gz := e.write("log.1.gz", string(gzipped(t, data)), os.O_TRUNC)
		e.in.Ingest(context.Background(), src, []string{gz})
		if j, c := e.totals(); j != jobs || c != cs {
			t.Errorf("a gzipped copy changed the totals: %d/%d → %d/%d", jobs, cs, j, c)
		}
	})
}
