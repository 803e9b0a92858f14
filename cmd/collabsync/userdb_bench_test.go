package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// BenchmarkUserDB100k: 100k users and 10k collaborations; serve with the
// nss target and the userdb provider, running in a mount namespace with a
// tmpfs over /run/systemd. The same 500 random users are looked up with
// the real getent passwd and id, once through nss-systemd (the Varlink
// provider) and once through libnss-extrausers (the files serve wrote),
// each as one shell loop in its namespace, alternated three times;
// reported: the time per lookup of each and the ratio.
func BenchmarkUserDB100k(b *testing.B) {
	const users, collabs, lookups = 100_000, 10_000, 500
	testharness.Require(b, "unshare", "nsenter", "getent", "id")
	testharness.RequireRoot(b)
	e := newLargeSyncEnv(b, users, collabs)
	ns := newMountNS(b)
	ns.run(b, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/run/systemd")
	ns.run(b, "mkdir", "/run/systemd/userdb")
	nsswitch := writeFile(b, b.TempDir()+"/nsswitch.conf", "passwd: files systemd\ngroup: files systemd\n")
	ns.run(b, "mount", "--bind", nsswitch, "/etc/nsswitch.conf")
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(e.config, append(cfg, fmt.Sprintf("serve:\n  listen: %q\n  userdb: io.collabsync.Bench\n", freeListen(b))...), 0o600)
	files, err := testharness.NewNSSView(e.outDir, b.TempDir())
	if err != nil {
		testharness.Missing(b, "%v", err)
	}
	d := startServeIn(b, e.config, ns.wrap())
	eventually(b, 180*time.Second, "/readyz", func() bool { code, _ := d.get("/readyz"); return code == 200 })

	rnd := rand.New(rand.NewPCG(1, 2))
	var names []string
	for range lookups {
		names = append(names, gendir.UID(rnd.IntN(users)))
	}
	for _, cmd := range []string{"getent passwd", "id"} {
		loop := fmt.Sprintf("for u in %s; do %s $u >/dev/null || echo missing $u; done", strings.Join(names, " "), cmd)
		var varlink, extrausers []float64
		for range 3 {
			start := time.Now()
			argv := append(ns.wrap(), "sh", "-c", loop)
			out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
			if err != nil || len(out) > 0 {
				b.Fatalf("%s through nss-systemd: %v\n%s", cmd, err, testharness.Tail(string(out)))
			}
			varlink = append(varlink, time.Since(start).Seconds()*1000/lookups)
			start = time.Now()
			if out, err := files.Run(loop); err != nil || len(out) > 0 {
				b.Fatalf("%s through extrausers: %v\n%s", cmd, err, testharness.Tail(out))
			}
			extrausers = append(extrausers, time.Since(start).Seconds()*1000/lookups)
		}
		v, x := testharness.Median(varlink), testharness.Median(extrausers)
		unit := strings.ReplaceAll(cmd, " ", "_")
		b.ReportMetric(v, unit+"_varlink_ms")
		b.ReportMetric(x, unit+"_extrausers_ms")
		b.ReportMetric(v/x, unit+"_varlink/extrausers")
	}
	d.stop(b)
}
