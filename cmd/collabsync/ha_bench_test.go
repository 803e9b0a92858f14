package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// BenchmarkPairTakeover100k: a pair of serve (hosts a and b: own state
// and nss files) over 100k users and 10k collaborations, both with an
// nss target and an ldap target publishing to ou=published on the source
// slapd, the lease there, ttl 15 s (the default). A membership change is
// made and the leader killed with SIGKILL at once: reported, the time
// from the kill to b holding the lease, and to the change in the
// published subtree (b's first run reads every target's real state,
// 310k records, and applies the difference). Then b is stopped with
// SIGTERM after a change: the time until the restarted a, standby,
// holds the released lease and has published that change. And the
// standby's start until ready.
func BenchmarkPairTakeover100k(b *testing.B) {
	const users, collabs, base = 100_000, 10_000, "ou=published,dc=example,dc=org"
	testharness.RequireRoot(b)
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	e := newGeneratedSyncEnv(b, gendir.Params{Users: users, Collaborations: collabs}, schema)
	raw, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	conf := func(host, state, out string) string {
		doc := withPublished(b, e, string(raw), out, base)
		doc = strings.Replace(doc, "state_dir: "+filepath.Join(filepath.Dir(e.config), "state"), "state_dir: "+state, 1)
		doc += fmt.Sprintf("serve:\n  listen: %q\nha:\n  url: %q\n  tls: none\n  bind_dn: %q\n  password_file: %s\n  lease_dn: %q\n  holder: %s\n",
			freeListen(b), e.server.URI, e.server.RootDN, e.server.RootPWFile, "cn=serve,dc=example,dc=org", host)
		return doc
	}
	dirB := b.TempDir()
	os.Mkdir(filepath.Join(dirB, "extrausers"), 0o755)
	cfgA := writeFile(b, e.config, conf("host-a", filepath.Join(filepath.Dir(e.config), "state"), e.outDir))
	cfgB := writeFile(b, filepath.Join(dirB, "collabsync.yaml"), conf("host-b", filepath.Join(dirB, "state"), filepath.Join(dirB, "extrausers")))
	published := func(k int) bool {
		group := gendir.Collab(k)
		want := "memberUid: " + gendir.UID(k+1)
		out, err := exec.Command("ldapsearch", "-LLL", "-Q", "-Y", "EXTERNAL", "-H", e.server.LDAPIURI,
			"-b", "cn="+group+",ou=groups,"+base, "-s", "base", "memberUid").Output()
		return err == nil && strings.Contains(string(out), want+"\n")
	}
	leads := func(d *daemonProc) bool {
		code, body := d.get("/status")
		return code == 200 && strings.Contains(body, `"role":"leader"`)
	}
	a := startServe(b, cfgA)
	eventually(b, 10*time.Minute, "a ready", func() bool { code, _ := a.get("/readyz"); return code == 200 })
	start := time.Now()
	sb := startServe(b, cfgB)
	eventually(b, 10*time.Minute, "b ready as standby", func() bool {
		code, body := sb.get("/readyz")
		return code == 200 && strings.HasPrefix(body, "standby")
	})
	standbyReady := time.Since(start)

	e.modify(b, memberChange(0, "add"))
	a.cmd.Process.Kill()
	killed := time.Now()
	eventually(b, time.Minute, "b leads", func() bool { return leads(sb) })
	lease := time.Since(killed)
	eventually(b, 5*time.Minute, "the change published by b", func() bool { return published(0) })
	applied := time.Since(killed)

	a = startServe(b, cfgA)
	eventually(b, 10*time.Minute, "a ready as standby", func() bool {
		code, body := a.get("/readyz")
		return code == 200 && strings.HasPrefix(body, "standby")
	})
	e.modify(b, memberChange(1, "add"))
	sb.cmd.Process.Signal(syscall.SIGTERM)
	stopped := time.Now()
	eventually(b, time.Minute, "a leads", func() bool { return leads(a) })
	handover := time.Since(stopped)
	eventually(b, 5*time.Minute, "the change published", func() bool { return published(1) })
	handoverApplied := time.Since(stopped)
	a.stop(b)
	for _, d := range []*daemonProc{sb, a} {
		for _, line := range strings.Split(d.logText(), "\n") {
			if strings.Contains(line, "lease") || strings.Contains(line, "leading") || strings.Contains(line, `"reconciled"`) {
				b.Log(line)
			}
		}
	}
	b.ReportMetric(standbyReady.Seconds(), "standby_ready_s")
	b.ReportMetric(lease.Seconds(), "kill_to_lease_s")
	b.ReportMetric(applied.Seconds(), "kill_to_applied_s")
	b.ReportMetric(handover.Seconds(), "sigterm_to_lease_s")
	b.ReportMetric(handoverApplied.Seconds(), "sigterm_to_applied_s")
}
