package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting/report"
	"github.com/collabsync/collabsync/internal/testharness/genlog"
)

// accountingConfig is an accounting section for one sacct source.
func accountingConfig(glob string) string {
	return fmt.Sprintf("accounting:\n  sources:\n    - {name: gen, format: slurm-sacct, paths: [%q], cluster: gen}\n", glob)
}

// demoWithAccounting is the demo environment with its own accounting
// section (replacing the demo's) and no serve section.
func demoWithAccounting(t *testing.T, glob string) *syncEnv {
	t.Helper()
	e := newDemoEnv(t, "")
	data, _ := os.ReadFile(e.config)
	doc, _, _ := strings.Cut(string(data), "accounting:\n")
	os.WriteFile(e.config, []byte(doc+accountingConfig(glob)), 0o600)
	return e
}

func reportRows(t *testing.T, cfg string, args ...string) []report.Row {
	t.Helper()
	r := collabsync(t, cfg, append([]string{"report", "--format", "json"}, args...)...)
	var rows []report.Row
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || r.code != 0 {
		t.Fatalf("report: code %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return rows
}

func totalCoreSeconds(rows []report.Row) (jobs int64, cs int64) {
	for _, r := range rows {
		jobs += r.Jobs
		cs += int64(r.CoreHours*3600 + 0.5)
	}
	return jobs, cs
}

// TestDemoIngestAndReport: the demo logs through the real binary, with
// attribution from the real directory.
func TestDemoIngestAndReport(t *testing.T) {
	e := newDemoEnv(t, "")
	data, _ := os.ReadFile(e.config)
	logs := filepath.Join(t.TempDir(), "logs")
	os.CopyFS(logs, os.DirFS("../../configs/demo/logs"))
	// newDemoEnv left ${LOGS_DIR} empty: point it at the copy.
	os.WriteFile(e.config, []byte(strings.ReplaceAll(string(data), `paths: ["/sacct.log*"]`, fmt.Sprintf("paths: [%q]", logs+"/sacct.log*"))), 0o600)
	data, _ = os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.ReplaceAll(string(data), `paths: ["/jobcomp.log*"]`, fmt.Sprintf("paths: [%q]", logs+"/jobcomp.log*"))), 0o600)

	r := collabsync(t, e.config, "ingest")
	if r.code != 0 || !strings.Contains(r.stdout, "source demo-sacct: 1 file(s), 62 line(s), 56 new job(s), 0 already stored, 1 bad line(s)") ||
		!strings.Contains(r.stderr, "sacct.log:31: 3 fields, want 26") {
		t.Fatalf("ingest: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	byCollab := reportRows(t, e.config, "--by", "collaboration")
	got := map[string]int64{}
	for _, row := range byCollab {
		got[row.Key] = row.Jobs
	}
	// ghost is not in the directory and ran on an unknown account.
	if got["unattributed"] == 0 || got["atlas"] == 0 || got["lsst"] == 0 {
		t.Errorf("by collaboration: %+v", byCollab)
	}
	jobs, _ := totalCoreSeconds(byCollab)
	if jobs != 68 {
		t.Errorf("%d jobs reported, want 68 (56 sacct + 12 jobcomp)", jobs)
	}
	atlas := reportRows(t, e.config, "--by", "user", "--collaboration", "atlas")
	for _, row := range atlas {
		if !strings.Contains(" alice bob carol ivan ", " "+row.Key+" ") {
			t.Errorf("atlas report has user %s", row.Key)
		}
	}
	nov := reportRows(t, e.config, "--by", "month", "--since", "2026-11", "--until", "2026-12")
	if len(nov) != 1 || nov[0].Key != "2026-11" {
		t.Errorf("November: %+v", nov)
	}
	r = collabsync(t, e.config, "report", "--by", "cluster", "--format", "csv")
	if !strings.HasPrefix(r.stdout, "CLUSTER,jobs,core_hours,COMPLETED") || !strings.Contains(r.stdout, "\ngpu,12,") {
		t.Errorf("csv:\n%s", r.stdout)
	}
	if r := collabsync(t, e.config, "report", "--by", "planet"); r.code != exitUsage {
		t.Errorf("bad grouping: code %d", r.code)
	}
	// A chart of atlas's months by member; a chart needs its collaboration.
	r = collabsync(t, e.config, "report", "--format", "svg", "--collaboration", "atlas")
	if r.code != 0 || !strings.Contains(r.stdout, "<svg") || !strings.Contains(r.stdout, "Core-hours of atlas by month and member") ||
		!strings.Contains(r.stdout, ">alice</text>") {
		t.Errorf("svg chart: code %d %s\n%.300s", r.code, r.stderr, r.stdout)
	}
	if r := collabsync(t, e.config, "report", "--format", "png"); r.code != exitUsage || !strings.Contains(r.stderr, "--collaboration") {
		t.Errorf("a chart without its collaboration: code %d %s", r.code, r.stderr)
	}

	// Allocations: saved by a sync (the directory's csAllocation), read
	// by report from the state alone, against the year's usage.
	e.sync(t)
	r = collabsync(t, e.config, "report", "--allocations", "--at", "2026-11-15", "--format", "json")
	var uses []report.Use
	if err := json.Unmarshal([]byte(r.stdout), &uses); r.code != 0 || err != nil {
		t.Fatalf("allocations: code %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(uses) != 2 || uses[0].Collaboration != "atlas" || uses[0].AllocatedCoreHours != 2400 || uses[0].PeriodStart != "2026-01-01" ||
		uses[1].Collaboration != "lsst" || uses[1].AllocatedGPUHours != 5 {
		t.Fatalf("allocations: %+v", uses)
	}
	atlasYear := reportRows(t, e.config, "--by", "collaboration", "--collaboration", "atlas", "--since", "2026-01", "--until", "2027-01")
	if len(atlasYear) != 1 || math.Abs(uses[0].CoreHours-atlasYear[0].CoreHours) > 0.01 || math.Abs(uses[0].CoreUsed-uses[0].CoreHours/2400) > 1e-9 {
		t.Errorf("atlas used %.2f of 2400, its year's report says %+v", uses[0].CoreHours, atlasYear)
	}
	// The chart draws atlas's allocation of 2,400 core-hours a year a month at a time.
	r = collabsync(t, e.config, "report", "--format", "svg", "--collaboration", "atlas")
	if r.code != 0 || !strings.Contains(r.stdout, ">allocation: 200 a month</text>") {
		t.Errorf("svg chart without the allocation: code %d %s", r.code, r.stderr)
	}
	if r := collabsync(t, e.config, "report", "--allocations", "--collaboration", "atlsa"); r.code != exitUsage ||
		!strings.Contains(r.stderr, `collaboration "atlsa" has no allocation (did you mean atlas?)`) {
		t.Errorf("a misspelled collaboration: code %d %s", r.code, r.stderr)
	}
}

// TestIngestSurvivesSIGKILL: an ingest of a large log killed with SIGKILL
// at random moments 20 times, then resumed to the end, stores exactly what
// one clean ingest stores.
func TestIngestSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "sacct.log")
	f, _ := os.Create(logPath)
	want, err := genlog.Write(f, genlog.Params{Jobs: 200_000})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	e := demoWithAccounting(t, logPath)
	bin := plainBinary(t)

	// How long a clean ingest takes, to aim the kills inside it.
	clean := filepath.Join(dir, "clean.yaml")
	data, _ := os.ReadFile(e.config)
	os.WriteFile(clean, []byte(replaceStateDir(string(data), filepath.Join(dir, "clean-state"))), 0o600)
	start := time.Now()
	if out, err := exec.Command(bin, "-config", clean, "-log-level", "error", "ingest").CombinedOutput(); err != nil {
		t.Fatalf("clean ingest: %v\n%s", err, out)
	}
	took := time.Since(start)
	cleanJobs, cleanCS := totalCoreSeconds(reportRows(t, clean, "--by", "user"))
	if cleanJobs != 200_000 || cleanCS != want {
		t.Fatalf("clean ingest stored %d jobs, %d core-seconds; the log has 200000 and %d", cleanJobs, cleanCS, want)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for kills < 20 {
		cmd := exec.Command(bin, "-config", e.config, "-log-level", "error", "ingest")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(took))))
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
			kills++
			continue
		}
		// It finished before the kill: start over from an empty store, so
		// every kill lands in a run that still has work to do.
		os.RemoveAll(filepath.Join(filepath.Dir(e.config), "state"))
	}
	if out, err := exec.Command(bin, "-config", e.config, "-log-level", "error", "ingest").CombinedOutput(); err != nil {
		t.Fatalf("final ingest: %v\n%s", err, out)
	}
	jobs, cs := totalCoreSeconds(reportRows(t, e.config, "--by", "user"))
	if jobs != cleanJobs || cs != cleanCS {
		t.Errorf("after 20 SIGKILLs: %d jobs, %d core-seconds; clean ingest: %d, %d", jobs, cs, cleanJobs, cleanCS)
	}
}

// plainBinary is collabsync built without the race detector. The crash
// test is about what SIGKILL leaves on disk, and 20 interrupted ingests of
// a race-instrumented binary would take most of the CI budget.
func plainBinary(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return binary
	}
	plainOnce.Do(func() {
		plainPath = filepath.Join(filepath.Dir(binary), "collabsync-norace")
		build := exec.Command("go", "build", "-o", plainPath, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := build.CombinedOutput(); err != nil {
			plainErr = fmt.Errorf("build: %v\n%s", err, msg)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainPath
}

// The non-race build, made once for the tests that need it.
var (
	plainOnce sync.Once
	plainPath string
	plainErr  error
)

// replaceStateDir points a configuration at another state directory.
func replaceStateDir(doc, dir string) string {
	var out []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "state_dir:") {
			line = fmt.Sprintf("state_dir: %q", dir)
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// TestServeIngestsOnSchedule: the daemon ingests each source on its cron
// schedule, attributing with its directory state, and counts it in metrics.
func TestServeIngestsOnSchedule(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sacct.log")
	f, _ := os.Create(logPath)
	genlog.Write(f, genlog.Params{Jobs: 100})
	f.Close()
	e := newDemoEnv(t, "")
	data, _ := os.ReadFile(e.config)
	doc, _, _ := strings.Cut(string(data), "accounting:\n")
	os.WriteFile(e.config, []byte(doc+strings.Replace(accountingConfig(logPath+"*"), "cluster: gen}", "cluster: gen, schedule: \"@every 1s\"}", 1)+
		serveConfig(freeListen(t), "")), 0o600)
	d := startServe(t, e.config)
	d.waitReady(t)
	eventually(t, 15*time.Second, "100 jobs ingested", func() bool {
		return d.metric(`collabsync_accounting_jobs_total{result="new",source="gen"}`) == "100"
	})
	f, _ = os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	genlog.Write(f, genlog.Params{Jobs: 150}) // the first 100 again, then 50 new
	f.Close()
	eventually(t, 15*time.Second, "150 jobs ingested", func() bool {
		return d.metric(`collabsync_accounting_jobs_total{result="new",source="gen"}`) == "150"
	})
	if v := d.metric(`collabsync_accounting_jobs_total{result="duplicate",source="gen"}`); v != "100" {
		t.Errorf("duplicates = %q", v)
	}
	if v := d.metric(`collabsync_accounting_core_seconds_total{cluster="gen",collaboration="unattributed"}`); v == "" {
		t.Error("no core-seconds metric")
	}
	// The demo's allocations (atlas: core-hours; lsst: core and GPU)
	// against this year's usage of them (the generated jobs are none of
	// theirs): a series per allocated resource, none for the others.
	eventually(t, 15*time.Second, "allocation metrics", func() bool {
		return d.metric(`collabsync_allocation_used_ratio{collaboration="atlas",resource="core"}`) == "0" &&
			d.metric(`collabsync_allocation_used_ratio{collaboration="lsst",resource="gpu"}`) == "0"
	})
	if v := d.metric(`collabsync_allocation_used_ratio{collaboration="atlas",resource="gpu"}`); v != "" {
		t.Errorf("atlas has no GPU allocation, and a ratio %s", v)
	}

	// A truncated rotation appears: the metrics say a file failed, once,
	// and that it stays unreadable until it goes.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	genlog.Write(zw, genlog.Params{Jobs: 50})
	zw.Close()
	rotated := logPath + ".1.gz"
	os.WriteFile(rotated, gz.Bytes()[:gz.Len()/2], 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(rotated, old, old)
	eventually(t, 15*time.Second, "the damaged file in the metrics", func() bool {
		return d.metric(`collabsync_accounting_failed_files_total{source="gen"}`) == "1" &&
			d.metric(`collabsync_accounting_unreadable_files{source="gen"}`) == "1" &&
			d.metric(`collabsync_accounting_ingest_runs_total{result="failure",source="gen"}`) == "1"
	})
	time.Sleep(2500 * time.Millisecond) // two more scheduled runs
	if v := d.metric(`collabsync_accounting_failed_files_total{source="gen"}`); v != "1" {
		t.Errorf("the damaged file failed again: %s", v)
	}
	if v := d.metric(`collabsync_accounting_unreadable_files{source="gen"}`); v != "1" {
		t.Errorf("unreadable files while it is there: %s", v)
	}
	os.Remove(rotated)
	eventually(t, 15*time.Second, "no unreadable file once it is gone", func() bool {
		return d.metric(`collabsync_accounting_unreadable_files{source="gen"}`) == "0"
	})
	d.stop(t)
	if rows := reportRows(t, e.config, "--by", "cluster"); len(rows) != 1 || rows[0].Jobs != 150 {
		t.Errorf("report after serve: %+v", rows)
	}
}
