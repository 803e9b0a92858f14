package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
	"github.com/collabsync/collabsync/internal/store"
)

type env struct {
	t   *testing.T
	dir string
	db  *sql.DB
	in  *Ingester
	log *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), accountingtest.Schema())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var log bytes.Buffer
	in := &Ingester{DB: st.DB, Log: slog.New(slog.NewTextHandler(&log, nil)), BatchLines: 3,
		Attribute: func(j *accounting.Job) string { return "c-" + j.Account }}
	return &env{t: t, dir: dir, db: st.DB, in: in, log: &log}
}

var sacctSource = Source{Name: "s", Format: "slurm-sacct", Options: accounting.Options{Cluster: "c1", Location: time.UTC}}

// sacctLine is a job of n CPUs running for an hour.
func sacctLine(id, cpus int, account string) string {
	return fmt.Sprintf("%d|%d|c|part|qos|%s|grp|100|user%d|1000|2026-01-01T00:00:00|2026-01-01T00:00:00|2026-01-01T01:00:00|2026-01-01T02:00:00|01:00:00|0:0|COMPLETED|1|%d|%d|1G||cpu=%d|02:00:00|n1|job\n",
		id, id, account, id%3, cpus, cpus, cpus)
}

// sacctLines is jobs 1..n, each of cpus CPUs for an hour.
func sacctLines(n, cpus int, account string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(sacctLine(i, cpus, account))
	}
	return b.String()
}

func (e *env) write(name, content string, flag int) string {
	p := filepath.Join(e.dir, name)
	f, err := os.OpenFile(p, flag|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	f.WriteString(content)
	f.Close()
	return p
}

func (e *env) ingest(src Source, paths ...string) Stats {
	e.t.Helper()
	st, err := e.in.Ingest(context.Background(), src, paths)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// totals returns jobs and core-seconds as the jobs table and the day
// totals see them; they must always agree.
func (e *env) totals() (int64, int64) {
	e.t.Helper()
	var jobs, cs, djobs, dcs int64
	e.db.QueryRow("SELECT count(*), coalesce(sum(core_seconds), 0) FROM job").Scan(&jobs, &cs)
	e.db.QueryRow("SELECT coalesce(sum(jobs), 0), coalesce(sum(core_seconds), 0) FROM usage_daily").Scan(&djobs, &dcs)
	if jobs != djobs || cs != dcs {
		e.t.Fatalf("jobs table (%d, %d) and day totals (%d, %d) disagree", jobs, cs, djobs, dcs)
	}
	return jobs, cs
}

func TestIncrementalIdempotentRotated(t *testing.T) {
	e := newEnv(t)
	live := e.write("sacct.log", sacctLines(10, 2, "atlas"), os.O_TRUNC)
	if st := e.ingest(sacctSource, live); st.Inserted != 10 || st.Lines != 10 {
		t.Fatalf("first ingest: %+v", st)
	}
	if jobs, cs := e.totals(); jobs != 10 || cs != 10*2*3600 {
		t.Fatalf("totals %d %d", jobs, cs)
	}
	// Nothing new: nothing read.
	if st := e.ingest(sacctSource, live); st.Lines != 0 {
		t.Errorf("re-ingest read %d lines", st.Lines)
	}
	// Appended lines, one of them not finished yet.
	e.write("sacct.log", sacctLine(11, 2, "atlas")+sacctLine(12, 2, "atlas")+"13|13|c|par", os.O_APPEND)
	if st := e.ingest(sacctSource, live); st.Inserted != 2 || st.Lines != 2 {
		t.Errorf("append: %+v", st)
	}
	// Finish the partial line, rotate, start a new live file.
	e.write("sacct.log", strings.TrimPrefix(sacctLine(13, 2, "atlas"), "13|13|c|par"), os.O_APPEND)
	rotated := filepath.Join(e.dir, "sacct.log.1")
	os.Rename(live, rotated)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(rotated, old, old)
	e.write("sacct.log", sacctLine(14, 4, "lsst"), os.O_TRUNC)
	paths, _ := filepath.Glob(filepath.Join(e.dir, "sacct.log*"))
	if st := e.ingest(sacctSource, paths...); st.Inserted != 2 || st.Duplicates != 0 {
		t.Errorf("after rotation: %+v", st)
	}
	// The rotated file gets compressed under a new name: every job in it is
	// a duplicate; nothing is counted twice.
	data, _ := os.ReadFile(rotated)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	os.WriteFile(filepath.Join(e.dir, "sacct.log.2.gz"), gz.Bytes(), 0o644)
	os.Remove(rotated)
	paths, _ = filepath.Glob(filepath.Join(e.dir, "sacct.log*"))
	// Its content is recognized (SHA-256 of the part already read), so it
	// resumes where the rotated file stopped: nothing is read twice.
	if st := e.ingest(sacctSource, paths...); st.Inserted != 0 || st.Lines != 0 {
		t.Errorf("compressed copy: %+v", st)
	}
	if !strings.Contains(e.log.String(), "file is a copy of one already ingested") {
		t.Error("copy not recognized")
	}
	if st := e.ingest(sacctSource, paths...); st.Lines != 0 {
		t.Errorf("a complete compressed file was read again: %+v", st)
	}
	if jobs, cs := e.totals(); jobs != 14 || cs != 13*2*3600+4*3600 {
		t.Errorf("totals %d %d", jobs, cs)
	}
	var collab string
	e.db.QueryRow("SELECT collaboration FROM job WHERE job_id = '14'").Scan(&collab)
	if collab != "c-lsst" {
		t.Errorf("attributed to %q", collab)
	}
}

func TestBadLinesAreCountedWithFileAndLine(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctLine(1, 1, "a")+"garbage line\n"+sacctLine(2, 1, "a")+
		strings.Replace(sacctLine(3, 1, "a"), "01:00:00|0:0", "99:99|0:0", 1), os.O_TRUNC)
	st := e.ingest(sacctSource, p)
	if st.Inserted != 2 || st.BadLines != 2 {
		t.Fatalf("%+v", st)
	}
	for _, want := range []string{p + ":2: 1 fields, want 26", p + ":4: elapsed"} {
		if !strings.Contains(e.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, e.log.String())
		}
	}
	var bad int64
	e.db.QueryRow("SELECT bad_lines FROM ingest_run WHERE source = 's'").Scan(&bad)
	if bad != 2 {
		t.Errorf("recorded bad lines = %d", bad)
	}
}

func TestImplausibleJobIsBad(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctLine(1, 999999999999, "a"), os.O_TRUNC)
	if st := e.ingest(sacctSource, p); st.BadLines != 1 || st.Inserted != 0 {
		t.Errorf("%+v", st)
	}
}

func TestTruncatedFileIsReadAgain(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctLine(1, 1, "a")+sacctLine(2, 1, "a"), os.O_TRUNC)
	e.ingest(sacctSource, p)
	// Same inode, new content (copytruncate-style rotation).
	e.write("sacct.log", sacctLine(3, 1, "a"), os.O_TRUNC)
	if st := e.ingest(sacctSource, p); st.Inserted != 1 {
		t.Errorf("after truncation: %+v", st)
	}
}

func TestMultiLineRecordsCheckpointOnBoundaries(t *testing.T) {
	e := newEnv(t)
	src := Source{Name: "h", Format: "htcondor", Options: accounting.Options{Cluster: "pool"}}
	ad := func(id int) string {
		return fmt.Sprintf("ClusterId = %d\nProcId = 0\nOwner = \"u\"\nJobStatus = 4\nRemoteWallClockTime = 100\nRequestCpus = 2\nCompletionDate = 1700000000\n", id)
	}
	p := e.write("history", ad(1)+"*** banner\n"+ad(2), os.O_TRUNC) // ad 2 not closed yet
	if st := e.ingest(src, p); st.Inserted != 1 {
		t.Fatalf("%+v", st)
	}
	e.write("history", "*** banner\n", os.O_APPEND)
	if st := e.ingest(src, p); st.Inserted != 1 {
		t.Errorf("closing the second ad: %+v", st)
	}
	if jobs, _ := e.totals(); jobs != 2 {
		t.Errorf("jobs = %d", jobs)
	}
}

func TestHeaderStateSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	src := Source{Name: "w", Format: "swf", Options: accounting.Options{Cluster: "ctc"}}
	p := e.write("w.swf", "; UnixStartTime: 1700000000\n1 0 0 10 1 -1 -1 1 10 -1 1 1 1 -1 1 1 -1 -1\n", os.O_TRUNC)
	e.ingest(src, p)
	e.write("w.swf", "2 100 0 10 1 -1 -1 1 10 -1 1 1 1 -1 1 1 -1 -1\n", os.O_APPEND)
	e.ingest(src, p)
	var submit int64
	e.db.QueryRow("SELECT submit FROM job WHERE job_id = '2'").Scan(&submit)
	if submit != 1700000100 {
		t.Errorf("job 2 submitted at %d: the header's start time was lost", submit)
	}
}

// TestCopyWithMoreContent: a copy that starts like an ingested file but
// goes on resumes at the end of the known part; one that differs inside
// the known part is read from the start (every job a duplicate, none lost).
func TestCopyWithMoreContent(t *testing.T) {
	e := newEnv(t)
	a := e.write("a.log", sacctLine(1, 1, "x")+sacctLine(2, 1, "x"), os.O_TRUNC)
	e.ingest(sacctSource, a)
	longer := e.write("b.log", sacctLine(1, 1, "x")+sacctLine(2, 1, "x")+sacctLine(3, 1, "x"), os.O_TRUNC)
	if st := e.ingest(sacctSource, longer); st.Lines != 1 || st.Inserted != 1 {
		t.Errorf("longer copy: %+v", st)
	}
	changed := e.write("c.log", sacctLine(1, 1, "x")+sacctLine(4, 1, "x")+sacctLine(2, 1, "x"), os.O_TRUNC)
	if st := e.ingest(sacctSource, changed); st.Lines != 3 || st.Inserted != 1 || st.Duplicates != 2 {
		t.Errorf("same start, other content: %+v", st)
	}
	if jobs, _ := e.totals(); jobs != 4 {
		t.Errorf("jobs = %d", jobs)
	}
}

// TestRequeuedRunsAreSeparate: sacct --duplicates lists each run of a
// requeued job; runs differ in start and end, so each is its own record.
func TestRequeuedRunsAreSeparate(t *testing.T) {
	e := newEnv(t)
	first := sacctLine(7, 2, "a")
	second := strings.NewReplacer("2026-01-01T01:00:00", "2026-01-01T03:00:00", "2026-01-01T02:00:00", "2026-01-01T04:00:00").Replace(first)
	p := e.write("sacct.log", strings.Replace(first, "COMPLETED", "NODE_FAIL", 1)+second, os.O_TRUNC)
	if st := e.ingest(sacctSource, p); st.Inserted != 2 {
		t.Errorf("%+v", st)
	}
	var states string
	e.db.QueryRow("SELECT group_concat(state, ',') FROM (SELECT state FROM job WHERE job_id = '7' ORDER BY start)").Scan(&states)
	if states != "NODE_FAIL,COMPLETED" {
		t.Errorf("runs = %s", states)
	}
}

// sacctLineEnding is a job of one CPU for an hour, ending at end.
func sacctLineEnding(id int, end time.Time) string {
	const tf = "2006-01-02T15:04:05"
	start := end.Add(-time.Hour)
	return fmt.Sprintf("%d|%d|c|part|qos|acct|grp|100|user|1000|%s|%s|%s|%s|01:00:00|0:0|COMPLETED|1|1|1|1G||cpu=1|02:00:00|n1|job\n",
		id, id, start.Format(tf), start.Format(tf), start.Format(tf), end.Format(tf))
}

// TestDuplicateCheckAcrossScatteredEnds: jobs whose ends lie days apart
// (the duplicate check reads the stored keys in several ranges), repeated
// within one batch, and read again in another order beside new ones, in
// batches larger than one INSERT statement and smaller.
func TestDuplicateCheckAcrossScatteredEnds(t *testing.T) {
	for _, batchLines := range []int{7, 1000} {
		t.Run(fmt.Sprint(batchLines), func(t *testing.T) {
			e := newEnv(t)
			e.in.BatchLines = batchLines
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			end := func(i int) time.Time { return t0.Add(time.Duration(i%5)*50*time.Hour + time.Duration(i)*time.Minute) }
			var first, second strings.Builder
			for i := 1; i <= 150; i++ {
				first.WriteString(sacctLineEnding(i, end(i)))
				if i%10 == 0 {
					first.WriteString(sacctLineEnding(i, end(i))) // repeated within the file
				}
			}
			for i := 200; i >= 1; i-- {
				second.WriteString(sacctLineEnding(i, end(i)))
			}
			a := e.write("a.log", first.String(), os.O_TRUNC)
			if st := e.ingest(sacctSource, a); st.Inserted != 150 || st.Duplicates != 15 {
				t.Errorf("first file: %+v", st)
			}
			b := e.write("b.log", second.String(), os.O_TRUNC)
			if st := e.ingest(sacctSource, b); st.Inserted != 50 || st.Duplicates != 150 {
				t.Errorf("second file: %+v", st)
			}
			if jobs, cs := e.totals(); jobs != 200 || cs != 200*3600 {
				t.Errorf("totals %d jobs, %d core-seconds", jobs, cs)
			}
		})
	}
}

// TestFailedWriteLosesNothing: the store refuses one job mid-file; the
// ingest stops with an error naming the file, keeps the batches before it,
// and once the fault is gone resumes to totals equal to a clean ingest.
func TestFailedWriteLosesNothing(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctLines(20, 1, "a"), os.O_TRUNC)
	if _, err := e.db.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON job WHEN NEW.job_id = '11'
		BEGIN SELECT RAISE(FAIL, 'injected fault'); END`); err != nil {
		t.Fatal(err)
	}
	st, err := e.in.Ingest(context.Background(), sacctSource, []string{p})
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "injected fault") {
		t.Fatalf("err = %v", err)
	}
	if jobs, _ := e.totals(); jobs != 9 || st.Inserted != 9 { // batches of 3 lines: 1-9 stored
		t.Errorf("before the fault: %d jobs stored, stats %+v", jobs, st)
	}
	e.db.Exec("DROP TRIGGER refuse")
	if st := e.ingest(sacctSource, p); st.Inserted != 11 || st.Duplicates != 0 {
		t.Errorf("resumed: %+v", st)
	}
	if jobs, cs := e.totals(); jobs != 20 || cs != 20*3600 {
		t.Errorf("totals %d %d", jobs, cs)
	}
}

// TestConcurrentIngestsCountOnce: two processes' worth of ingests (own
// connections) read the same file at once, in many small transactions;
// every job is stored and counted once.
func TestConcurrentIngestsCountOnce(t *testing.T) {
	e := newEnv(t)
	p := e.write("sacct.log", sacctLines(300, 2, "a"), os.O_TRUNC)
	errs := make(chan error, 2)
	for k := 0; k < 2; k++ {
		st, err := store.Open(context.Background(), filepath.Join(e.dir, "state.db"), accountingtest.Schema())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		in := *e.in
		in.DB = st.DB
		go func() {
			_, err := in.Ingest(context.Background(), sacctSource, []string{p})
			errs <- err
		}()
	}
	for k := 0; k < 2; k++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if jobs, cs := e.totals(); jobs != 300 || cs != 300*2*3600 {
		t.Errorf("totals %d jobs, %d core-seconds", jobs, cs)
	}
}

// TestGPUTimeInDayTotals: a job that held GPUs adds GPUs × elapsed to its
// day's GPU time; one without adds none.
func TestGPUTimeInDayTotals(t *testing.T) {
	e := newEnv(t)
	gpu := strings.Replace(sacctLine(1, 4, "atlas"), "|cpu=4|", "|cpu=4,gres/gpu=2|", 1)
	p := e.write("sacct.log", gpu+sacctLine(2, 4, "atlas"), os.O_TRUNC)
	if _, err := e.in.Ingest(context.Background(), sacctSource, []string{p}); err != nil {
		t.Fatal(err)
	}
	var gs, cs int64
	if err := e.db.QueryRow("SELECT SUM(gpu_seconds), SUM(core_seconds) FROM usage_daily").Scan(&gs, &cs); err != nil {
		t.Fatal(err)
	}
	if gs != 2*3600 || cs != 2*4*3600 {
		t.Errorf("day totals: %d GPU-seconds, %d core-seconds; want %d and %d", gs, cs, 2*3600, 2*4*3600)
	}
}
