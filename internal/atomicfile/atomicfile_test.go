package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	changed, err := Write(path, []byte("one\n"), 0o644, nil)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	if changed, err = Write(path, []byte("one\n"), 0o644, nil); err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v", changed, err)
	}
	// A failed verification keeps the old file and leaves no temporary.
	bad := errors.New("bad content")
	_, err = Write(path, []byte("two\n"), 0o644, func([]byte) error { return bad })
	if !errors.Is(err, bad) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "one\n" {
		t.Errorf("old content lost: %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("leftovers: %v", entries)
	}
	if _, err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644, nil); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// TestHolds: the comparison in blocks against files shorter, longer and
// different by one byte, around the block size.
func TestHolds(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3 << 16} {
		data := bytes.Repeat([]byte("abcdefg\n"), size/8+1)[:size]
		path := filepath.Join(dir, "f")
		check := func(content []byte, want bool) {
			t.Helper()
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			if got, err := holds(path, data); err != nil || got != want {
				t.Errorf("size %d, file of %d bytes: holds = %v, %v; want %v", size, len(content), got, err, want)
			}
		}
		check(data, true)
		check(append(append([]byte{}, data...), 'x'), false)
		if size > 0 {
			check(data[:size-1], false)
			flipped := append([]byte{}, data...)
			flipped[size-1] ^= 1
			check(flipped, false)
		}
	}
}
