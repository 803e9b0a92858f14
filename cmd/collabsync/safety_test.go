package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func (e *syncEnv) add(t *testing.T, ldif string) {
	t.Helper()
	if err := e.server.Add(context.Background(), ldif); err != nil {
		t.Fatal(err)
	}
}

func posixUser(uid string, uidNumber int) string {
	return "dn: uid=" + uid + ",ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: " + uid +
		"\ncn: " + uid + "\nsn: " + uid + "\nmail: " + uid + "@example.org\nuidNumber: " + strconv.Itoa(uidNumber) +
		"\ngidNumber: 20001\nhomeDirectory: /home/" + uid + "\n\n"
}

func posixGroup(cn string, gid int, members ...string) string {
	s := "dn: cn=" + cn + ",ou=groups,dc=example,dc=org\nobjectClass: posixGroup\ncn: " + cn + "\ngidNumber: " + strconv.Itoa(gid) + "\n"
	for _, m := range members {
		s += "memberUid: " + m + "\n"
	}
	return s + "\n"
}

// view is a command run in the private NSS view and what it must print.
type view struct{ cmd, want string }

func (e *syncEnv) expectViews(t *testing.T, views []view) {
	t.Helper()
	for _, c := range views {
		if got := e.getent(t, c.cmd); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.cmd, got, c.want)
		}
	}
}

func expectViolations(t *testing.T, config string, wants []string) {
	t.Helper()
	v := collabsync(t, config, "violations")
	for _, want := range wants {
		if !strings.Contains(v.stdout, want) {
			t.Errorf("violations lack %q:\n%s", want, v.stdout)
		}
	}
}

// TestReservedAccountsNeverProvisioned: LDAP entries named like the
// machine's own accounts, or numbered below the range, never reach the
// files: in a private mount namespace, getent shows the local root alone
// and root gains no group.
func TestReservedAccountsNeverProvisioned(t *testing.T) {
	e := newSyncEnv(t, "../../ldapx/testdata/small.ldif")
	e.sync(t)
	baseline := e.getent(t, "getent initgroups root")
	e.add(t, posixUser("root", 40011)+posixUser("lowuid", 1)+
		posixGroup("sudo", 27, "root", "alice")+posixGroup("shadowroot", 42, "root", "alice"))
	e.modify(t, "dn: cn=proj1,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: root\nmemberUid: lowuid\n")
	r := collabsync(t, e.config, "sync", "--once")
	if r.code != 0 {
		t.Fatalf("sync: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.expectViews(t, []view{
		{"getent initgroups root", baseline},
		{"getent passwd 40011 || echo absent", "absent\n"},
		{"getent passwd lowuid || echo absent", "absent\n"},
		{"getent passwd 1 | grep -c lowuid || true", "0\n"},
		{"getent group shadowroot || echo absent", "absent\n"},
		{"getent group proj1", "proj1:x:20001:alice,bob\n"},
		{"id -Gn alice", "proj1\n"},
	})
	expectViolations(t, e.config, []string{
		`name "root" is reserved (a local account in /etc/passwd)`,
		"uid=lowuid,ou=people,dc=example,dc=org     uidNumber 1 is ", // the machine's daemon, or outside the range
		`name "sudo" is reserved (a local account in /etc/group)`,
		"cn=shadowroot,ou=groups,dc=example,dc=org  gidNumber 42 is ",
	})
}

// TestNewcomerCannotRevokeAnAccount: entries that take a provisioned
// user's uidNumber or uid, or a provisioned group's gidNumber, are left
// out; the accounts already provisioned stay as they are.
func TestNewcomerCannotRevokeAnAccount(t *testing.T) {
	e := newSyncEnv(t, "../../ldapx/testdata/small.ldif")
	e.sync(t)
	before := statFiles(t, e.outDir)
	e.add(t, posixUser("mallory", 10001)+ // alice's uidNumber
		"dn: cn=Alice Again,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: alice\ncn: Alice Again\nsn: Again\nuidNumber: 10077\ngidNumber: 20001\nhomeDirectory: /home/alice2\n\n"+
		posixGroup("proj3", 20002, "mallory", "alice")) // proj2's gidNumber
	e.modify(t, "dn: cn=proj1,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: mallory\n")
	r := collabsync(t, e.config, "sync", "--once")
	if r.code != 0 {
		t.Fatalf("sync: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after := statFiles(t, e.outDir); after != before {
		t.Errorf("the files changed:\nbefore %s\nafter  %s", before, after)
	}
	e.sync(t) // and the history it left decides the same next time
	if after := statFiles(t, e.outDir); after != before {
		t.Errorf("the files changed at the second sync:\nbefore %s\nafter  %s", before, after)
	}
	e.expectViews(t, []view{
		{"getent passwd alice", "alice:x:10001:20001:Alice Martin:/home/alice:/bin/bash\n"},
		{"getent passwd 10001", "alice:x:10001:20001:Alice Martin:/home/alice:/bin/bash\n"},
		{"getent passwd mallory || echo absent", "absent\n"},
		{"getent group 20002", "proj2:x:20002:bob\n"},
	})
	expectViolations(t, e.config, []string{
		"uidNumber 10001 is already provisioned for uid=alice,ou=people,dc=example,dc=org; this newcomer is left out",
		`name "alice" is already provisioned for uid=alice,ou=people,dc=example,dc=org; this newcomer is left out`,
		"gidNumber 20002 is already provisioned for cn=proj2,ou=groups,dc=example,dc=org; this newcomer is left out",
	})
}

// TestServeEmptyRefreshDeletesNobody: a users search that matches nothing
// is refused under serve as it is by sync --once, whether the refresh
// starts afresh (a wrong but existing base DN) or resumes from a cookie
// (every user entry gone while serve was down): serve stays not ready
// saying why, across its retries, and nobody loses their account. Before,
// the refused refresh's cookie was kept and the retry resumed from it
// without the check: passwd was emptied a second after the refusal.
func TestServeEmptyRefreshDeletesNobody(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	e.sync(t)
	before, err := os.ReadFile(filepath.Join(e.outDir, "passwd"))
	if err != nil || !strings.Contains(string(before), "alice:") {
		t.Fatalf("passwd after sync: %v\n%s", err, before)
	}
	e.add(t, "dn: ou=services,dc=example,dc=org\nobjectClass: organizationalUnit\nou: services\n")
	good, _ := os.ReadFile(e.config)
	wrong := strings.Replace(string(good), "base_dn: ou=people,dc=example,dc=org", "base_dn: ou=services,dc=example,dc=org", 1)
	os.WriteFile(e.config, []byte(wrong), 0o600)

	// refused holds for long enough that several retries ran.
	refused := func(d *daemonProc, what string) {
		t.Helper()
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			if code, body := d.get("/readyz"); code != 503 || !strings.Contains(body, "matched no entries") {
				t.Fatalf("%s: /readyz %d %s", what, code, body)
			}
			if after, _ := os.ReadFile(filepath.Join(e.outDir, "passwd")); string(after) != string(before) {
				t.Fatalf("%s: passwd changed:\n%s", what, after)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if n := strings.Count(d.logText(), "matched no entries"); n < 2 {
			t.Errorf("%s: the refusal was logged %d times: no retry ran", what, n)
		}
	}
	d := startServe(t, e.config)
	eventually(t, 10*time.Second, "the refusal", func() bool { _, body := d.get("/readyz"); return strings.Contains(body, "matched no entries") })
	refused(d, "a wrong base")
	d.stop(t)

	// A wrong base that matches a few users: the guard holds the plan,
	// and /readyz names the searches as the suspect before any approval.
	e.add(t, strings.Replace(posixUser("svc1", 30001), "ou=people", "ou=services", 1))
	os.WriteFile(e.config, good, 0o600)
	setGuard(t, e, "{max_delete_ratio: 0.2, min_deletes: 1}")
	good, _ = os.ReadFile(e.config)
	wrong = strings.Replace(string(good), "base_dn: ou=people,dc=example,dc=org", "base_dn: ou=services,dc=example,dc=org", 1)
	os.WriteFile(e.config, []byte(wrong), 0o600)
	d = startServe(t, e.config)
	eventually(t, 10*time.Second, "the plan held", func() bool { _, body := d.get("/readyz"); return strings.Contains(body, "holds a plan") })
	code, body := d.get("/readyz")
	suspect := strings.Index(body, `the directory side suspects a wrong search: it would delete`)
	if code != 503 || suspect < 0 || !strings.Contains(body, `returns 1 users (base "ou=services,dc=example,dc=org"`) ||
		suspect > strings.Index(body, "approve it with") {
		t.Errorf("/readyz with most of passwd to delete: %d %s", code, body)
	}
	if h := d.held(t); !strings.Contains(h.Suspect, "check ldap.users and ldap.collaborations") {
		t.Errorf("/status held plan: %+v", h)
	}
	d.stop(t)

	// Corrected: serve becomes ready with the same accounts.
	os.WriteFile(e.config, good, 0o600)
	d = startServe(t, e.config)
	d.waitReady(t)
	if after, _ := os.ReadFile(filepath.Join(e.outDir, "passwd")); string(after) != string(before) {
		t.Fatalf("passwd changed:\n%s", after)
	}
	d.stop(t)

	// Every user deleted while serve was down: the refresh resumes from
	// the saved cookie and would empty the model.
	ldif, err := os.ReadFile("../../configs/demo/directory.ldif")
	if err != nil {
		t.Fatal(err)
	}
	var del strings.Builder
	for _, line := range strings.Split(string(ldif), "\n") {
		if strings.HasPrefix(line, "dn: uid=") && strings.HasSuffix(line, ",ou=people,dc=example,dc=org") {
			fmt.Fprintf(&del, "%s\nchangetype: delete\n\n", line)
		}
	}
	e.modify(t, del.String())
	d = startServe(t, e.config)
	eventually(t, 10*time.Second, "the refusal", func() bool { _, body := d.get("/readyz"); return strings.Contains(body, "matched no entries") })
	refused(d, "every user deleted")
	if !strings.Contains(d.logText(), "refresh resumed from the saved cookie would leave no entry") {
		t.Errorf("the refresh did not resume from the cookie:\n%s", d.logText())
	}
	d.stop(t)
}

// TestDisabledAccountsLeave: an account the directory disables is
// suspended, under serve within the usual latency and by sync --once: an
// administrative ppolicy lock on OpenLDAP (pwdAccountLockedTime
// 000001010000Z, the default disabled_filter). A lock after failed binds
// (a real time, healing by itself) removes nobody. Before, the lock
// changed nothing: the passwd line and memberships stayed.
func TestDisabledAccountsLeave(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	e.sync(t)
	file := func(name string) string { b, _ := os.ReadFile(filepath.Join(e.outDir, name)); return string(b) }
	anywhere := func(uid string) bool {
		return strings.Contains(file("passwd"), "\n"+uid+":") || strings.HasPrefix(file("passwd"), uid+":") ||
			groupHas(file("group"), "atlas", uid) || groupHas(file("group"), "lpnhe", uid)
	}
	if !anywhere("alice") || !groupHas(file("group"), "atlas", "alice") {
		t.Fatalf("alice not provisioned:\n%s\n%s", file("passwd"), file("group"))
	}
	d := startServe(t, e.config)
	d.waitReady(t)
	lock := func(uid, value string) {
		e.modify(t, fmt.Sprintf("dn: uid=%s,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: %s\n", uid, value))
	}
	start := time.Now()
	lock("alice", "000001010000Z")
	eventually(t, 5*time.Second, "alice gone from passwd and groups", func() bool { return !anywhere("alice") })
	t.Logf("a lock reached passwd and group in %v", time.Since(start).Round(time.Millisecond))
	if e.visible(t, "alice") {
		t.Error("getent still sees alice")
	}
	lock("bob", time.Now().UTC().Format("20060102150405Z"))
	time.Sleep(1500 * time.Millisecond)
	if !strings.Contains(file("passwd"), "bob:") {
		t.Error("a lock after failed binds removed bob")
	}
	e.modify(t, "dn: uid=alice,ou=people,dc=example,dc=org\nchangetype: modify\ndelete: pwdAccountLockedTime\n")
	eventually(t, 5*time.Second, "alice back", func() bool { return anywhere("alice") && groupHas(file("group"), "atlas", "alice") })
	d.stop(t)

	lock("alice", "000001010000Z")
	e.sync(t)
	if anywhere("alice") {
		t.Errorf("sync --once kept a locked account:\n%s\n%s", file("passwd"), file("group"))
	}
}
