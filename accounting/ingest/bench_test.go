package ingest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
	"github.com/collabsync/collabsync/accounting/report"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/genlog"
)

// TestMain lets a benchmark re-run this binary as a child that only
// ingests, so /usr/bin/time can measure that process's peak memory.
func TestMain(m *testing.M) {
	if db := os.Getenv("COLLABSYNC_BENCH_INGEST_DB"); db != "" {
		if err := childIngest(db, os.Getenv("COLLABSYNC_BENCH_INGEST_LOG")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func childIngest(dbPath, logPath string) error {
	st, err := store.Open(context.Background(), dbPath, accountingtest.Schema())
	if err != nil {
		return err
	}
	defer st.Close()
	in := &Ingester{DB: st.DB, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Attribute: func(j *accounting.Job) string { return j.Account }}
	src := Source{Name: "bench", Format: "slurm-sacct", Options: accounting.Options{Cluster: "gen", Location: time.UTC}}
	_, err = in.Ingest(context.Background(), src, []string{logPath})
	return err
}

// awkSum is the reference: an awk (mawk, the fastest) one-liner summing core-hours per
// account over the same file (elapsed is field 15, CPUs field 19).
const awkSum = `{n=split($15,a,":"); s=a[1]*3600+a[2]*60+a[3]; h[$6]+=s*$19/3600} END{for(k in h) print k, h[k]}`

// BenchmarkIngest1M: 1M sacct rows ingested durably into SQLite (WAL,
// each batch of 20000 committed with its checkpoint), against awk merely
// summing core-hours per account over the same file, run alternately.
// Then the same content under a new inode, and the same jobs in content
// that differs from its first byte (every job a duplicate).
func BenchmarkIngest1M(b *testing.B) {
	testharness.Require(b, "mawk", "/usr/bin/time")
	dir := b.TempDir()
	logPath := filepath.Join(dir, "sacct.log")
	f, _ := os.Create(logPath)
	if _, err := genlog.Write(f, genlog.Params{Jobs: 1_000_000}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	self, _ := os.Executable()
	var awkT, ingT, sameT, reT, dedupT, awkRSS, ingRSS []float64
	for i := 0; i < b.N; i++ {
		for rep := 0; rep < 3; rep++ {
			t, r := testharness.Measure(b, nil, "mawk", "-F|", awkSum, logPath)
			awkT, awkRSS = append(awkT, t.Seconds()), append(awkRSS, r)

			db := filepath.Join(dir, fmt.Sprintf("db%d-%d", i, rep), "s.db")
			env := []string{"COLLABSYNC_BENCH_INGEST_DB=" + db, "COLLABSYNC_BENCH_INGEST_LOG=" + logPath}
			t, r = testharness.Measure(b, env, self)
			ingT, ingRSS = append(ingT, t.Seconds()), append(ingRSS, r)

			// The same file again: its checkpoint says it has been read.
			t, _ = testharness.Measure(b, env, self)
			sameT = append(sameT, t.Seconds())
			// The same content under a new inode (a rotation copied or
			// recompressed): recognized by its SHA-256, resumed at its end.
			copyPath := logPath + ".copy"
			data, _ := os.ReadFile(logPath)
			os.WriteFile(copyPath, data, 0o644)
			t, _ = testharness.Measure(b, []string{"COLLABSYNC_BENCH_INGEST_DB=" + db, "COLLABSYNC_BENCH_INGEST_LOG=" + copyPath}, self)
			reT = append(reT, t.Seconds())
			// The same jobs in content that differs from the first byte: every
			// job goes through the natural-key check and is a duplicate.
			os.WriteFile(copyPath, append([]byte("\n"), data...), 0o644)
			data = nil
			t, _ = testharness.Measure(b, []string{"COLLABSYNC_BENCH_INGEST_DB=" + db, "COLLABSYNC_BENCH_INGEST_LOG=" + copyPath}, self)
			dedupT = append(dedupT, t.Seconds())
			os.Remove(copyPath)
			os.RemoveAll(filepath.Dir(db))
		}
	}
	decode, floor := insertFloor(b, logPath, filepath.Join(dir, "floor.db"))
	b.ReportMetric(testharness.Median(awkT), "awk_s")
	b.ReportMetric(decode.Seconds(), "decode_s")
	b.ReportMetric(decode.Seconds()/testharness.Median(awkT), "decode/awk")
	b.ReportMetric(floor.Seconds(), "sqlite_floor_s")
	b.ReportMetric(floor.Seconds()/testharness.Median(awkT), "sqlite_floor/awk")
	b.ReportMetric(testharness.Median(ingT), "ingest_s")
	b.ReportMetric(testharness.Median(ingT)/testharness.Median(awkT), "ingest/awk")
	b.ReportMetric(testharness.Median(sameT), "reingest_same_s")
	b.ReportMetric(testharness.Median(sameT)/testharness.Median(ingT), "reingest_same/ingest")
	b.ReportMetric(testharness.Median(reT), "reingest_copy_s")
	b.ReportMetric(testharness.Median(reT)/testharness.Median(ingT), "reingest_copy/ingest")
	b.ReportMetric(testharness.Median(dedupT), "reingest_dedupe_s")
	b.ReportMetric(testharness.Median(dedupT)/testharness.Median(ingT), "reingest_dedupe/ingest")
	b.ReportMetric(testharness.Median(awkRSS), "awk_maxrss_MiB")
	b.ReportMetric(testharness.Median(ingRSS), "ingest_maxrss_MiB")
}

// BenchmarkReportMonth10M: a month's report by collaboration over the day
// totals of 10M jobs (a year, 1000 users in 100 collaborations, 5 states).
// The totals are generated in SQL exactly as ingest keeps them; the report
// never reads the jobs table, so it is left empty.
func BenchmarkReportMonth10M(b *testing.B) {
	st, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "s.db"), accountingtest.Schema())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const jobs = 10_000_000
	// Job i ends on day 20454 + i*365/jobs, user i%1000 in collaboration
	// (i%1000)%100, state i%5, with (i%7+1)*3600 core-seconds.
	_, err = st.DB.Exec(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
		INSERT INTO usage_daily (day, cluster, collaboration, user, state, jobs, core_seconds)
		SELECT 20454 + i * 365 / ?, 'gen', printf('c%05d', (i % 1000) % 100), printf('u%06d', i % 1000),
		       CASE i % 5 WHEN 0 THEN 'FAILED' WHEN 1 THEN 'TIMEOUT' ELSE 'COMPLETED' END, count(*), sum((i % 7 + 1) * 3600)
		FROM n GROUP BY 1, 2, 3, 4, 5`, jobs, jobs)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	st.DB.QueryRow("SELECT sum(jobs) FROM usage_daily").Scan(&total)
	if total != jobs {
		b.Fatalf("day totals hold %d jobs", total)
	}
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	q := report.Query{By: report.ByCollaboration, Since: since, Until: since.AddDate(0, 1, 0)}
	var ms []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for rep := 0; rep < 5; rep++ {
			start := time.Now()
			rows, err := report.Run(context.Background(), st.DB, q)
			ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			if err != nil || len(rows) != 100 {
				b.Fatalf("%d rows, %v", len(rows), err)
			}
		}
	}
	b.ReportMetric(testharness.Median(ms), "report_ms")
}

// insertFloor times separately the two halves of an ingest, in one
// process: reading and decoding the log into jobs, and SQLite alone
// storing them (the INSERT statements and commits, without the duplicate
// check, day totals or checkpoint).
func insertFloor(b *testing.B, logPath, dbPath string) (decode, insert time.Duration) {
	st, err := store.Open(context.Background(), dbPath, accountingtest.Schema())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	f, err := os.Open(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	dec := Formats()["slurm-sacct"](accounting.Options{Cluster: "gen", Location: time.UTC})
	w := &writer{db: st.DB, source: "bench"}
	sc := bufio.NewScanner(f)
	var jobs []staged
	flush := func() {
		fresh := make([]*staged, len(jobs))
		for i := range jobs {
			fresh[i] = &jobs[i]
		}
		start := time.Now()
		tx, err := st.DB.Begin()
		if err == nil {
			err = w.insert(context.Background(), tx, fresh)
		}
		if err == nil {
			err = tx.Commit()
		}
		insert += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		jobs = jobs[:0]
	}
	start := time.Now()
	for sc.Scan() {
		js, _, _ := dec.Line(sc.Bytes())
		for _, j := range js {
			jobs = append(jobs, staged{job: j, collab: j.Account})
		}
		if len(jobs) >= 10000 {
			decode += time.Since(start)
			flush()
			start = time.Now()
		}
	}
	decode += time.Since(start)
	flush()
	return decode, insert
}
