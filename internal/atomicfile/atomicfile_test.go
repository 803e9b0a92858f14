package atomicfile

import (
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
