package accounting

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/collabsync/collabsync/internal/store"
)

// TestGPUSecondsFilledFromStoredJobs: the migration that adds GPU time to
// the day totals fills it from the jobs already stored, on the day ingest
// counts a job (its end, else its start), leaving jobs without GPUs at 0.
func TestGPUSecondsFilledFromStoredJobs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	before := store.Schema{Name: SchemaName, Migrations: Migrations()[:3]}
	st, err := store.Open(ctx, path, before)
	if err != nil {
		t.Fatal(err)
	}
	const day = 20400 // 2025-11-07
	for i, j := range []struct {
		gpus, elapsed, start, end int64
		user                      string
	}{
		{2, 3600, day*86400 + 100, day*86400 + 3700, "alice"},
		{1, 1800, day*86400 + 200, 0, "alice"}, // no end: counted on its start's day
		{0, 7200, day*86400 + 300, day*86400 + 7500, "bob"},
	} {
		if _, err := st.DB.Exec(`INSERT INTO job (cluster, job_id, array_index, het_offset, submit, start, end_time, user, uid, grp,
			account, partition, name, elapsed, cpus, nodes, gpus, state, exit_code, core_seconds, collaboration, source)
			VALUES ('c', ?, 0, 0, 0, ?, ?, ?, 0, '', '', '', '', ?, 1, 1, ?, 'COMPLETED', '0:0', ?, 'atlas', 's')`,
			i, j.start, j.end, j.user, j.elapsed, j.gpus, j.elapsed); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []struct {
		user     string
		jobs, cs int64
	}{{"alice", 2, 5400}, {"bob", 1, 7200}} {
		if _, err := st.DB.Exec("INSERT INTO usage_daily VALUES (?, 'c', 'atlas', ?, 'COMPLETED', ?, ?)", day, u.user, u.jobs, u.cs); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	st, err = store.Open(ctx, path, store.Schema{Name: SchemaName, Migrations: Migrations()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]int64{}
	rows, err := st.DB.Query("SELECT user, gpu_seconds FROM usage_daily")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		var gs int64
		rows.Scan(&u, &gs)
		got[u] = gs
	}
	if got["alice"] != 2*3600+1800 || got["bob"] != 0 {
		t.Errorf("gpu_seconds %v, want alice %d, bob 0", got, 2*3600+1800)
	}
}
