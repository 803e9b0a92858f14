package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sacctJob is one sacct line (Open XDMoD field order) of a 2-CPU, 1-hour job.
func sacctJob(id int, user, account string) string {
	return fmt.Sprintf("%d|%d|gen|compute|normal|%s|grp|20000|%s|10002|2026-10-02T18:00:00|2026-10-02T18:00:00|2026-10-02T18:00:00|2026-10-02T19:00:00|01:00:00|0:0|COMPLETED|1|2|2|4000M||billing=2,cpu=2,node=1|12:00:00|n01|job%d\n",
		id, id, account, user, id)
}

func byCollaboration(t *testing.T, cfg string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, row := range reportRows(t, cfg, "--by", "collaboration") {
		got[row.Key] = row.Jobs
	}
	return got
}

// TestIngestWithoutDirectoryAndDamagedFiles drives the real binary through
// what logrotate and an LDAP outage do: an empty file, a truncated .gz,
// slapd down with nothing saved yet, then down again after a sync saved the
// directory's state; a wrong format fixed later; and --rescan.
func TestIngestWithoutDirectoryAndDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	e := demoWithAccounting(t, filepath.Join(dir, "sacct.log*"))
	old := func(p string, d time.Duration) {
		at := time.Now().Add(-d)
		os.Chtimes(p, at, at)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for i := 1; i <= 200; i++ {
		zw.Write([]byte(sacctJob(i, "carol", "atlas")))
	}
	zw.Close()
	truncated := filepath.Join(dir, "sacct.log.2.gz")
	os.WriteFile(truncated, gz.Bytes()[:gz.Len()/2], 0o644)
	old(truncated, 3*time.Hour)
	empty := writeFile(t, filepath.Join(dir, "sacct.log.1"), "")
	old(empty, 2*time.Hour)
	live := writeFile(t, filepath.Join(dir, "sacct.log"), sacctJob(1001, "bob", "")+sacctJob(1002, "bob", "lsst"))

	// The directory is down and no sync has saved its state: the jobs are
	// stored anyway, charged to their account names.
	e.server.Stop()
	r := collabsync(t, e.config, "ingest")
	if r.code != exitFailure {
		t.Errorf("a damaged file: exit %d, want %d", r.code, exitFailure)
	}
	for _, want := range []string{truncated + ": damaged at byte", "attributed by their account name alone"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "1 file(s) failed") {
		t.Errorf("stdout: %s", r.stdout)
	}
	got := byCollaboration(t, e.config)
	if got["lsst"] != 1 || got["unattributed"] != 1 || got["atlas"] == 0 || got["atlas"] >= 200 {
		t.Errorf("by collaboration with the directory down: %v", got)
	}
	kept := got["atlas"]

	// The damaged file is not reported again while it does not change.
	r = collabsync(t, e.config, "ingest")
	if r.code != 0 || strings.Contains(r.stderr, "damaged at byte") || !strings.Contains(r.stdout, "1 damaged file(s) skipped") {
		t.Errorf("second run: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A sync saves the directory's state; with slapd down again, a job
	// without an account goes to bob's administrative collaboration.
	if err := e.server.Start(); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	e.server.Stop()
	os.WriteFile(live, []byte(sacctJob(1001, "bob", "")+sacctJob(1002, "bob", "lsst")+sacctJob(1003, "bob", "")), 0o644)
	if r = collabsync(t, e.config, "ingest"); r.code != 0 || strings.Contains(r.stderr, "account name alone") {
		t.Fatalf("ingest after a sync: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got = byCollaboration(t, e.config); got["lpnhe"] != 1 {
		t.Errorf("job 1003 of bob not charged to lpnhe: %v", got)
	}

	// logrotate finishes compressing: the rest of the file is read.
	os.WriteFile(truncated, gz.Bytes(), 0o644)
	if r = collabsync(t, e.config, "ingest"); r.code != 0 {
		t.Fatalf("completed file: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got = byCollaboration(t, e.config); got["atlas"] != 200 {
		t.Errorf("atlas has %d jobs after the file was completed (had %d), want 200", got["atlas"], kept)
	}

	// A wrong format fails loudly and stores nothing; fixed, it reads.
	good, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, bytes.Replace(good, []byte("format: slurm-sacct"), []byte("format: pbs"), 1), 0o600)
	os.WriteFile(live, []byte(sacctJob(1001, "bob", "")+sacctJob(1002, "bob", "lsst")+sacctJob(1003, "bob", "")+sacctJob(1004, "bob", "")), 0o644)
	r = collabsync(t, e.config, "ingest")
	if r.code != exitFailure || !strings.Contains(r.stderr, `format "pbs"`) || !strings.Contains(r.stderr, live) {
		t.Errorf("wrong format: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(e.config, good, 0o600)
	before := byCollaboration(t, e.config)
	if r = collabsync(t, e.config, "ingest"); r.code != 0 || !strings.Contains(r.stdout, "1 new job(s)") {
		t.Errorf("format fixed: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// --rescan reads everything again and counts nothing twice.
	r = collabsync(t, e.config, "ingest", "--rescan")
	if r.code != 0 || !strings.Contains(r.stdout, " 0 new job(s), 204 already stored") {
		t.Errorf("rescan: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	after := byCollaboration(t, e.config)
	if after["lpnhe"] != before["lpnhe"]+1 || after["atlas"] != 200 {
		t.Errorf("before %v, after %v", before, after)
	}
}
