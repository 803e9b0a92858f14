package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

const standardConfig = `
ldap:
  uris: [%s]
  bind:
    method: simple
    dn: %s
    password_file: %s
  users:
    base_dn: ou=people,dc=example,dc=org
  collaborations:
    base_dn: ou=groups,dc=example,dc=org
state_dir: %s
targets:
  nss:
    dir: %s
`

type syncEnv struct {
	server *slapd.Server
	config string
	outDir string
	view   *testharness.NSSView
}

func newSyncEnv(t *testing.T, ldif string) *syncEnv {
	t.Helper()
	testharness.Require(t, "unshare", "getent", "id")
	testharness.RequireRoot(t)
	s := slapd.StartT(t, slapd.Options{LDIF: []string{ldif}})
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"),
		fmt.Sprintf(standardConfig, s.URI, s.RootDN, s.RootPWFile, filepath.Join(dir, "state"), out))
	view, err := testharness.NewNSSView(out, dir)
	if err != nil {
		testharness.Missing(t, "%v", err)
	}
	return &syncEnv{server: s, config: cfg, outDir: out, view: view}
}

func (e *syncEnv) getent(t testing.TB, cmdline string) string {
	t.Helper()
	out, err := e.view.Run(cmdline)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// TestSyncGetent is the walking skeleton end to end: directory → sync →
// what the real getent and id show.
func TestSyncGetent(t *testing.T) {
	e := newSyncEnv(t, "../../ldapx/testdata/small.ldif")
	r := collabsync(t, e.config, "sync", "--once")
	if r.code != 0 {
		t.Fatalf("sync: code %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "directory: 3 violation(s), 1 warning(s)") {
		t.Errorf("no violation summary:\n%s", r.stderr)
	}
	v := collabsync(t, e.config, "violations")
	for _, want := range []string{
		`malformed_entry           error     -  `,
		`uid=broken,ou=people,dc=example,dc=org  uidNumber "abc" is not a number`,
		`cn=proj2,ou=groups,dc=example,dc=org    member "ghost" is not a known user`,
		`no_collaboration_contact  error     proj1`,
	} {
		if !strings.Contains(v.stdout, want) {
			t.Errorf("violations lack %q:\n%s", want, v.stdout)
		}
	}
	checks := []struct{ cmd, want string }{
		{"getent passwd alice", "alice:x:10001:20001:Alice Martin:/home/alice:/bin/bash\n"},
		{"getent passwd bob", "bob:x:10002:20001:Bob Durand:/home/bob:/bin/zsh\n"},
		{"getent group proj1", "proj1:x:20001:alice,bob\n"},
		{"getent group proj2", "proj2:x:20002:bob\n"},
		{"id alice", "uid=10001(alice) gid=20001(proj1) groups=20001(proj1)\n"},
		{"id bob", "uid=10002(bob) gid=20001(proj1) groups=20001(proj1),20002(proj2)\n"},
		{"getent passwd broken || echo absent", "absent\n"},
	}
	for _, c := range checks {
		if got := e.getent(t, c.cmd); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.cmd, got, c.want)
		}
	}

	// A second run changes nothing: same bytes, same mtime.
	before := statFiles(t, e.outDir)
	r = collabsync(t, e.config, "sync", "--once")
	if r.code != 0 || !strings.Contains(r.stdout, "target nss: 0 to add, 0 to modify, 0 to delete") {
		t.Fatalf("second sync: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after := statFiles(t, e.outDir); after != before {
		t.Errorf("second sync touched the files:\nbefore %s\nafter  %s", before, after)
	}

	// A change in the directory shows in getent after the next sync.
	err := e.server.Modify(context.Background(), `dn: cn=proj2,ou=groups,dc=example,dc=org
changetype: modify
add: memberUid
memberUid: alice
`)
	if err != nil {
		t.Fatal(err)
	}
	r = collabsync(t, e.config, "plan")
	if !strings.Contains(r.stdout, "~ group proj2: proj2:x:20002:bob\n      → proj2:x:20002:alice,bob") {
		t.Errorf("plan does not show the new member:\n%s", r.stdout)
	}
	if r = collabsync(t, e.config, "sync", "--once"); r.code != 0 {
		t.Fatalf("sync: %s", r.stderr)
	}
	if got := e.getent(t, "id -Gn alice"); got != "proj1 proj2\n" {
		t.Errorf("id -Gn alice = %q after joining proj2", got)
	}
}

// statFiles describes the files' content and mtimes.
func statFiles(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"passwd", "group"} {
		p := filepath.Join(dir, f)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s mtime=%d size=%d %q; ", f, st.ModTime().UnixNano(), st.Size(), data)
	}
	return b.String()
}

// TestSyncRecoversAndWarns: temporary files a killed sync left are removed
// by the next sync (not by a plan, which writes nothing), and a password
// file every user can read is warned about.
func TestSyncRecoversAndWarns(t *testing.T) {
	e := newSyncEnv(t, "../../ldapx/testdata/small.ldif")
	stale := []string{filepath.Join(e.outDir, ".passwd.tmp123456"), filepath.Join(e.outDir, ".group.tmp42")}
	for _, p := range stale {
		writeFile(t, p, "half a file")
	}
	if err := os.Chmod(e.server.RootPWFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := collabsync(t, e.config, "plan"); r.code != 0 {
		t.Fatalf("plan: %d %s", r.code, r.stderr)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("plan touched %s: %v", p, err)
		}
	}
	r := collabsync(t, e.config, "sync", "--once")
	if r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after a sync: %v", p, err)
		}
	}
	if !strings.Contains(r.stderr, "the LDAP password file is readable by every user") || !strings.Contains(r.stderr, "-rw-r--r--") {
		t.Errorf("no warning about the password file's mode:\n%s", r.stderr)
	}
}
