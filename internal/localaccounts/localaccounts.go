// Package localaccounts reads the names and numbers of a machine's own
// accounts (/etc/passwd, /etc/group), which collabsync must never
// provision from the directory.
package localaccounts

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/collabsync/collabsync/internal/directory"
)

// Read returns every name and uid of the passwd file and every name and gid
// of the group file as reserved; an empty path is skipped. extra are
// further reserved names, said to come from where.
func Read(passwd, group string, extra []string, where string) (*directory.Reserved, error) {
	r := &directory.Reserved{Names: map[string]string{}, UIDs: map[uint32]string{}, GIDs: map[uint32]string{}}
	for _, n := range extra {
		r.Names[n] = where
	}
	for _, f := range []struct {
		path string
		ids  map[uint32]string
	}{{passwd, r.UIDs}, {group, r.GIDs}} {
		if f.path == "" {
			continue
		}
		if err := read(f.path, r.Names, f.ids); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// read takes the name (field 1) and number (field 3) of each entry.
func read(path string, names map[string]string, ids map[uint32]string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read the machine's own accounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue // comments, NIS compat entries
		}
		fields := strings.SplitN(line, ":", 4)
		if len(fields) < 3 || fields[0] == "" {
			continue
		}
		if _, seen := names[fields[0]]; !seen {
			names[fields[0]] = "a local account in " + path
		}
		if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil {
			if _, seen := ids[uint32(id)]; !seen {
				ids[uint32(id)] = fields[0] + "'s in " + path
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
