package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// newDemoEnv runs the demo directory and configuration (the shipped schema)
// on a throwaway slapd, with getent looking at the nss output.
func newDemoEnv(t testing.TB, extraConfig string) *syncEnv {
	t.Helper()
	testharness.Require(t, "unshare", "getent", "id")
	testharness.RequireRoot(t)
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}})
	return demoEnvOn(t, s, extraConfig)
}

// demoEnvOn is newDemoEnv on a server the test started itself.
func demoEnvOn(t testing.TB, s *slapd.Server, extraConfig string) *syncEnv {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	doc, err := testharness.DemoConfig("../..", map[string]string{"LDAP_URI": s.URI, "BIND_DN": s.RootDN, "PASSWORD_FILE": s.RootPWFile,
		"STATE_DIR": filepath.Join(dir, "state"), "NSS_DIR": out, "LISTEN": freeListen(t)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(extraConfig, "serve:") {
		// The test's serve section replaces the demo's (the file's last).
		doc, _, _ = strings.Cut(doc, "\nserve:\n")
		doc += "\n"
	}
	doc += extraConfig
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"), doc)
	view, err := testharness.NewNSSView(out, dir)
	if err != nil {
		testharness.Missing(t, "%v", err)
	}
	return &syncEnv{server: s, config: cfg, outDir: out, view: view}
}

func (e *syncEnv) sync(t *testing.T) {
	t.Helper()
	if r := collabsync(t, e.config, "sync", "--once"); r.code != 0 {
		t.Fatalf("sync: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func (e *syncEnv) modify(t testing.TB, ldif string) {
	t.Helper()
	if err := e.server.Modify(context.Background(), ldif); err != nil {
		t.Fatal(err)
	}
}

// visible reports whether getent sees the user.
func (e *syncEnv) visible(t *testing.T, uid string) bool {
	out := e.getent(t, "getent passwd "+uid+" || true")
	return strings.HasPrefix(out, uid+":")
}

// TestRulesDecideWhatGetentSees drives the demo directory through the
// rules' transitions and checks each with the real getent.
func TestRulesDecideWhatGetentSees(t *testing.T) {
	e := newDemoEnv(t, "")
	e.sync(t)
	want := map[string]bool{
		"alice": true, "ivan": true, "atlas_transfer": true, "atlas": true, // active; validated external; production accounts
		"trent": false,                       // rule 2: in no collaboration
		"heidi": false, "km3net_sync": false, // rule 3: km3net expired
		"oscar": false, "mallory": false, // rule 4
		"judy":      false, // rule 1, held but never provisioned
		"peggy":     false, // suspended
		"lsstrobot": false, // rule 6
	}
	for uid, w := range want {
		if got := e.visible(t, uid); got != w {
			t.Errorf("%s visible=%v, want %v", uid, got, w)
		}
	}
	if got := e.getent(t, "getent group atlas"); got != "atlas:x:21001:alice,bob,carol,ivan\n" {
		t.Errorf("atlas = %q (mallory must not be a member)", got)
	}
	if got := e.getent(t, "getent group km3net cta || echo none"); got != "none\n" {
		t.Errorf("expired and pending collaborations provisioned: %q", got)
	}

	// Rule 2: trent becomes visible the sync after joining an active collaboration.
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	e.sync(t)
	if got := e.getent(t, "id -Gn trent"); got != "irfu lsst\n" { // irfu: his primary gid only
		t.Errorf("after joining lsst: id -Gn trent = %q", got)
	}
	if got := e.getent(t, "getent group lsst"); got != "lsst:x:21002:dave,erin,frank,trent\n" {
		t.Errorf("lsst = %q", got)
	}
	// Rule 3: and disappears when that collaboration's review expires.
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nreplace: csReviewedUntil\ncsReviewedUntil: 20200101000000Z\n")
	e.sync(t)
	if e.visible(t, "trent") {
		t.Error("trent still visible after lsst expired")
	}
	if !e.visible(t, "dave") {
		t.Error("dave lost although irfu, his administrative collaboration, is active")
	}

	// Rule 1 with hold: erin, provisioned, joins a second administrative
	// collaboration; she keeps her access while the violation stands.
	e.modify(t, "dn: cn=irfu,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: erin\n")
	e.sync(t)
	if !e.visible(t, "erin") {
		t.Error("held user erin was removed")
	}
	r := collabsync(t, e.config, "violations", "--format", "json")
	var vs []directory.Violation
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || r.code != 1 {
		t.Fatalf("violations: code %d, %v\n%s", r.code, err, r.stdout)
	}
	found := false
	for _, v := range vs {
		if v.Kind == directory.KindMultipleAdmin && v.Name == "erin" && v.Action == "hold" {
			found = true
		}
	}
	if !found {
		t.Errorf("no hold violation for erin in %+v", vs)
	}
	// Rule 4: validating oscar (by dave, a validator of lsst... which has
	// expired; oscar's only collaboration) makes him valid but still pending.
	e.modify(t, "dn: uid=oscar,ou=people,dc=example,dc=org\nchangetype: modify\nadd: csValidatedBy\ncsValidatedBy: uid=dave,ou=people,dc=example,dc=org\n")
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nreplace: csReviewedUntil\ncsReviewedUntil: 20991231000000Z\n")
	e.sync(t)
	if !e.visible(t, "oscar") || !e.visible(t, "trent") {
		t.Error("oscar (now validated) and trent (lsst reviewed again) should be visible")
	}
}

func TestViolationsSinceAndExitCodes(t *testing.T) {
	e := newDemoEnv(t, "")
	r := collabsync(t, e.config, "violations")
	if r.code != 1 || !strings.Contains(r.stdout, "unvalidated_external") {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var first []directory.Violation
	json.Unmarshal([]byte(collabsync(t, e.config, "violations", "--format", "json").stdout), &first)
	var again []directory.Violation
	json.Unmarshal([]byte(collabsync(t, e.config, "violations", "--format", "json").stdout), &again)
	if len(first) == 0 || len(first) != len(again) {
		t.Fatalf("violations: %d then %d", len(first), len(again))
	}
	for i := range first {
		if !first[i].Since.Equal(again[i].Since) {
			t.Errorf("%s %s: since moved from %v to %v", first[i].Kind, first[i].Name, first[i].Since, again[i].Since)
		}
	}
	// --stored lists what the last run recorded, the same violations,
	// reading neither the directory nor its password.
	cfg, _ := os.ReadFile(e.config)
	noSecret := writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), strings.ReplaceAll(string(cfg), e.server.RootPWFile, "/nonexistent/password"))
	r = collabsync(t, noSecret, "violations", "--stored", "--format", "json")
	var stored []directory.Violation
	json.Unmarshal([]byte(r.stdout), &stored)
	key := func(vs []directory.Violation) []string {
		var out []string
		for _, v := range vs {
			out = append(out, fmt.Sprintf("%s %s %s %s %s %s", v.Kind, v.Subject, v.Severity, v.Reason, v.Action, v.Since))
		}
		slices.Sort(out)
		return out
	}
	if r.code != 1 || !slices.Equal(key(stored), key(again)) {
		t.Errorf("violations --stored: code %d\n%s\nwant the same as\n%s", r.code, strings.Join(key(stored), "\n"), strings.Join(key(again), "\n"))
	}
	// Fix every violation; the list is empty and the exit code 0.
	for _, ldif := range []string{
		"dn: uid=oscar,ou=people,dc=example,dc=org\nchangetype: delete\n",
		"dn: uid=mallory,ou=people,dc=example,dc=org\nchangetype: delete\n",
		"dn: uid=judy,ou=people,dc=example,dc=org\nchangetype: delete\n",
		"dn: uid=lsstrobot,ou=production,dc=example,dc=org\nchangetype: delete\n",
		"dn: uid=km3net_sync,ou=production,dc=example,dc=org\nchangetype: delete\n",
		"dn: cn=km3net,ou=collaborations,dc=example,dc=org\nchangetype: delete\n",
		"dn: cn=cta,ou=collaborations,dc=example,dc=org\nchangetype: delete\n",
	} {
		e.modify(t, ldif)
	}
	// Dangling memberUids of the deleted users are warnings: listed, exit 0.
	r = collabsync(t, e.config, "violations")
	if r.code != 0 || strings.Count(r.stdout, "unknown_reference") != 4 || strings.Count(r.stdout, "primary_group") != 1 || strings.Contains(r.stdout, "error") {
		t.Errorf("after fixes: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, ldif := range []string{
		"dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: mallory\n",
		"dn: cn=irfu,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: judy\n",
		"dn: cn=lpnhe,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: judy\n",
		"dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: oscar\n",
		// ivan's primary gid named no group (a primary_group warning): atlas's.
		"dn: uid=ivan,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: gidNumber\ngidNumber: 21001\n",
	} {
		e.modify(t, ldif)
	}
	if r := collabsync(t, e.config, "violations"); r.code != 0 || r.stdout != "no violations\n" {
		t.Errorf("after cleaning up: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestContactsCommand(t *testing.T) {
	e := newDemoEnv(t, "")
	r := collabsync(t, e.config, "contacts", "-g", "atlas", "-p", "reporting", "--format", "json")
	if r.code != 0 {
		t.Fatalf("code %d: %s", r.code, r.stderr)
	}
	var got []contactJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, c := range got {
		uids = append(uids, c.UID)
	}
	if strings.Join(uids, ",") != "alice,bob,carol" || got[0].Mail != "alice.martin@lpnhe.example.org" {
		t.Errorf("reporting contacts of atlas = %+v", got)
	}
	if r := collabsync(t, e.config, "contacts", "-g", "atlas", "-p", "validator"); !strings.Contains(r.stdout, "carol  Carol Bernard") {
		t.Errorf("validator: %s", r.stdout)
	}
	if r := collabsync(t, e.config, "contacts", "-g", "cta", "-p", "collaboration"); r.code != 0 || r.stdout != "cta has no collaboration contact\n" {
		t.Errorf("cta: %d %q", r.code, r.stdout)
	}
	// The name is escaped on its way into the filter: no injection, no error.
	for _, name := range []string{"*", "atlas)(cn=*", `a\2a`} {
		if r := collabsync(t, e.config, "contacts", "-g", name); r.code != 1 || !strings.Contains(r.stderr, "no collaboration") {
			t.Errorf("-g %q: code %d, %s", name, r.code, r.stderr)
		}
	}
	if r := collabsync(t, e.config, "contacts", "-g", "atlas", "-p", "boss"); r.code != exitUsage {
		t.Errorf("bad role: code %d", r.code)
	}
}
