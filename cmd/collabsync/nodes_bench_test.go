package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/node"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// BenchmarkPublishToNode100k: serve on default settings over 100k users
// and 10k collaborations with an nss target and an ldap target
// publishing to ou=published on the source slapd, a consumer slapd
// replicating the published subtree and a node (nslcd, no nscd) reading
// the consumer. Reported: the time from serve's start until serve is
// ready and the node's getent shows the last published group (the first
// publish and its replication), and 20 membership changes timed from ldapmodify on the
// source to the node's getent group (p50, max).
func BenchmarkPublishToNode100k(b *testing.B) {
	const users, collabs, base = 100_000, 10_000, "ou=published,dc=example,dc=org"
	testharness.RequireRoot(b)
	e := newLargeSyncEnv(b, users, collabs)
	raw, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	doc := withPublished(b, e, string(raw), e.outDir, base)
	writeFile(b, e.config, doc+fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b)))
	consumer := slapd.StartT(b, slapd.Options{MaxSizeBytes: 2 << 30,
		Consumer: &slapd.Consumer{Provider: e.server.URI, SearchBase: base, BindDN: e.server.RootDN, Password: e.server.RootPassword}})
	n := node.StartT(b, consumer.URI, base)
	last := gendir.Collab(collabs - 1)
	start := time.Now()
	d := startServe(b, e.config)
	// Ready once every target's first run is done (the publish's last
	// entry may be added before others still in flight).
	eventually(b, 10*time.Minute, "/readyz", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	eventually(b, time.Minute, "the published groups on the node", func() bool {
		out, _ := n.Getent("group", last)
		return out != ""
	})
	firstPublish := time.Since(start)
	var lat []float64
	for k := range 20 {
		start := time.Now()
		e.modify(b, memberChange(k, "add"))
		uid := gendir.UID(k + 1)
		for {
			out, _ := n.Getent("group", gendir.Collab(k))
			if strings.Contains(out, uid) {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("change %d not on the node after 30 s", k)
			}
			time.Sleep(5 * time.Millisecond)
		}
		lat = append(lat, float64(time.Since(start).Milliseconds()))
	}
	d.stop(b)
	b.ReportMetric(firstPublish.Seconds(), "first_publish_to_node_s")
	b.ReportMetric(testharness.Median(lat), "p50_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
}
