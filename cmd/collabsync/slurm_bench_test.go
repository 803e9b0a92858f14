package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	slurmtest "github.com/collabsync/collabsync/internal/testharness/slurm"
)

// BenchmarkSlurm1000: 1,000 collaborations of 20 users (10,000 users) in
// slapd, a slurm target against a real slurmdbd (MariaDB), sacctmgr run
// through a wrapper that logs each invocation. Reported: the first sync
// (every account and association created) and a sync without changes,
// each with its sacctmgr invocations (and the changing ones), and under
// serve the time from one membership change in slapd to 'sacctmgr show
// assoc' (median of 10). The reference, side by side on a second fresh
// cluster: the same accounts and associations loaded by hand with one
// 'sacctmgr -i load' of a flat file.
func BenchmarkSlurm1000(b *testing.B) {
	const users, collabs = 10_000, 1_000
	e := newLargeSyncEnv(b, users, collabs)
	c := slurmtest.StartT(b, slurmtest.Options{})
	w := newSacctmgrLog(b)
	dir := b.TempDir()
	data, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	doc := strings.Replace(string(data), "targets:\n  nss:\n    dir: "+e.outDir+"\n", fmt.Sprintf(`targets:
  - {name: nss, kind: nss, dir: %s}
  - {name: slurm, kind: slurm, sacctmgr: %s, slurm_conf: %s, cluster: %s}
`, e.outDir, w.path, c.Conf, c.Name), 1)
	if doc == string(data) {
		b.Fatal("could not add the slurm target")
	}
	doc += fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b))
	writeFile(b, e.config, doc)
	count := w.take
	sync := func() (time.Duration, int, int) {
		start := time.Now()
		if err := collabsyncB(b, e.config, "sync", "--once"); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		all, changing := count()
		return took, all, changing
	}
	first, firstCalls, firstChanging := sync()
	out, err := c.Run("sacctmgr", "-P", "-n", "show", "assoc", "where", "cluster="+c.Name, "account="+gendir.Collab(7), "format=User")
	if err != nil || len(strings.Fields(out)) != 20 { // 20 users (the account's own line has none)
		b.Fatalf("%s: %q %v", gendir.Collab(7), out, err)
	}
	again, againCalls, againChanging := sync()
	if againChanging != 0 {
		b.Errorf("a sync without changes ran %d changing sacctmgr commands", againChanging)
	}

	// The reference: one 'sacctmgr load' of the same tree on a fresh cluster.
	ref := slurmtest.StartT(b, slurmtest.Options{})
	var load strings.Builder
	fmt.Fprintf(&load, "Cluster - '%s'\nParent - 'root'\nAccount - 'collaborations':Description='collaborations':Organization='collabsync'\nParent - 'collaborations'\n", ref.Name)
	members := map[int][]string{}
	stride := collabs/2 + 1
	for i := 0; i < users; i++ {
		for k := 0; k < 2; k++ {
			members[(i+k*stride)%collabs] = append(members[(i+k*stride)%collabs], gendir.UID(i))
		}
	}
	for j := 0; j < collabs; j++ {
		fmt.Fprintf(&load, "Account - '%s':Description='collaboration':Organization='collabsync':Fairshare=1\n", gendir.Collab(j))
	}
	for j := 0; j < collabs; j++ {
		fmt.Fprintf(&load, "Parent - '%s'\n", gendir.Collab(j))
		for _, u := range members[j] {
			fmt.Fprintf(&load, "User - '%s':DefaultAccount='%s':Fairshare=parent\n", u, gendir.Collab(j))
		}
	}
	file := writeFile(b, filepath.Join(dir, "load.cfg"), load.String())
	start := time.Now()
	if out, err := ref.Run("sacctmgr", "-i", "load", "file="+file); err != nil {
		b.Fatalf("sacctmgr load: %v\n%s", err, testharness.Tail(out))
	}
	refLoad := time.Since(start)

	d, _ := startServeReady(b, e.config)
	count()
	var lat []float64
	for n := 0; n < 10; n++ {
		k := 100 + n
		start := time.Now()
		e.modify(b, memberChange(k, "add"))
		for {
			out, err := c.Run("sacctmgr", "-P", "-n", "show", "assoc", "where", "cluster="+c.Name, "account="+gendir.Collab(k), "user="+gendir.UID(k+1), "format=User")
			if err != nil {
				b.Fatal(err)
			}
			if strings.TrimSpace(out) == gendir.UID(k+1) {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("change %d not in sacctmgr after 30 s", n)
			}
		}
		lat = append(lat, time.Since(start).Seconds()*1000)
	}
	perChange, _ := count()
	d.stop(b)

	b.ReportMetric(first.Seconds(), "first_sync_s")
	b.ReportMetric(float64(firstCalls), "first_sacctmgr")
	b.ReportMetric(float64(firstChanging), "first_changing")
	b.ReportMetric(refLoad.Seconds(), "ref_load_s")
	b.ReportMetric(first.Seconds()/refLoad.Seconds(), "first/ref_load")
	b.ReportMetric(again.Seconds(), "nochange_sync_s")
	b.ReportMetric(float64(againCalls), "nochange_sacctmgr")
	b.ReportMetric(float64(againChanging), "nochange_changing")
	b.ReportMetric(float64(perChange)/10, "sacctmgr_per_change")
	b.ReportMetric(testharness.Median(lat), "change_to_sacctmgr_p50_ms")
}
