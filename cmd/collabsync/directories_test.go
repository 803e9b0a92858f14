package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/store"
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
// the next attempt completes and all 5,100 users are provisioned.
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
  users: {base_dn: "ou=people,dc=example,dc=org"}
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

// TestActiveDirectory: a real Samba AD DC with RFC 2307 attributes. The
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
sAMAccountName: alice
displayName: Alice Martin
mail: alice@example.org
uidNumber: 10001
gidNumber: 20001
unixHomeDirectory: /home/alice
loginShell: /bin/bash

dn: CN=Bob Durand,%[1]s
objectClass: user
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
	if res, err := st.DB.Exec(`UPDATE live_entry SET attrs = replace(attrs, '"10002"', '"10099"') WHERE dn LIKE 'CN=Robert Durand,%'`); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("changed %d saved entries", n)
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
// configured CA, and a certificate it cannot verify is refused.
func TestActiveDirectoryTLS(t *testing.T) {
	s := samba.StartT(t, samba.Options{TLS: true})
	if err := s.Add(context.Background(), fmt.Sprintf(`dn: CN=Alice Martin,CN=Users,%[1]s
objectClass: user
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
