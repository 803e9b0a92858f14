package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness/node"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// TestServePublishesToNodes: serve over the demo directory with an ldap
// target publishing to ou=published on the source slapd (the provider,
// with syncprov), a consumer slapd replicating that subtree, and a node
// whose nslcd reads the consumer. The node's getent answers what the
// account rules provision — the same users as the nss target's files,
// no one else — and a membership change in the source directory reaches
// the node's getent group within 2 s (no nscd on the node: no cache).
func TestServePublishesToNodes(t *testing.T) {
	const base = "ou=published,dc=example,dc=org"
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	raw, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(raw), "\naccounting:\n", "\n  - "+ldapTarget(e.server, base)+"\naccounting:\n", 1)
	if doc == string(raw) {
		t.Fatal("could not add the ldap target")
	}
	writeFile(t, e.config, doc)
	consumer := slapd.StartT(t, slapd.Options{Consumer: &slapd.Consumer{Provider: e.server.URI, SearchBase: base, BindDN: e.server.RootDN, Password: e.server.RootPassword}})
	n := node.StartT(t, consumer.URI, base)
	d := startServe(t, e.config)
	eventually(t, 20*time.Second, "the published groups on the node", func() bool {
		out, _ := n.Getent("group", "lsst")
		return strings.Contains(out, "dave")
	})
	// The node sees whom the rules provision: the nss target's users.
	passwd, err := os.ReadFile(e.outDir + "/passwd")
	if err != nil {
		t.Fatal(err)
	}
	provisioned := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(passwd)), "\n") {
		provisioned[strings.SplitN(line, ":", 2)[0]] = true
	}
	for _, uid := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "oscar", "peggy", "trent"} {
		out, err := n.Getent("passwd", uid)
		if err != nil {
			t.Fatal(err)
		}
		if (out != "") != provisioned[uid] {
			t.Errorf("%s: the node says %q; provisioned by the rules: %v", uid, strings.TrimSpace(out), provisioned[uid])
		}
	}
	if len(provisioned) < 5 {
		t.Fatalf("only %d users provisioned: %v", len(provisioned), provisioned)
	}
	// A membership change in the source directory, to the node's getent.
	for i, op := range []string{"add", "delete", "add"} {
		start := time.Now()
		e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\n"+op+": memberUid\nmemberUid: alice\n")
		eventually(t, 10*time.Second, fmt.Sprintf("change %d (%s alice) on the node", i+1, op), func() bool {
			out, _ := n.Getent("group", "lsst")
			return strings.Contains(out, "alice") == (op == "add")
		})
		took := time.Since(start)
		t.Logf("change %d (%s alice to lsst): on the node's getent after %v", i+1, op, took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("change %d reached the node after %v, want ≤ 2 s", i+1, took)
		}
	}
	d.stop(t)
}

// ldapTarget is the flow-style YAML of an ldap target named published
// that writes under base on s as its root.
func ldapTarget(s *slapd.Server, base string) string {
	return fmt.Sprintf("{name: published, kind: ldap, url: %q, tls: none, bind_dn: %q, password_file: %s, base_dn: %q}", s.URI, s.RootDN, s.RootPWFile, base)
}

// withPublished replaces the nss target of a generated environment's
// configuration (newGeneratedSyncEnv) by the nss target writing to out
// and an ldap target publishing under base.
func withPublished(t testing.TB, e *syncEnv, config, out, base string) string {
	t.Helper()
	doc := strings.Replace(config, "targets:\n  nss:\n    dir: "+e.outDir+"\n",
		fmt.Sprintf("targets:\n  - {name: nss, kind: nss, dir: %s}\n  - %s\n", out, ldapTarget(e.server, base)), 1)
	if doc == config {
		t.Fatal("could not add the ldap target")
	}
	return doc
}
