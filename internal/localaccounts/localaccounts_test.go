package localaccounts

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n# comment\n+nis\nnobody:x:65534:65534::/:/usr/sbin/nologin\nbroken\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\nsudo:x:27:alice\n"), 0o644)
	r, err := Read(passwd, group, []string{"admin"}, "rules.reserved_names")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"root": "a local account in " + passwd, "nobody": "a local account in " + passwd,
		"sudo": "a local account in " + group, "admin": "rules.reserved_names"} {
		if r.Names[name] != want {
			t.Errorf("name %s: %q, want %q", name, r.Names[name], want)
		}
	}
	if r.UIDs[65534] != "nobody's in "+passwd || r.GIDs[27] != "sudo's in "+group || len(r.UIDs) != 2 || len(r.GIDs) != 2 {
		t.Errorf("ids: %v %v", r.UIDs, r.GIDs)
	}
	if _, err := Read(filepath.Join(dir, "missing"), "", nil, ""); err == nil {
		t.Error("a missing passwd file was accepted")
	}
}

// FuzzRead: any file content reads without a panic, and every name and
// number it returns comes from a line of the file.
func FuzzRead(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/bash\nsudo:x:27:\n"))
	f.Add([]byte("+::::::\n:x:1:\nname:x:99999999999:\n\n#c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "passwd")
		os.WriteFile(p, data, 0o644)
		r, err := Read(p, "", nil, "")
		if err != nil {
			return // a line longer than the scanner's limit
		}
		for name := range r.Names {
			if name == "" || !bytes.Contains(data, []byte(name+":")) {
				t.Errorf("name %q is not in the file", name)
			}
		}
	})
}
