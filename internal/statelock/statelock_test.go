package statelock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestHeldByAnotherProcess: flock(1), a real other process, holds the lock;
// Acquire waits, says who holds it, gives up after the wait, and gets it
// once the holder is gone.
func TestHeldByAnotherProcess(t *testing.T) {
	testharness.Require(t, "flock") // util-linux
	dir := t.TempDir()
	l, err := Acquire(context.Background(), dir, "first", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	// The description stays in the file, as a holder's would.
	holder := exec.Command("flock", dir+"/"+FileName, "sleep", "1")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	time.Sleep(200 * time.Millisecond)
	var told string
	_, err = Acquire(context.Background(), dir, "second", 200*time.Millisecond, func(h string) { told = h })
	var busy *BusyError
	if !errors.As(err, &busy) || !strings.Contains(err.Error(), "is in use by first (pid ") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(told, "first") {
		t.Errorf("waiting was told %q", told)
	}
	start := time.Now()
	l, err = Acquire(context.Background(), dir, "third", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("acquired after %v while flock held it", waited)
	}
	if b, _ := os.ReadFile(dir + "/" + FileName); !strings.HasPrefix(string(b), "third (pid ") {
		t.Errorf("lock file says %q", b)
	}
}

// TestTargetLocks: one target's lock excludes another run of that target
// (even within a process: a lock is an open file), names the target and
// its holder, and leaves other targets and the state directory's lock
// free.
func TestTargetLocks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	nss, err := AcquireTarget(ctx, dir, "nss", "collabsync serve", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer nss.Release()
	_, err = AcquireTarget(ctx, dir, "nss", "collabsync sync", 100*time.Millisecond)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Target != "nss" ||
		!strings.Contains(err.Error(), "target nss is being run by collabsync serve (pid ") {
		t.Fatalf("second lock of nss: %v", err)
	}
	hook, err := AcquireTarget(ctx, dir, "hook", "collabsync sync", 0)
	if err != nil {
		t.Fatalf("another target's lock: %v", err)
	}
	hook.Release()
	state, err := Acquire(ctx, dir, "collabsync sync", 0, nil)
	if err != nil {
		t.Fatalf("the state directory's lock: %v", err)
	}
	state.Release()
}
