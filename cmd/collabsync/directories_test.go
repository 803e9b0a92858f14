package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/dirsrv"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/samba"
)

// TestServe389SizeLimitCutsRefresh: 389-ds (FreeIPA's server) with its
// default limits for a non-root bind user: a paged read of 5,100 users
// fails with "Admin Limit Exceeded" (look-through limit 5,000), and a
// syncrepl refresh is ended silently at the size limit (2,000), with
// neither a result nor an error. sync fails naming the settings; serve
// does not take the 2,000 for the directory: it stays not ready, and the
// log, /readyz and a metric name the bind entry's settings to change. Once
// the operator gives the bind entry nsSizeLimit and nsLookThroughLimit -1,
// the next attempt completes and all 5,100 users are provisioned. (The
// disabled users' search is off here: unindexed, it meets the look-through
// limit at once and is cut after 0 entries, with the same advice, before
// the users' search reaches its 2,000.)
func TestServe389SizeLimitCutsRefresh(t *testing.T) {
	dir := t.TempDir()
	ldif := filepath.Join(dir, "directory.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := gendir.Write(f, gendir.Params{Users: 5100, Collaborations: 25}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := dirsrv.StartT(t, dirsrv.Options{LDIF: []string{ldif}})
	const bindDN = "uid=collabsync,ou=services,dc=example,dc=org"
	if err := s.Modify(context.Background(), `dn: ou=services,dc=example,dc=org
changetype: add
objectClass: organizationalUnit
ou: services

dn: `+bindDN+`
changetype: add
objectClass: account
objectClass: simpleSecurityObject
uid: collabsync
userPassword: bind-secret-389

dn: dc=example,dc=org
changetype: modify
add: aci
aci: (targetattr="*")(version 3.0; acl "collabsync reads"; allow (read, search, compare) userdn="ldap:///`+bindDN+`";)
`); err != nil {
		t.Fatal(err)
	}
	pw := writeFile(t, filepath.Join(dir, "bind-password"), "bind-secret-389\n")
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  refresh_timeout: 2s
  users: {base_dn: "ou=people,dc=example,dc=org", disabled_filter: ""}
  collaborations: {base_dn: "ou=groups,dc=example,dc=org"}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, s.URI, bindDN, pw, filepath.Join(dir, "state"), out)+serveConfig(freeListen(t), ""))

	// A full read hits the look-through limit (5,000) and says what to change.
	if r := collabsync(t, cfg, "sync", "--once"); r.code != 1 || !strings.Contains(r.stderr, "Admin Limit Exceeded") ||
		!strings.Contains(r.stderr, "nsLookThroughLimit: -1") {
		t.Errorf("sync: %d %s", r.code, r.stderr)
	}
	d := startServe(t, cfg)
	eventually(t, 30*time.Second, "the cut refresh counted", func() bool {
		v := d.metric(`collabsync_syncrepl_refresh_failures_total{reason="stalled",stream="users"}`)
		return v != "" && v != "0"
	})
	code, body := d.get("/readyz")
	if code != 503 || !strings.Contains(body, "after 2000 entries") || !strings.Contains(body, "nsSizeLimit") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if log := d.logText(); !strings.Contains(log, "cannot complete its refresh") || !strings.Contains(log, "nsLookThroughLimit") {
		t.Errorf("the log does not say what to change:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(out, "passwd")); err == nil {
		t.Error("a partial directory was provisioned")
	}

	if err := s.Modify(context.Background(), "dn: "+bindDN+"\nchangetype: modify\nreplace: nsSizeLimit\nnsSizeLimit: -1\n-\nreplace: nsLookThroughLimit\nnsLookThroughLimit: -1\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "ready once the limits are lifted", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	data, err := os.ReadFile(filepath.Join(out, "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 5100 {
		t.Errorf("passwd has %d users, want 5100", n)
	}
	d.stop(t)
}

// TestWrongBaseOrFilterFailsLoudly: a configuration whose collaborations
// search matches nothing (a typo in the filter) makes check-config
// --online and sync fail naming base and filter, where before sync exited
// 0 having provisioned no group; serve stays not ready saying the same.
func TestWrongBaseOrFilterFailsLoudly(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	if r := collabsync(t, e.config, "check-config", "--online"); r.code != 0 || !strings.Contains(r.stdout, "users: 14 entries") {
		t.Fatalf("check-config --online on a good configuration: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	data, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(data), "(objectClass=csCollaboration)", "(objectClass=csColaboration)", 1)), 0o600)
	r := collabsync(t, e.config, "check-config", "--online")
	if r.code != 1 || !strings.Contains(r.stdout, "collaborations: 0 entries") ||
		!strings.Contains(r.stderr, `base "ou=collaborations,dc=example,dc=org", scope sub, filter "(objectClass=csColaboration)" matched no entries`) {
		t.Errorf("check-config --online: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := collabsync(t, e.config, "sync", "--once"); r.code != 1 || !strings.Contains(r.stderr, "matched no entries") {
		t.Errorf("sync: %d\n%s", r.code, r.stderr)
	}
	d := startServe(t, e.config)
	eventually(t, 10*time.Second, "the empty refresh said", func() bool {
		code, body := d.get("/readyz")
		return code == 503 && strings.Contains(body, "matched no entries")
	})
	d.stop(t)
}

// TestActiveDirectory: a real Samba AD DC with RFC 2307 attributes (users
// enabled without a password: userAccountControl 544; AD creates them
// disabled, 546, which collabsync now honours). The
// standard rfc2307 layout matches nothing there and says so (before: 0
// users, 0 groups, exit 0); with schema: ad and only URIs, bind and base
// DNs, sync provisions its users and groups (a user in no collaboration
// stays pending, as everywhere); serve follows
// AD by uSNChanged (a membership change, a rename and a deletion each
// arrive by the next poll, without a full read, and a restart resumes
// without one); a site that maps AD by hand without schema: ad gets
// syncrepl tried, which AD answers as a plain search: serve falls back to
// polling, says why, and its metrics tell the truth.
func TestActiveDirectory(t *testing.T) {
	s := samba.StartT(t, samba.Options{})
	ctx := context.Background()
	users := "CN=Users," + s.BaseDN
	if err := s.Add(ctx, fmt.Sprintf(`dn: CN=Alice Martin,%[1]s
objectClass: user
userAccountControl: 544
sAMAccountName: alice
displayName: Alice Martin
mail: alice@example.org
uidNumber: 10001
gidNumber: 20001
unixHomeDirectory: /home/alice
loginShell: /bin/bash

dn: CN=Bob Durand,%[1]s
objectClass: user
userAccountControl: 544
sAMAccountName: bob
displayName: Bob Durand
uidNumber: 10002
gidNumber: 20001
unixHomeDirectory: /home/bob
loginShell: /bin/zsh

dn: CN=atlas,%[1]s
objectClass: group
sAMAccountName: atlas
gidNumber: 20001
member: CN=Alice Martin,%[1]s
`, users)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	config := func(schema string) string {
		return writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  schema: %s
  users: {base_dn: %q}
  collaborations: {base_dn: %q}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, s.URI, s.AdminDN, s.AdminPWFile, schema, users, users, filepath.Join(dir, "state"), out)+serveConfig(freeListen(t), ""))
	}

	cfg := config("rfc2307")
	if r := collabsync(t, cfg, "check-config", "--online"); r.code != 1 || !strings.Contains(r.stderr, "matched no entries") {
		t.Errorf("the rfc2307 layout on AD: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cfg = config("ad")
	if r := collabsync(t, cfg, "check-config", "--online"); r.code != 0 || !strings.Contains(r.stdout, "users: 2 entries") ||
		!strings.Contains(r.stdout, "collaborations: 1 entries") {
		t.Fatalf("check-config --online: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := collabsync(t, cfg, "sync", "--once"); r.code != 0 {
		t.Fatalf("sync: %d\n%s", r.code, r.stderr)
	}
	// bob is in no collaboration yet: pending, not provisioned.
	if passwd, _ := os.ReadFile(filepath.Join(out, "passwd")); string(passwd) != "alice:x:10001:20001:Alice Martin:/home/alice:/bin/bash\n" {
		t.Errorf("passwd:\n%s", passwd)
	}
	if g, _ := os.ReadFile(filepath.Join(out, "group")); string(g) != "atlas:x:20001:alice\n" {
		t.Errorf("group:\n%s", g)
	}

	// serve follows AD by uSNChanged: O(change) reads per poll, no full read.
	d := startServe(t, cfg)
	d.waitReady(t)
	if v := d.metric(`collabsync_change_stream_mode{mode="usn"}`); v != "1" {
		t.Errorf("mode usn = %q", v)
	}
	group := func() string { g, _ := os.ReadFile(filepath.Join(out, "group")); return string(g) }
	passwd := func() string { p, _ := os.ReadFile(filepath.Join(out, "passwd")); return string(p) }
	start := time.Now()
	if err := s.Modify(ctx, fmt.Sprintf("dn: CN=atlas,%[1]s\nchangetype: modify\nadd: member\nmember: CN=Bob Durand,%[1]s\n", users)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "bob in atlas by the next poll", func() bool { return group() == "atlas:x:20001:alice,bob\n" })
	t.Logf("a change reached the group file in %v (poll_interval 1s)", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(passwd(), "bob:x:10002:20001:Bob Durand:/home/bob:/bin/zsh\n") {
		t.Errorf("bob not provisioned with his collaboration:\n%s", passwd())
	}
	// A rename (new sAMAccountName and CN), then a deletion.
	if err := s.Modify(ctx, fmt.Sprintf("dn: CN=Bob Durand,%[1]s\nchangetype: modrdn\nnewrdn: CN=Robert Durand\ndeleteoldrdn: 1\n\n"+
		"dn: CN=Robert Durand,%[1]s\nchangetype: modify\nreplace: sAMAccountName\nsAMAccountName: robert\n\n"+
		"dn: CN=atlas,%[1]s\nchangetype: modify\nreplace: member\nmember: CN=Alice Martin,%[1]s\nmember: CN=Robert Durand,%[1]s\n", users)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "bob renamed robert", func() bool { return group() == "atlas:x:20001:alice,robert\n" })
	if err := s.Modify(ctx, fmt.Sprintf("dn: CN=Alice Martin,%s\nchangetype: delete\n", users)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "alice deleted", func() bool { return group() == "atlas:x:20001:robert\n" && !strings.Contains(passwd(), "alice:") })
	body := d.metrics(t)
	if !strings.Contains(body, `collabsync_directory_full_reads_total{reason="refresh"} 1`) || strings.Contains(body, `reason="poll"`) {
		t.Errorf("full reads while following AD:\n%s", grepLines(body, "collabsync_directory_full_reads_total"))
	}
	d.stop(t)
	// A restart resumes from the saved model and USN: no full read.
	d = startServe(t, cfg)
	d.waitReady(t)
	if body := d.metrics(t); strings.Contains(body, "collabsync_directory_full_reads_total{") {
		t.Errorf("the restart read AD whole:\n%s", grepLines(body, "collabsync_directory_full_reads_total"))
	}
	d.stop(t)

	// robert's entry changed in the saved model behind serve's back: the
	// scheduled full reconcile finds it, and the model is read again from
	// AD. (With robert gone from it, the resumed poll would leave no user
	// and be refused, then read whole.)
	st, err := store.Open(ctx, filepath.Join(dir, "state", "collabsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	// The saved entry's uidNumber, in place (the same length: the saved
	// form's lengths stay right).
	var stream, key string
	var attrs []byte
	if err := st.DB.QueryRow(`SELECT stream, key, attrs FROM live_entry WHERE dn LIKE 'CN=Robert Durand,%'`).Scan(&stream, &key, &attrs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(attrs, []byte("10002")) {
		t.Fatalf("the saved entry holds no uidNumber 10002: %q", attrs)
	}
	if _, err := st.DB.Exec(`UPDATE live_entry SET attrs = ? WHERE stream = ? AND key = ?`, bytes.Replace(attrs, []byte("10002"), []byte("10099"), 1), stream, key); err != nil {
		t.Fatal(err)
	}
	st.Close()
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "serve:\n", "serve:\n  full_reconcile: \"@every 2s\"\n", 1)), 0o600)
	d = startServe(t, cfg)
	eventually(t, 20*time.Second, "the difference counted", func() bool {
		return d.metric(`collabsync_live_model_differences_total{stream="users"}`) == "1"
	})
	eventually(t, 20*time.Second, "robert back", func() bool { return strings.Contains(passwd(), "robert:x:10002:") })
	eventually(t, 20*time.Second, "the model rebuilt by a full read", func() bool {
		return d.metric(`collabsync_directory_full_reads_total{reason="refresh"}`) == "1"
	})
	d.stop(t)

	// A site mapping AD by hand without schema: ad gets syncrepl tried:
	// AD answers the sync request as a plain search, and serve falls back
	// to polling saying so, its metrics telling the truth.
	data, _ = os.ReadFile(cfg)
	hand := strings.Replace(string(data), "  schema: ad\n", "  schema: rfc2307\n", 1)
	hand = strings.Replace(hand, fmt.Sprintf("  users: {base_dn: %q}", users), fmt.Sprintf(
		"  users: {base_dn: %q, filter: \"(&(objectClass=user)(uidNumber=*))\", attributes: {uid: sAMAccountName, home: unixHomeDirectory}}", users), 1)
	hand = strings.Replace(hand, fmt.Sprintf("  collaborations: {base_dn: %q}", users), fmt.Sprintf(
		"  collaborations: {base_dn: %q, filter: \"(&(objectClass=group)(gidNumber=*))\", membership: member_dn}", users), 1)
	os.WriteFile(cfg, []byte(hand), 0o600)
	d = startServe(t, cfg)
	d.waitReady(t)
	eventually(t, 10*time.Second, "poll mode", func() bool { return d.metric(`collabsync_change_stream_mode{mode="poll"}`) == "1" })
	if log := d.logText(); !strings.Contains(log, "Active Directory has no syncrepl") || !strings.Contains(log, "without a sync state control") {
		t.Errorf("the fall-back is not explained:\n%s", log)
	}
	eventually(t, 5*time.Second, "connected while polling", func() bool { return d.metric("collabsync_ldap_connected") == "1" })
	d.stop(t)
}

// dirsrvEnv is a 389-ds with a generated directory and a serve config
// binding as its Directory Manager.
func dirsrvEnv(t *testing.T, opts dirsrv.Options, params gendir.Params, ldapExtra string) (*dirsrv.Server, string, string) {
	t.Helper()
	dir := t.TempDir()
	ldif := filepath.Join(dir, "directory.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := gendir.Write(f, params); err != nil {
		t.Fatal(err)
	}
	f.Close()
	opts.LDIF = []string{ldif}
	s := dirsrv.StartT(t, opts)
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
%s  users: {base_dn: "ou=people,dc=example,dc=org"}
  collaborations: {base_dn: "ou=groups,dc=example,dc=org"}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, s.URI, s.RootDN, s.RootPWFile, ldapExtra, filepath.Join(dir, "state"), out)+serveConfig(freeListen(t), ""))
	return s, cfg, out
}

// TestServe389FollowsChanges: serve on 389-ds (Content Synchronization and
// Retro Changelog as FreeIPA runs them) follows changes live, and a
// restart resumes from its cookie: the change made while it was down
// arrives, and nothing is read whole.
func TestServe389FollowsChanges(t *testing.T) {
	s, cfg, out := dirsrvEnv(t, dirsrv.Options{}, gendir.Params{Users: 300, Collaborations: 30}, "")
	inGroup := func(group, uid string) bool {
		data, _ := os.ReadFile(filepath.Join(out, "group"))
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, group+":") {
				return strings.Contains(","+line[strings.LastIndexByte(line, ':')+1:]+",", ","+uid+",")
			}
		}
		return false
	}
	d := startServe(t, cfg)
	d.waitReady(t)
	start := time.Now()
	if err := s.Modify(context.Background(), memberChange(1, "add")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a change live", func() bool { return inGroup(gendir.Collab(1), gendir.UID(2)) })
	t.Logf("a change reached the group file in %v", time.Since(start).Round(time.Millisecond))
	d.stop(t)
	if err := s.Modify(context.Background(), memberChange(2, "add")); err != nil {
		t.Fatal(err)
	}
	d = startServe(t, cfg)
	d.waitReady(t)
	eventually(t, 10*time.Second, "the change made while down", func() bool { return inGroup(gendir.Collab(2), gendir.UID(3)) })
	if body := d.metrics(t); strings.Contains(body, "collabsync_directory_full_reads_total{") {
		t.Errorf("the restart read 389-ds whole:\n%s", grepLines(body, "collabsync_directory_full_reads_total"))
	}
	if log := d.logText(); strings.Contains(log, "cannot be resumed from") {
		t.Error("warned about the Retro Changelog of a well configured server")
	}
	d.stop(t)
}

// TestServe389RetroChangelogWarning: with the Retro Changelog as 389-ds
// enables it by default, the cookies after a change end in #4294967295 and
// no restart can resume from them: serve says so, naming the attribute to
// add.
func TestServe389RetroChangelogWarning(t *testing.T) {
	s, cfg, _ := dirsrvEnv(t, dirsrv.Options{DefaultRetroChangelog: true}, gendir.Params{Users: 300, Collaborations: 30}, "")
	d := startServe(t, cfg)
	d.waitReady(t)
	if err := s.Modify(context.Background(), memberChange(1, "add")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the warning", func() bool {
		return strings.Contains(d.logText(), "nsslapd-attribute: nsuniqueid:targetUniqueId")
	})
	d.stop(t)
}

// TestActiveDirectoryTLS: AD's default refuses a simple bind over plain
// LDAP ("Strong(er) authentication required"); collabsync binds over
// ldaps and over StartTLS, verifying the DC's certificate against the
// configured CA, and a certificate it cannot verify is refused. The DC's
// certificate is made by configs/samba/make-dc-certificate, the recipe of
// docs/SERVERS.md.
func TestActiveDirectoryTLS(t *testing.T) {
	testharness.Require(t, "openssl")
	s := samba.StartT(t, samba.Options{MakeCertificate: "../../configs/samba/make-dc-certificate"})
	if err := s.Add(context.Background(), fmt.Sprintf(`dn: CN=Alice Martin,CN=Users,%[1]s
objectClass: user
userAccountControl: 544
sAMAccountName: alice
uidNumber: 10001
gidNumber: 20001

dn: CN=atlas,CN=Users,%[1]s
objectClass: group
gidNumber: 20001
member: CN=Alice Martin,CN=Users,%[1]s
`, s.BaseDN)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	config := func(uri, tls string) string {
		return writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  tls: {%s}
  schema: ad
  users: {base_dn: "CN=Users,%s"}
  collaborations: {base_dn: "CN=Users,%s"}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, uri, s.AdminDN, s.AdminPWFile, tls, s.BaseDN, s.BaseDN, filepath.Join(dir, "state"), out))
	}
	for _, c := range []struct {
		name, uri, tls, want string
		code                 int
	}{
		{"plain LDAP", s.URI, "", "Strong", 1},
		{"ldaps", s.LDAPSURI, "ca_file: " + s.Certs.CA, "collaborations: 1 entries", 0},
		{"StartTLS", s.URI, "start_tls: true, ca_file: " + s.Certs.CA, "collaborations: 1 entries", 0},
		{"ldaps, the system's CAs", s.LDAPSURI, "", "certificate", 1},
	} {
		r := collabsync(t, config(c.uri, c.tls), "check-config", "--online")
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("%s: exit %d\n%s%s", c.name, r.code, r.stdout, r.stderr)
		}
	}
	if r := collabsync(t, config(s.LDAPSURI, "ca_file: "+s.Certs.CA), "sync", "--once"); r.code != 0 {
		t.Fatalf("sync over ldaps: %d %s", r.code, r.stderr)
	}
	if g, _ := os.ReadFile(filepath.Join(out, "group")); string(g) != "atlas:x:20001:alice\n" {
		t.Errorf("group: %s", g)
	}
}

// TestSync389MembershipStyles: a full sync from 389-ds with each membership
// style, each read with its preset alone: posixGroup with memberUid
// (rfc2307) and groupOfNames of member DNs with a gidNumber, as FreeIPA
// keeps them (freeipa). Every group holds its members by uid.
func TestSync389MembershipStyles(t *testing.T) {
	for _, c := range []struct {
		schema   string
		memberDN bool
	}{{"rfc2307", false}, {"freeipa", true}} {
		t.Run(c.schema, func(t *testing.T) {
			_, cfg, out := dirsrvEnv(t, dirsrv.Options{}, gendir.Params{Users: 300, Collaborations: 30, MemberDN: c.memberDN}, "  schema: "+c.schema+"\n")
			if r := collabsync(t, cfg, "sync", "--once"); r.code != 0 {
				t.Fatalf("sync: %d %s", r.code, r.stderr)
			}
			data, err := os.ReadFile(filepath.Join(out, "group"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) != 30 || !strings.HasPrefix(lines[0], gendir.Collab(0)+":x:200000:"+gendir.UID(0)+",") {
				t.Errorf("%d groups; first: %q", len(lines), lines[0])
			}
			members := 0
			for _, l := range lines {
				members += strings.Count(l[strings.LastIndexByte(l, ':'):], ",") + 1
			}
			if members != 600 { // each user in two groups
				t.Errorf("%d memberships, want 600", members)
			}
		})
	}
}

// fileTime is a time as Active Directory's accountExpires holds it.
func fileTime(t time.Time) string { return strconv.FormatInt((t.Unix()+11644473600)*10_000_000, 10) }

// TestActiveDirectoryAccountsLeave: serve on a Samba AD DC with an
// ordinary bind user (no rights on CN=Deleted Objects) and the ad preset
// alone. A disabled account (userAccountControl 546), an expired one
// (accountExpires passed, no other change) and a deleted one leave passwd
// and every group; a renamed one (the admin console's Rename: a new CN,
// nothing else) stays as it was. Each within the poll interval plus 2 s;
// the deletion within deletion_scan plus that. The result is what a full
// sync makes (plan --check finds nothing to do). With a bind user that
// may read the tombstones, deletions arrive by the next poll. Before: the
// disabled account stayed, the rename removed the user from every group
// and deleted the account, the deletion went unseen until the daily full
// reconcile.
func TestActiveDirectoryAccountsLeave(t *testing.T) {
	s := samba.StartT(t, samba.Options{})
	ctx := context.Background()
	users := "CN=Users," + s.BaseDN
	var ldif strings.Builder
	for i, uid := range []string{"alice", "bob", "carol", "dave"} {
		fmt.Fprintf(&ldif, "dn: CN=%s Martin,%s\nobjectClass: user\nuserAccountControl: 544\nsAMAccountName: %s\ndisplayName: %s\n"+
			"uidNumber: %d\ngidNumber: 20001\nunixHomeDirectory: /home/%s\nloginShell: /bin/bash\n\n", uid, users, uid, uid, 10001+i, uid)
	}
	fmt.Fprintf(&ldif, "dn: CN=atlas,%[1]s\nobjectClass: group\ngidNumber: 20001\nmember: CN=alice Martin,%[1]s\nmember: CN=bob Martin,%[1]s\n"+
		"member: CN=carol Martin,%[1]s\nmember: CN=dave Martin,%[1]s\n\n"+
		"dn: CN=cms,%[1]s\nobjectClass: group\ngidNumber: 20002\nmember: CN=bob Martin,%[1]s\nmember: CN=carol Martin,%[1]s\n", users)
	if err := s.Add(ctx, ldif.String()); err != nil {
		t.Fatal(err)
	}
	bindDN, bindPW, err := s.AddBindUser(ctx, "collabsync")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	config := func(bindDN, pwFile string) string {
		return writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  schema: ad
  users: {base_dn: %q}
  collaborations: {base_dn: %q}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, s.URI, bindDN, pwFile, users, users, filepath.Join(dir, "state"), out)+serveConfig(freeListen(t), "  deletion_scan: 3s\n"))
	}
	cfg := config(bindDN, bindPW)
	file := func(name string) string { b, _ := os.ReadFile(filepath.Join(out, name)); return string(b) }
	provisioned := func(uid string) bool {
		return strings.Contains("\n"+file("passwd"), "\n"+uid+":") || groupHas(file("group"), "atlas", uid) || groupHas(file("group"), "cms", uid)
	}
	modify := func(change string) {
		t.Helper()
		if err := s.Modify(ctx, change); err != nil {
			t.Fatal(err)
		}
	}
	d := startServe(t, cfg)
	d.waitReady(t)
	for _, uid := range []string{"alice", "bob", "carol", "dave"} {
		if !groupHas(file("group"), "atlas", uid) {
			t.Fatalf("%s not in atlas:\n%s", uid, file("group"))
		}
	}
	if dl := d.status(t).ChangeStream.Deletions; dl == nil || dl.Mechanism != "scan" || dl.WorstSeconds != 4 {
		t.Errorf("deletions without rights on Deleted Objects: %+v", dl)
	}
	if v := d.metric(`collabsync_ad_deletion_delay_seconds{mechanism="scan"}`); v != "4" {
		t.Errorf("deletion delay metric: %q", v)
	}
	within := func(limit time.Duration, what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		eventually(t, limit, what, cond)
		t.Logf("%s in %v", what, time.Since(start).Round(time.Millisecond))
	}

	modify(fmt.Sprintf("dn: CN=alice Martin,%s\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n", users))
	within(3*time.Second, "disabled alice gone", func() bool { return !provisioned("alice") })

	modify(fmt.Sprintf("dn: CN=bob Martin,%s\nchangetype: modrdn\nnewrdn: CN=Robert Martin\ndeleteoldrdn: 1\n", users))
	time.Sleep(3 * time.Second) // two polls
	if !strings.Contains(file("passwd"), "bob:x:10002:") || !groupHas(file("group"), "atlas", "bob") || !groupHas(file("group"), "cms", "bob") {
		t.Errorf("renamed bob changed:\n%s\n%s", file("passwd"), file("group"))
	}

	modify(fmt.Sprintf("dn: CN=carol Martin,%s\nchangetype: delete\n", users))
	within(6*time.Second, "deleted carol gone", func() bool { return !provisioned("carol") })

	modify(fmt.Sprintf("dn: CN=dave Martin,%s\nchangetype: modify\nreplace: accountExpires\naccountExpires: %s\n", users, fileTime(time.Now().Add(3*time.Second))))
	within(6*time.Second, "expired dave gone", func() bool { return !provisioned("dave") })

	modify(fmt.Sprintf("dn: CN=alice Martin,%s\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 544\n", users))
	within(3*time.Second, "enabled alice back", func() bool { return groupHas(file("group"), "atlas", "alice") })
	d.stop(t)
	if r := collabsync(t, cfg, "plan", "--check"); r.code != 0 {
		t.Errorf("serve's result differs from a full sync's: plan --check %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The same bind user, once configs/samba/grant-deleted-objects (the
	// recipe of docs/SERVERS.md) lets it read the tombstones (the domain
	// has some): deletions arrive by the next poll.
	if out, err := exec.Command("../../configs/samba/grant-deleted-objects", s.SMBConf(), "collabsync").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "collabsync may now read CN=Deleted Objects,DC=example,DC=org") {
		t.Fatalf("grant-deleted-objects: %v: %s", err, out)
	}
	d = startServe(t, cfg)
	d.waitReady(t)
	if dl := d.status(t).ChangeStream.Deletions; dl == nil || dl.Mechanism != "tombstones" || dl.WorstSeconds != 1 {
		t.Errorf("deletions with rights on Deleted Objects: %+v", dl)
	}
	modify(fmt.Sprintf("dn: CN=Robert Martin,%s\nchangetype: delete\n", users))
	within(3*time.Second, "deleted bob gone", func() bool { return !provisioned("bob") })
	d.stop(t)
	if r := collabsync(t, cfg, "plan", "--check"); r.code != 0 {
		t.Errorf("serve's result differs from a full sync's: plan --check %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A search that fails at once (a base that does not exist) is retried
	// with a growing backoff, not every 0.5-1 s as before.
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), fmt.Sprintf("collaborations: {base_dn: %q}", users),
		`collaborations: {base_dn: "OU=nowhere,DC=example,DC=org"}`, 1)), 0o600)
	d = startServe(t, cfg)
	time.Sleep(8 * time.Second)
	if n := strings.Count(d.logText(), "interrupted; reconnecting"); n < 1 || n > 5 {
		t.Errorf("%d reconnections in 8 s", n)
	}
	d.stop(t)
}

// TestFreeIPALayoutOn389: 389-ds laid out as FreeIPA lays it out, read
// with the freeipa preset alone. A member that is a group is expanded (bob
// is in atlas through students), user private groups (posixGroup +
// mepManagedEntry, named on the user by mepManagedEntry) are provisioned,
// an account with nsAccountLock is left out, and a primary gid that names
// no group is a warning naming the user. Under serve a change to the
// nested group reaches the outer one, and a lock takes the user out, each
// within the usual latency. Before: "member cn=students... is not a known
// user; left out", and the private groups were nameless gids.
func TestFreeIPALayoutOn389(t *testing.T) {
	dir := t.TempDir()
	const sfx = "dc=example,dc=org"
	var ldif strings.Builder
	fmt.Fprintf(&ldif, "dn: %[1]s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: IPA\n\n"+
		"dn: ou=people,%[1]s\nobjectClass: organizationalUnit\nou: people\n\ndn: ou=groups,%[1]s\nobjectClass: organizationalUnit\nou: groups\n\n", sfx)
	user := func(uid string, n, gid int, private bool, extra string) {
		fmt.Fprintf(&ldif, "dn: uid=%[1]s,ou=people,%[2]s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nobjectClass: mepOriginEntry\n"+
			"uid: %[1]s\ncn: %[1]s\nsn: %[1]s\nuidNumber: %[3]d\ngidNumber: %[4]d\nhomeDirectory: /home/%[1]s\n%[5]s", uid, sfx, n, gid, extra)
		if private {
			fmt.Fprintf(&ldif, "mepManagedEntry: cn=%[1]s,ou=groups,%[2]s\n\ndn: cn=%[1]s,ou=groups,%[2]s\nobjectClass: posixGroup\n"+
				"objectClass: mepManagedEntry\ncn: %[1]s\ngidNumber: %[3]d\nmepManagedBy: uid=%[1]s,ou=people,%[2]s\n", uid, sfx, gid)
		}
		ldif.WriteString("\n")
	}
	user("alice", 10001, 10001, true, "")
	user("bob", 10002, 10002, true, "")
	user("carol", 10003, 29999, false, "")
	user("dave", 10004, 10004, true, "")
	user("erin", 10005, 10005, true, "")
	group := func(cn string, gid int, members ...string) {
		fmt.Fprintf(&ldif, "dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\nobjectClass: posixGroup\ncn: %s\ngidNumber: %d\n", cn, sfx, cn, gid)
		for _, m := range members {
			fmt.Fprintf(&ldif, "member: %s,%s\n", m, sfx)
		}
		ldif.WriteString("\n")
	}
	group("atlas", 20001, "uid=alice,ou=people", "uid=carol,ou=people", "cn=students,ou=groups")
	group("students", 20002, "uid=bob,ou=people", "uid=dave,ou=people")
	path := writeFile(t, filepath.Join(dir, "ipa.ldif"), ldif.String())
	s := dirsrv.StartT(t, dirsrv.Options{LDIF: []string{path}})
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  schema: freeipa
  users: {base_dn: "ou=people,%s"}
  collaborations: {base_dn: "ou=groups,%s"}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, s.URI, s.RootDN, s.RootPWFile, sfx, sfx, filepath.Join(dir, "state"), out)+serveConfig(freeListen(t), ""))
	file := func(name string) string { b, _ := os.ReadFile(filepath.Join(out, name)); return string(b) }
	if r := collabsync(t, cfg, "sync", "--once"); r.code != 0 {
		t.Fatalf("sync: %d %s", r.code, r.stderr)
	}
	want := "alice:x:10001:\natlas:x:20001:alice,bob,carol,dave\nbob:x:10002:\ndave:x:10004:\nstudents:x:20002:bob,dave\n"
	if g := file("group"); g != want {
		t.Errorf("group:\n%s\nwant\n%s", g, want)
	}
	v := collabsync(t, cfg, "violations")
	if !strings.Contains(v.stdout, "uid=carol,ou=people,dc=example,dc=org") || !strings.Contains(v.stdout, "primary gidNumber 29999 names no provisioned group") ||
		strings.Contains(v.stdout, "not a known user") {
		t.Errorf("violations:\n%s", v.stdout)
	}

	d := startServe(t, cfg)
	d.waitReady(t)
	if err := s.Modify(context.Background(), "dn: cn=students,ou=groups,"+sfx+"\nchangetype: modify\nadd: member\nmember: uid=erin,ou=people,"+sfx+"\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "erin in atlas through students", func() bool {
		return groupHas(file("group"), "atlas", "erin") && strings.Contains(file("group"), "\nerin:x:10005:\n")
	})
	if err := s.Modify(context.Background(), "dn: uid=dave,ou=people,"+sfx+"\nchangetype: modify\nadd: nsAccountLock\nnsAccountLock: TRUE\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "locked dave gone", func() bool {
		g := file("group")
		return !groupHas(g, "atlas", "dave") && !groupHas(g, "students", "dave") && !strings.Contains(g, "dave:x:") && !strings.Contains(file("passwd"), "dave:")
	})
	d.stop(t)
}

// TestActiveDirectoryCertificateAdvice: certificates Go refuses are named
// with the reason and what to do. A DC whose certificate names its address
// only in the common name: "names no host or address in subjectAltName"
// (before: Go's bare "certificate relies on legacy Common Name field").
// Samba's self-made certificates as provisioning leaves them: the CA's
// negative serial number (a random serial: some DCs have one) or the host
// certificate's missing subjectAltName, whichever Go meets first (before:
// "holds no PEM certificate" for the CA).
func TestActiveDirectoryCertificateAdvice(t *testing.T) {
	config := func(s *samba.Server, ca string) string {
		dir := t.TempDir()
		return writeFile(t, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  tls: {ca_file: %s}
  schema: ad
  users: {base_dn: "CN=Users,%s"}
  collaborations: {base_dn: "CN=Users,%s"}
state_dir: %s
targets:
  - {name: nss, kind: nss, dir: %s}
`, s.LDAPSURI, s.AdminDN, s.AdminPWFile, ca, s.BaseDN, s.BaseDN, filepath.Join(dir, "state"), dir))
	}
	t.Run("common name only", func(t *testing.T) {
		s := samba.StartT(t, samba.Options{CNOnlyTLS: true})
		r := collabsync(t, config(s, s.Certs.CA), "check-config", "--online")
		if r.code != 1 || !strings.Contains(r.stderr, "names no host or address in subjectAltName, only a common name") {
			t.Errorf("check-config --online: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("samba's own", func(t *testing.T) {
		s := samba.StartT(t, samba.Options{SelfMadeTLS: true})
		r := collabsync(t, config(s, s.SelfMadeCA), "check-config", "--online")
		if r.code == 0 || !strings.Contains(r.stderr, "negative serial number (Samba's self-made CA") &&
			!strings.Contains(r.stderr, "names no host or address in subjectAltName") {
			t.Errorf("check-config --online: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

// TestNonexistentBaseOn389: 389-ds answers a paged search under a base
// that does not exist with a bare success, and a syncrepl refresh there
// with nothing: sync, check-config --online and serve say the base DN does
// not exist (before: "connection lost?" and a server size limit).
func TestNonexistentBaseOn389(t *testing.T) {
	_, cfg, _ := dirsrvEnv(t, dirsrv.Options{}, gendir.Params{Users: 30, Collaborations: 3}, "  refresh_timeout: 2s\n")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "ou=people,dc=example", "ou=peeple,dc=example", 1)), 0o600)
	const want = `"ou=peeple,dc=example,dc=org" does not exist`
	if r := collabsync(t, cfg, "sync", "--once"); r.code != 1 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "connection lost") {
		t.Errorf("sync: %d %s", r.code, r.stderr)
	}
	if r := collabsync(t, cfg, "check-config", "--online"); r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("check-config --online: %d %s%s", r.code, r.stdout, r.stderr)
	}
	d := startServe(t, cfg)
	eventually(t, 15*time.Second, "/readyz naming the base", func() bool {
		code, body := d.get("/readyz")
		return code == 503 && strings.Contains(body, "the base DN \"ou=peeple,dc=example,dc=org\" does not exist")
	})
	if strings.Contains(d.logText(), "nsSizeLimit") {
		t.Error("a missing base blamed on size limits")
	}
	d.stop(t)
}
