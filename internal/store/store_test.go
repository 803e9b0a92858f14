package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

func open(t *testing.T) *Store {
	t.Helper()
	st, err := Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestAttributionRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	if a, err := st.LoadAttribution(ctx); a != nil || err != nil {
		t.Fatalf("fresh store: %v %v", a, err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	steps := []Attribution{
		{Collaborations: []string{"atlas", "irfu", "lpnhe"}, AdminOf: map[string]string{"alice": "lpnhe", "carol": "irfu"}},
		// unchanged: only the date moves
		{Collaborations: []string{"atlas", "irfu", "lpnhe"}, AdminOf: map[string]string{"alice": "lpnhe", "carol": "irfu"}},
		// carol moves, alice leaves, a collaboration goes, one comes
		{Collaborations: []string{"atlas", "cta", "lpnhe"}, AdminOf: map[string]string{"carol": "lpnhe", "dave": "lpnhe"}},
	}
	for i, want := range steps {
		now := t0.Add(time.Duration(i) * time.Hour)
		if err := st.SaveAttribution(ctx, &want, now); err != nil {
			t.Fatal(err)
		}
		got, err := st.LoadAttribution(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got.Collaborations)
		if !reflect.DeepEqual(got.Collaborations, want.Collaborations) || !reflect.DeepEqual(got.AdminOf, want.AdminOf) || !got.SavedAt.Equal(now) {
			t.Errorf("step %d: got %+v, want %+v at %v", i, got, want, now)
		}
	}
}

// TestFileModes: the database, -wal and -shm are 0600 whatever the umask,
// and an older database's modes are narrowed.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	os.WriteFile(path, nil, 0o666) // as an older version under a lax umask left it
	st, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SaveCookie(context.Background(), "s", []byte("c")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", p, fi.Mode().Perm())
		}
	}
}

// TestPathsWithURICharacters: the database is opened through a file: URI;
// a state directory whose path holds '#', '?', '%' or a space must still
// open its own database, not one named by a prefix of its path.
func TestPathsWithURICharacters(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	for _, dir := range []string{"a#1", "a#2", "b?x=1", "c%41", "d e"} {
		path := filepath.Join(base, dir, "state.db")
		st, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if err := st.SaveCookie(ctx, "s", []byte(dir)); err != nil {
			t.Fatal(err)
		}
		st.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: the database is not where it was asked for: %v", dir, err)
		}
	}
	for _, dir := range []string{"a#1", "a#2", "b?x=1", "c%41", "d e"} {
		st, err := Open(ctx, filepath.Join(base, dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := st.Cookie(ctx, "s"); string(c) != dir {
			t.Errorf("%s: the database holds %q", dir, c)
		}
		st.Close()
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("a stray database %s", e.Name())
		}
	}
}

// TestSaveStatusesWritesTheDifference: saving against what was stored
// leaves exactly the new statuses, whatever changed, was added or went.
func TestSaveStatusesWritesTheDifference(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	first := directory.Previous{
		"user/alice": {Status: "active", DN: "uid=alice", ID: 10000},
		"user/bob":   {Status: "active", DN: "uid=bob", ID: 10001},
		"user/carol": {Status: "pending", DN: "uid=carol", ID: 10002},
	}
	if err := st.SaveStatuses(ctx, nil, first, time.Now()); err != nil {
		t.Fatal(err)
	}
	second := directory.Previous{
		"user/alice": {Status: "active", DN: "uid=alice", ID: 10000},   // unchanged
		"user/bob":   {Status: "pending", DN: "uid=bob", ID: 10001},    // changed
		"user/dave":  {Status: "active", DN: "uid=dave", ID: 10003},    // new
		"user/carol": {Status: "pending", DN: "uid=carol2", ID: 10002}, // another entry
	}
	stored, _ := st.Statuses(ctx)
	if err := st.SaveStatuses(ctx, stored, second, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := statusesOf(ctx, st); !reflect.DeepEqual(got, second) {
		t.Errorf("stored %v, want %v", got, second)
	}
	third := directory.Previous{"user/dave": second["user/dave"]} // the rest gone
	if err := st.SaveStatuses(ctx, second, third, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := statusesOf(ctx, st); !reflect.DeepEqual(got, third) {
		t.Errorf("stored %v, want %v", got, third)
	}
}

// TestWritersBesideEachOther: a run saving statuses while another
// process records its memory (plan beside sync --once on one state
// directory) waits for it instead of failing with SQLITE_BUSY: a
// transaction that read before it wrote failed at once when another
// writer had committed in between, whatever the busy timeout.
func TestWritersBesideEachOther(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	a, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		for i := range 300 {
			if err := b.SavePeakLive(ctx, "plan", uint64(i), time.Now()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range 300 {
		changed := directory.Previous{fmt.Sprintf("user/u%d", i): {Status: directory.StatusActive}}
		if _, err := a.SaveStatusChanges(ctx, changed, nil, time.Now()); err != nil {
			t.Fatalf("save statuses beside another writer, round %d: %v", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("the other writer: %v", err)
	}
}

// statusesOf returns the stored statuses as a map.
func statusesOf(ctx context.Context, st *Store) (directory.Previous, error) {
	h, err := st.Statuses(ctx)
	if err != nil {
		return nil, err
	}
	return directory.PreviousOf(h), nil
}
