package localaccounts

import (
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
