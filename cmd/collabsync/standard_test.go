package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// standardRulesConfig maps every rule's input onto standard attributes:
// affiliation from ou, validator from seeAlso, kind from description,
// contacts from role groups, production owner from the account's name.
const standardRulesConfig = `
ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %q}
  users:
    base_dn: ou=people,dc=example,dc=org
    attributes: {affiliation: ou, validated_by: seeAlso}
  collaborations:
    base_dn: ou=groups,dc=example,dc=org
    attributes: {kind: description}
    kind_values: {administrative: [laboratory], scientific: [experiment]}
    contacts:
      groups:
        base_dn: ou=roles,dc=example,dc=org
        filter: (objectClass=groupOfNames)
        name: "{collaboration}-{role}"
  production_accounts:
    base_dn: ou=robots,dc=example,dc=org
rules:
  member_affiliations: [LAB]
  member_domains: [lab.example.org]
  accepted_domains: [partner.example.net]
state_dir: %s
targets:
  nss: {dir: %s}
`

func TestStandardSchemasOnly(t *testing.T) {
	testharness.Require(t, "unshare", "getent", "id")
	testharness.RequireRoot(t)
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/standard.ldif"}})
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), fmt.Sprintf(standardRulesConfig, s.URI, s.RootDN, s.RootPWFile, filepath.Join(dir, "state"), out))
	view, err := testharness.NewNSSView(out, dir)
	if err != nil {
		testharness.Missing(t, "%v", err)
	}
	e := &syncEnv{server: s, config: cfg, outDir: out, view: view}
	e.sync(t)

	// ext is validated (seeAlso) by bob, exp's validator from the role
	// group; guest is external and not validated; the robot follows exp.
	for uid, want := range map[string]bool{"alice": true, "bob": true, "ext": true, "guest": false, "exp_robot": true} {
		if got := e.visible(t, uid); got != want {
			t.Errorf("%s visible=%v, want %v", uid, got, want)
		}
	}
	if got := e.getent(t, "getent group exp"); got != "exp:x:20002:alice,ext\n" {
		t.Errorf("exp = %q", got)
	}
	r := collabsync(t, cfg, "violations")
	if r.code != 1 || !strings.Contains(r.stdout, "unvalidated_external") || strings.Contains(r.stdout, "no_collaboration_contact") {
		t.Errorf("violations: code %d\n%s", r.code, r.stdout)
	}
	r = collabsync(t, cfg, "contacts", "-g", "exp", "-p", "reporting")
	if !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "bob") {
		t.Errorf("reporting contacts of exp from role groups:\n%s%s", r.stdout, r.stderr)
	}

	// Rule 1 through standard schemas: alice joins a second laboratory.
	e.modify(t, "dn: cn=lab2,ou=groups,dc=example,dc=org\nchangetype: add\nobjectClass: posixGroup\ncn: lab2\ngidNumber: 20003\ndescription: laboratory\nmemberUid: alice\n")
	e.modify(t, "dn: cn=lab2-collaboration,ou=roles,dc=example,dc=org\nchangetype: add\nobjectClass: groupOfNames\ncn: lab2-collaboration\nmember: uid=alice,ou=people,dc=example,dc=org\n")
	if r := collabsync(t, cfg, "violations"); !strings.Contains(r.stdout, "2 administrative collaborations (lab, lab2)") {
		t.Errorf("no rule 1 violation:\n%s", r.stdout)
	}
	// Rule 5 through role groups: remove exp's only collaboration contact.
	e.modify(t, "dn: cn=exp-collaboration,ou=roles,dc=example,dc=org\nchangetype: delete\n")
	if r := collabsync(t, cfg, "violations"); !strings.Contains(r.stdout, "no_collaboration_contact  error     exp") {
		t.Errorf("no rule 5 violation:\n%s", r.stdout)
	}
}
