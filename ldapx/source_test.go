package ldapx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// configFor parses a real config document pointing at s, so tests use the
// same defaults as production.
func configFor(t testing.TB, s *slapd.Server, ldapYAML string) Config {
	t.Helper()
	doc := "ldap:\n" + ldapYAML + `
  users: {base_dn: "ou=people,dc=example,dc=org"}
` + "state_dir: /tmp\n"
	if strings.Contains(ldapYAML, "collaborations:") {
		doc = strings.Replace(doc, "  users:", "  users:", 1)
	} else {
		doc = strings.Replace(doc, "state_dir", "  collaborations: {base_dn: \"ou=groups,dc=example,dc=org\"}\nstate_dir", 1)
	}
	cfg := parseSection(t, doc)
	return cfg
}

func simpleBind(s *slapd.Server, uris ...string) string {
	return fmt.Sprintf("  uris: [%s]\n  bind: {dn: %q, password_file: %q}\n", strings.Join(uris, ", "), s.RootDN, s.RootPWFile)
}

func snapshot(t *testing.T, cfg Config) *directory.Snapshot {
	t.Helper()
	snap, err := NewSource(cfg, discard()).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func problems(snap *directory.Snapshot) string {
	var b strings.Builder
	for _, p := range snap.Problems {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

func TestSourceMemberUID(t *testing.T) {
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/small.ldif"}})
	snap := snapshot(t, configFor(t, s, simpleBind(s, s.URI)))
	if len(snap.Users) != 2 || snap.Users[0].UID != "alice" || snap.Users[1].UID != "bob" {
		t.Fatalf("users: %+v", snap.Users)
	}
	alice := snap.Users[0]
	want := directory.User{DN: "uid=alice,ou=people,dc=example,dc=org", UID: "alice", UIDNumber: 10001, GIDNumber: 20001,
		Name: "Alice Martin", Mail: "alice@example.org", Home: "/home/alice", Shell: "/bin/bash"}
	if !reflect.DeepEqual(*alice, want) {
		t.Errorf("alice = %+v", alice)
	}
	if got := fmt.Sprint(snap.Collaborations[0].Members, snap.Collaborations[1].Members); got != "[alice bob] [bob]" {
		t.Errorf("members = %s", got)
	}
	p := problems(snap)
	for _, want := range []string{
		`uid=broken,ou=people,dc=example,dc=org: uidNumber "abc" is not a number`,
		`cn=proj2,ou=groups,dc=example,dc=org: member "ghost" is not a known user; left out`,
	} {
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}
}

func TestSourceMemberDN(t *testing.T) {
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/memberdn.ldif"}})
	cfg := configFor(t, s, simpleBind(s, s.URI)+`  collaborations:
    base_dn: ou=groups,dc=example,dc=org
    filter: (objectClass=groupOfNames)
    membership: member_dn
`)
	snap := snapshot(t, cfg)
	// Both bobs are read; rule 7 (in the directory package) decides about them.
	if len(snap.Users) != 3 {
		t.Errorf("users = %+v", snap.Users)
	}
	// The member DN differs from alice's in case and spacing.
	if len(snap.Collaborations) != 1 || fmt.Sprint(snap.Collaborations[0].Members) != "[alice]" {
		t.Errorf("collaborations = %+v", snap.Collaborations)
	}
	p := problems(snap)
	for _, want := range []string{
		`member "cn=outsider,ou=elsewhere,dc=example,dc=org" is not a known user`,
	} {
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}
}

func TestTLS(t *testing.T) {
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/small.ldif"}, TLS: true})
	withCA := fmt.Sprintf("  tls: {ca_file: %q}\n", s.Certs.CA)
	startTLS := fmt.Sprintf("  tls: {start_tls: true, ca_file: %q}\n", s.Certs.CA)
	tests := []struct {
		name, yaml, err string
	}{
		{"StartTLS with the CA", simpleBind(s, s.URI) + startTLS, ""},
		{"ldaps with the CA", simpleBind(s, s.LDAPSURI) + withCA, ""},
		{"ldaps without the CA is refused", simpleBind(s, s.LDAPSURI), "certificate signed by unknown authority"},
		{"StartTLS without the CA is refused", simpleBind(s, s.URI) + "  tls: {start_tls: true}\n", "certificate signed by unknown authority"},
		{"wrong server name is refused", simpleBind(s, s.LDAPSURI) + fmt.Sprintf("  tls: {ca_file: %q, server_name: ldap.example.org}\n", s.Certs.CA), "not ldap.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := NewSource(configFor(t, s, tt.yaml), discard()).Snapshot(context.Background())
			if tt.err == "" {
				if err != nil || len(snap.Users) != 2 {
					t.Fatalf("snapshot: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestExternalBind(t *testing.T) {
	// slapd maps the peer's uid; the test ACL grants access to root's identity.
	testharness.RequireRoot(t)
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/small.ldif"}})
	cfg := configFor(t, s, fmt.Sprintf("  uris: [%q]\n  bind: {method: external}\n", s.LDAPIURI))
	conn, err := NewClient(cfg, discard()).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	who, err := conn.WhoAmI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if who != "dn:gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth" {
		t.Errorf("bound as %q", who)
	}
	if snap := snapshot(t, cfg); len(snap.Users) != 2 {
		t.Errorf("users = %d", len(snap.Users))
	}
}

func TestFailoverAndErrors(t *testing.T) {
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/small.ldif"}})
	dead := "ldap://127.0.0.1:1"
	snap := snapshot(t, configFor(t, s, simpleBind(s, dead, s.URI)))
	if len(snap.Users) != 2 {
		t.Errorf("failover: %d users", len(snap.Users))
	}

	wrongPW := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(wrongPW, []byte("not-the-password\n"), 0o600)
	cfg := configFor(t, s, fmt.Sprintf("  uris: [%s, %s]\n  bind: {dn: %q, password_file: %q}\n", dead, s.URI, s.RootDN, wrongPW))
	_, err := NewSource(cfg, discard()).Snapshot(context.Background())
	msg := fmt.Sprint(err)
	for _, want := range []string{"ldap " + dead + ": dial", "ldap " + s.URI + `: bind as "cn=admin,dc=example,dc=org"`, "Invalid Credentials"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "not-the-password") {
		t.Errorf("error leaks the password: %s", msg)
	}
}

// TestSlapdDiesMidSearch: when the server goes away during a read, the
// snapshot fails with a clear error; after a restart the next read is whole.
func TestSlapdDiesMidSearch(t *testing.T) {
	dir := t.TempDir()
	ldif := filepath.Join(dir, "gen.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := gendir.Write(f, gendir.Params{Users: 5000, Collaborations: 100}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := slapd.StartT(t, slapd.Options{LDIF: []string{ldif}})
	cfg := configFor(t, s, simpleBind(s, s.URI)+"  page_size: 100\n")

	conn, err := NewClient(cfg, discard()).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seen := 0
	err = Stream(context.Background(), conn, searchRequest(cfg.Users.Search, []string{"uid"}), 100, func(*ldap.Entry) error {
		if seen++; seen == 150 {
			s.Kill()
		}
		return nil
	})
	if err == nil {
		t.Fatalf("search survived slapd's death after %d entries", seen)
	}
	if seen >= 5000 {
		t.Errorf("saw all %d entries although slapd was killed", seen)
	}
	t.Logf("error after %d entries: %v", seen, err)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewSource(cfg, discard()).Snapshot(ctx); err == nil {
		t.Fatal("snapshot succeeded with slapd down")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if snap := snapshot(t, cfg); len(snap.Users) != 5000 || len(snap.Collaborations) != 100 {
		t.Errorf("after restart: %d users, %d collaborations", len(snap.Users), len(snap.Collaborations))
	}
}
