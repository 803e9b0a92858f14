// Package statelock serialises collabsync's mutating runs on one state
// directory: an exclusive flock(2) on a file in it. The kernel releases it
// when its holder exits, however it exits, so a killed run never leaves a
// stale lock behind. The file also says who holds it, for the message a
// waiting run prints.
package statelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/collabsync/collabsync/internal/owner"
)

// FileName is the lock file's name in the state directory.
const FileName = "collabsync.lock"

// Lock is a held lock; Release gives it back.
type Lock struct{ f *os.File }

// BusyError says another run holds the lock.
type BusyError struct {
	Dir string
	// Target, for a target's lock, names the target.
	Target string
	Holder string // as its holder described itself, e.g. "collabsync sync (pid 4242) since 10:03:12"
	Waited time.Duration
}

func (e *BusyError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "another collabsync run"
	}
	if e.Target != "" {
		return fmt.Sprintf("target %s is being run by %s; gave up after waiting %v (one run per target at a time: sync, serve)",
			e.Target, holder, e.Waited.Round(time.Millisecond))
	}
	return fmt.Sprintf("state directory %s is in use by %s; gave up after waiting %v (one mutating run at a time: sync, ingest, approve, serve's runs)",
		e.Dir, holder, e.Waited.Round(time.Millisecond))
}

// Acquire takes the lock of dir, waiting up to wait (0: not at all) while
// another process holds it; waiting is called once if it has to wait.
// who describes this run to others ("collabsync sync").
func Acquire(ctx context.Context, dir, who string, wait time.Duration, waiting func(holder string)) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	l, err := acquire(ctx, filepath.Join(dir, FileName), who, wait, waiting)
	var busy *BusyError
	if errors.As(err, &busy) {
		busy.Dir = dir
	}
	return l, err
}

// AcquireTarget takes the lock of one target in dir: runs of one target
// are serialised across processes, while runs of different targets (each
// on its own worker in serve) overlap.
func AcquireTarget(ctx context.Context, dir, target, who string, wait time.Duration) (*Lock, error) {
	l, err := acquire(ctx, filepath.Join(dir, "target-"+target+".lock"), who, wait, nil)
	var busy *BusyError
	if errors.As(err, &busy) {
		busy.Dir, busy.Target = dir, target
	}
	return l, err
}

// AcquireFile is Acquire on a lock file of its own, for short critical
// sections beside the run lock (opening the database).
func AcquireFile(ctx context.Context, path, who string, wait time.Duration) (*Lock, error) {
	return acquire(ctx, path, who, wait, nil)
}

func acquire(ctx context.Context, path, who string, wait time.Duration, waiting func(holder string)) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := owner.Like(f, filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	start := time.Now()
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		holder := readHolder(path)
		waited := time.Since(start)
		if waited >= wait {
			f.Close()
			return nil, &BusyError{Dir: path, Holder: holder, Waited: waited}
		}
		if !told && waiting != nil {
			waiting(holder)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock %s: %w", path, ctx.Err())
		case <-time.After(min(50*time.Millisecond, wait-waited)):
		}
	}
	desc := fmt.Sprintf("%s (pid %d) since %s\n", who, os.Getpid(), time.Now().Format(time.DateTime))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(desc), 0) // best effort: only ever read for messages
	}
	return &Lock{f: f}, nil
}

// readHolder reads the description the holder wrote.
func readHolder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Release gives the lock back.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
