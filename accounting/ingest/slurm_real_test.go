package ingest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/accountingtest"
	"github.com/collabsync/collabsync/accounting/slurm"
	"github.com/collabsync/collabsync/internal/store"
	slurmtest "github.com/collabsync/collabsync/internal/testharness/slurm"
)

// TestRealSlurm runs real jobs on a real one-node Slurm (slurmctld,
// slurmd, slurmdbd with MariaDB, munge), ingests `sacct --parsable2`
// output and the jobcomp/filetxt log, and checks core-hours per account
// against sacct's own CPUTimeRAW. slurmctld runs in Europe/Paris, so the
// jobcomp log's local times must come out as the same instants as sacct's
// UTC ones: ingesting both into one store finds every jobcomp job a
// duplicate.
func TestRealSlurm(t *testing.T) {
	c := slurmtest.StartT(t, slurmtest.Options{TZ: "Europe/Paris"})
	must := func(name string, args ...string) string { t.Helper(); return c.Must(t, name, args...) }
	must("sacctmgr", "-i", "add", "account", "proj1", "Description=p1", "Organization=o")
	must("sacctmgr", "-i", "add", "account", "proj2", "Description=p2", "Organization=o")
	must("sacctmgr", "-i", "add", "user", "root", "Account=proj1,proj2", "DefaultAccount=proj1")
	jobs := [][]string{
		{"-A", "proj1", "-n", "1", "--wrap", "sleep 2"},
		{"-A", "proj1", "-n", "2", "--wrap", "sleep 3"},
		{"-A", "proj1", "-n", "1", "--array", "1-2", "--wrap", "sleep 1"},
		{"-A", "proj2", "-n", "1", "--wrap", "sleep 1"},
		{"-A", "proj2", "-n", "2", "--wrap", "sleep 2; exit 3"},
	}
	for _, j := range jobs {
		must("sbatch", append([]string{"-o", "/dev/null"}, j...)...)
	}
	const wantRecords = 6 // the array has two tasks
	deadline := time.Now().Add(90 * time.Second)
	// Done when slurmctld has no job, jobcomp has every record, and
	// slurmdbd, which slurmctld tells asynchronously, has every job's end
	// (a dump before that misses a job: seen once on a loaded machine).
	for {
		q, _ := c.Run("squeue", "-h")
		comp, _ := os.ReadFile(c.JobComp)
		ended, _ := c.Run("sacct", "-X", "-n", "-P", "--format=End", "-S", "2020-01-01")
		if strings.TrimSpace(q) == "" && strings.Count(string(comp), "\n") >= wantRecords &&
			strings.Count(ended, "\n")-strings.Count(ended, "Unknown") >= wantRecords {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not done: squeue %q, sacct ends %q, jobcomp:\n%s", q, ended, comp)
		}
		time.Sleep(500 * time.Millisecond)
	}

	dir := t.TempDir()
	sacctLog := filepath.Join(dir, "sacct.log")
	format := strings.Join(slurm.XDMoDFields, ",")
	os.WriteFile(sacctLog, []byte(must("env", "TZ=UTC", "sacct", "--allusers", "--parsable2", "--noheader", "--allocations",
		"--duplicates", "--format", format, "-S", "2020-01-01")), 0o644)

	// sacct's own figures: core-seconds per account.
	truth := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(must("sacct", "-X", "-n", "-P", "--format=JobID,Account,CPUTimeRAW", "-S", "2020-01-01")), "\n") {
		f := strings.Split(line, "|")
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("sacct line %q", line)
		}
		truth[f[1]] += n
	}
	if len(truth) != 2 || truth["proj1"] == 0 || truth["proj2"] == 0 {
		t.Fatalf("sacct figures: %v", truth)
	}

	ingestInto := func(name string, srcs ...Source) (*store.Store, []Stats) {
		st, err := store.Open(context.Background(), filepath.Join(dir, name, "s.db"), accountingtest.Schema())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		in := &Ingester{DB: st.DB, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Attribute: func(j *accounting.Job) string { return j.Account }}
		var stats []Stats
		for _, s := range srcs {
			path := sacctLog
			if s.Format == "slurm-jobcomp" {
				path = c.JobComp
			}
			sts, err := in.Ingest(context.Background(), s, []string{path})
			if err != nil || sts.BadLines > 0 {
				t.Fatalf("ingest %s: %v, %+v", s.Name, err, sts)
			}
			stats = append(stats, sts)
		}
		return st, stats
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	fromSacct := Source{Name: "sacct", Format: "slurm-sacct", Options: accounting.Options{Cluster: c.Name, Location: time.UTC}}
	fromJobcomp := Source{Name: "jobcomp", Format: "slurm-jobcomp", Options: accounting.Options{Cluster: c.Name, Location: paris}}
	perAccount := func(st *store.Store) map[string]int64 {
		got := map[string]int64{}
		rows, err := st.DB.Query("SELECT account, sum(core_seconds) FROM job GROUP BY account")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var a string
			var cs int64
			rows.Scan(&a, &cs)
			got[a] = cs
		}
		return got
	}
	for _, src := range []Source{fromSacct, fromJobcomp} {
		st, stats := ingestInto(src.Name, src)
		if stats[0].Inserted != wantRecords {
			t.Errorf("%s: %d jobs, want %d", src.Name, stats[0].Inserted, wantRecords)
		}
		if got := perAccount(st); got["proj1"] != truth["proj1"] || got["proj2"] != truth["proj2"] {
			t.Errorf("%s: core-seconds per account %v, sacct says %v", src.Name, got, truth)
		}
	}
	_, stats := ingestInto("both", fromSacct, fromJobcomp)
	if stats[1].Inserted != 0 || stats[1].Duplicates != wantRecords {
		t.Errorf("jobcomp after sacct: %+v (its Paris times must match sacct's UTC ones)", stats[1])
	}
	var failed int64
	st, _ := ingestInto("states", fromSacct)
	st.DB.QueryRow("SELECT count(*) FROM job WHERE state = 'FAILED' AND account = 'proj2'").Scan(&failed)
	if failed != 1 {
		t.Errorf("failed jobs of proj2 = %d", failed)
	}
}
