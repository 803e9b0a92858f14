package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// TestAliasesTarget: the standard-schemas centre with an aliases target
// whose command is the real postalias (Postfix, in its own configuration
// directory): postalias reads the file back and answers for every alias;
// a contact whose mail tries to inject "|/bin/sh" is in no alias; a
// second sync changes nothing and does not run postalias again; a
// contact leaving a role group leaves the alias.
func TestAliasesTarget(t *testing.T) {
	testharness.Require(t, "postalias")
	testharness.RequireRoot(t)
	ctx := context.Background()
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/standard.ldif"}})
	if err := s.Modify(ctx, `dn: uid=mallory,ou=people,dc=example,dc=org
changetype: add
objectClass: inetOrgPerson
objectClass: posixAccount
uid: mallory
cn: Mallory
sn: Mallory
mail: mallory@lab.example.org, |/bin/sh -c id
ou: LAB
uidNumber: 10009
gidNumber: 20001
homeDirectory: /home/mallory

dn: cn=lab,ou=groups,dc=example,dc=org
changetype: modify
add: memberUid
memberUid: mallory

dn: cn=exp-computing,ou=roles,dc=example,dc=org
changetype: modify
add: member
member: uid=mallory,ou=people,dc=example,dc=org

dn: uid=exp_robot,ou=robots,dc=example,dc=org
changetype: modify
add: description
description: ops@lab.example.org
`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	postfix := filepath.Join(dir, "postfix") // postalias reads main.cf there, not /etc/postfix
	os.Mkdir(postfix, 0o755)
	writeFile(t, filepath.Join(postfix, "main.cf"), "")
	// Postfix waits (up to 2 s) while main.cf looks freshly written.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(postfix, "main.cf"), old, old)
	aliases := filepath.Join(dir, "mail", "collabsync-aliases")
	config := fmt.Sprintf(standardRulesConfig, s.URI, s.RootDN, s.RootPWFile, filepath.Join(dir, "state"), out)
	config = strings.Replace(config, "targets:\n  nss: {dir: "+out+"}\n", fmt.Sprintf(`targets:
  - {name: nss, kind: nss, dir: %s}
  - name: mail
    kind: aliases
    path: %s
    command: [/usr/sbin/postalias, -c, %s, %s]
`, out, aliases, postfix, aliases), 1)
	config = strings.Replace(config, "    base_dn: ou=robots,dc=example,dc=org\n", "    base_dn: ou=robots,dc=example,dc=org\n    attributes: {managers: description}\n", 1)
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), config)

	sync := func() result {
		t.Helper()
		r := collabsync(t, cfg, "sync", "--once")
		if r.code != 0 {
			t.Fatalf("sync: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		return r
	}
	query := func(alias string) string {
		t.Helper()
		out, _ := exec.Command("postalias", "-c", postfix, "-q", alias, aliases).Output()
		return strings.TrimSpace(string(out))
	}
	sync()
	if r := collabsync(t, cfg, "violations"); !strings.Contains(r.stdout, "uid=mallory") || !strings.Contains(r.stdout, "not a plain address") {
		t.Errorf("the unusable mail is not reported:\n%s", r.stdout)
	}
	for alias, want := range map[string]string{
		"exp-contacts":       "alice@lab.example.org",
		"exp-computing":      "bob@lab.example.org",
		"lab-contacts":       "bob@lab.example.org",
		"exp_robot-managers": "ops@lab.example.org",
		"exp-storage":        "",
	} {
		if got := query(alias); got != want {
			t.Errorf("postalias -q %s = %q, want %q", alias, got, want)
		}
	}
	dump, err := exec.Command("postalias", "-c", postfix, "-s", aliases).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dump), "|") || strings.Contains(string(dump), "mallory") {
		t.Errorf("the alias table holds the injected address:\n%s", dump)
	}
	db := aliases + ".db"
	before, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}

	time.Sleep(10 * time.Millisecond)
	if r := collabsync(t, cfg, "plan", "--check"); r.code != 0 || strings.Contains(r.stdout, "exp-") {
		t.Errorf("plan --check after a sync: %d (want 0: nothing to change)\n%s%s", r.code, r.stdout, r.stderr)
	}
	sync()
	if after, _ := os.Stat(db); !after.ModTime().Equal(before.ModTime()) {
		t.Error("a sync without changes ran postalias again")
	}

	// bob leaves exp's computing role: the alias goes with its last address.
	if err := s.Modify(ctx, "dn: cn=exp-computing,ou=roles,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=bob,ou=people,dc=example,dc=org\n"); err != nil {
		t.Fatal(err)
	}
	r := collabsync(t, cfg, "plan")
	if r.code != 0 || !strings.Contains(r.stdout, "exp-computing") {
		t.Errorf("plan does not show the alias going: %d\n%s", r.code, r.stdout)
	}
	if r := collabsync(t, cfg, "plan", "--check"); r.code != 3 {
		t.Errorf("plan --check with a change pending: exit %d, want 3\n%s", r.code, r.stderr)
	}
	sync()
	if got := query("exp-computing"); got != "" {
		t.Errorf("exp-computing after bob left: %q", got)
	}
	if got := query("exp-contacts"); got != "alice@lab.example.org" {
		t.Errorf("exp-contacts = %q", got)
	}
}
