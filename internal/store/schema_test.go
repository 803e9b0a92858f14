package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/accounting"
)

// TestLegacySchemaUpgrades: a database of the single migration list (the
// releases before schemas were tracked apart), at each version a release
// may have left, opens with every table and row it had, each schema at
// its version, and the rest migrated; a version no release had is refused.
func TestLegacySchemaUpgrades(t *testing.T) {
	ctx := context.Background()
	acc := Schema{Name: accounting.SchemaName, Migrations: accounting.Migrations()}
	for _, v := range []int{0, 1, 2, 3, 5, 8, 11} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			next := map[string]int{}
			for _, name := range legacy[:v] {
				list := migrations
				if name == accounting.SchemaName {
					list = acc.Migrations
				}
				if _, err := db.Exec(list[next[name]]); err != nil {
					t.Fatalf("legacy %s migration %d: %v", name, next[name]+1, err)
				}
				next[name]++
			}
			if v >= 1 {
				db.Exec("INSERT INTO subject_status (subject, status, updated_at) VALUES ('user/alice', 'active', 1)")
			}
			if v >= 3 {
				db.Exec("INSERT INTO ingest_run (source, last_run, newest_end, bad_lines) VALUES ('s', 1, 2, 0)")
			}
			db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v))
			db.Close()

			st, err := Open(ctx, path, acc)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var uv, rows int
			st.DB.QueryRow("PRAGMA user_version").Scan(&uv)
			if uv != tracked {
				t.Errorf("user_version %d, want %d", uv, tracked)
			}
			got := map[string]int{}
			r, err := st.DB.Query("SELECT name, version FROM schema_version")
			if err != nil {
				t.Fatal(err)
			}
			for r.Next() {
				var n string
				var ver int
				r.Scan(&n, &ver)
				got[n] = ver
			}
			r.Close()
			if got["store"] != len(migrations) || got[accounting.SchemaName] != len(acc.Migrations) {
				t.Errorf("versions %v, want store %d, accounting %d", got, len(migrations), len(acc.Migrations))
			}
			for _, table := range []string{"live_entry", "approval", "job", "usage_daily"} {
				if err := st.DB.QueryRow("SELECT count(*) FROM " + table).Scan(&rows); err != nil {
					t.Errorf("table %s: %v", table, err)
				}
			}
			// damage is accounting's third migration, dn the store's fourth.
			if err := st.DB.QueryRow("SELECT count(*) FROM ingest_checkpoint WHERE damage = ''").Scan(&rows); err != nil {
				t.Error(err)
			}
			st.DB.QueryRow("SELECT count(*) FROM subject_status WHERE dn = ''").Scan(&rows)
			if v >= 1 && rows != 1 {
				t.Errorf("subject_status rows %d, want the one kept", rows)
			}
			st.DB.QueryRow("SELECT count(*) FROM ingest_run").Scan(&rows)
			if v >= 3 && rows != 1 {
				t.Errorf("ingest_run rows %d, want the one kept", rows)
			}
			st.Close()
			// Opened again, nothing to do.
			if st, err = Open(ctx, path, acc); err != nil {
				t.Fatalf("second open: %v", err)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "state.db")
	db, _ := sql.Open("sqlite", "file:"+path)
	db.Exec("PRAGMA user_version = 12")
	db.Close()
	if _, err := Open(ctx, path, acc); err == nil || !strings.Contains(err.Error(), "newer than this collabsync knows") {
		t.Errorf("a version no release had: %v", err)
	}
}
