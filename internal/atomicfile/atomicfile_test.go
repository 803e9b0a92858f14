package atomicfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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

// TestStream: Write's guarantees for streamed content larger than the
// buffers: the content arrives whole, a failed verification or a failing
// producer keeps the old file and leaves no temporary file, verify reads
// what the file holds (and what it leaves unread is still checked).
func TestStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	lines := func(n int, word string) func(io.Writer) error {
		return func(w io.Writer) error {
			for i := range n {
				if _, err := fmt.Fprintf(w, "%s %d\n", word, i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var want bytes.Buffer
	lines(50000, "one")(&want)
	var seen []byte
	keep := func(r io.Reader) error {
		var err error
		seen, err = io.ReadAll(r)
		return err
	}
	if err := Stream(path, 0o640, lines(50000, "one"), keep); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want.Bytes()) || !bytes.Equal(seen, want.Bytes()) {
		t.Fatalf("file holds %d bytes, verify saw %d, want %d", len(got), len(seen), want.Len())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	firstLine := func(r io.Reader) error {
		_, err := bufio.NewReader(r).ReadString('\n')
		return err
	}
	if err := Stream(path, 0o640, lines(50000, "one"), firstLine); err != nil {
		t.Fatalf("verify reading one line: %v", err)
	}
	bad := errors.New("bad content")
	for name, c := range map[string]struct {
		write  func(io.Writer) error
		verify func(io.Reader) error
	}{
		"verify fails": {lines(10, "two"), func(io.Reader) error { return bad }},
		"write fails":  {func(w io.Writer) error { io.WriteString(w, "two\n"); return bad }, nil},
	} {
		if err := Stream(path, 0o640, c.write, c.verify); !errors.Is(err, bad) {
			t.Errorf("%s: err = %v", name, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: old content lost", name)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("%s: leftovers: %v", name, entries)
		}
	}
	if err := Stream(path, 0o640, lines(3, "two"), nil); err != nil {
		t.Fatalf("new content: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "two 0\ntwo 1\ntwo 2\n" {
		t.Errorf("new content: %q", got)
	}
}
