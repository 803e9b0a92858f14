package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// BenchmarkServeLive1M: serve on default settings over 1M users and 100k
// collaborations with heavy-tailed sizes (the largest 200k members, four
// memberships per user on average) in slapd with syncprov. 20 single
// membership changes, one member of the n-th largest collaboration taken
// out and put back in turn, each timed from ldapmodify to the real
// getent. Reported as BenchmarkServeLive100k: p50 and max of the changes,
// full reads during them, serve's peak RSS, the first start's and the
// restart's time to ready, and the restart's full reads and peak RSS; and, as the
// reference, the p50 and max of ldapmodify's own time for the same
// changes (slapd's share: a value taken out of a 200k-value attribute).
func BenchmarkServeLive1M(b *testing.B) {
	const users, collabs, changes = 1_000_000, 100_000, 20
	testharness.Require(b, "unshare", "getent")
	testharness.RequireRoot(b)
	e := newGeneratedSyncEnv(b, gendir.Params{Users: users, Collaborations: collabs, HeavyTail: true, MembersPerUser: 4})
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, e.config, string(cfg)+fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b)))
	if e.view, err = testharness.NewNSSView(e.outDir, filepath.Dir(e.outDir)); err != nil {
		testharness.Missing(b, "%v", err)
	}
	// One member of each of the 20 largest collaborations.
	conn := e.server.RootConn(b)
	member := make([]string, changes)
	for n := range changes {
		res, err := conn.Search(ldap.NewSearchRequest(fmt.Sprintf("cn=%s,ou=groups,dc=example,dc=org", gendir.Collab(n)), ldap.ScopeBaseObject,
			ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"memberUid"}, nil))
		if err != nil || len(res.Entries) != 1 || len(res.Entries[0].GetAttributeValues("memberUid")) == 0 {
			b.Fatalf("collaboration %d: %v", n, err)
		}
		vals := res.Entries[0].GetAttributeValues("memberUid")
		member[n] = vals[len(vals)/2]
	}
	d, firstStart := startServeReadyWithin(b, e.config, 15*time.Minute)
	before := d.fullReads()
	var lat, mod []float64
	for n := range changes {
		op, want := "delete", false
		if n%2 == 1 {
			op, want = "add", true
		}
		k := n / 2 * 2 // the same collaboration out, then in
		start := time.Now()
		e.modify(b, fmt.Sprintf("dn: cn=%s,ou=groups,dc=example,dc=org\nchangetype: modify\n%s: memberUid\nmemberUid: %s\n", gendir.Collab(k), op, member[k]))
		mod = append(mod, time.Since(start).Seconds()*1000) // slapd's own part: a 200k-value group modified
		for e.inGroup(b, gendir.Collab(k), member[k]) != want {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("change %d not seen after 2 min", n)
			}
		}
		lat = append(lat, time.Since(start).Seconds()*1000)
		b.Logf("change %d (%s %s, %s): %.0f ms (ldapmodify %.0f ms)", n, op, member[k], gendir.Collab(k), lat[n], mod[n])
	}
	reads := d.fullReads() - before
	hwm := peakRSS(b, d.cmd.Process.Pid)
	d.stop(b)
	d, restart := startServeReadyWithin(b, e.config, 15*time.Minute)
	restartReads := d.fullReads()
	restartHWM := peakRSS(b, d.cmd.Process.Pid)
	d.stop(b)
	b.ReportMetric(testharness.Median(lat), "p50_ms") // sorts lat
	b.ReportMetric(testharness.Median(mod), "ldapmodify_p50_ms")
	b.ReportMetric(mod[len(mod)-1], "ldapmodify_max_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	b.ReportMetric(reads, "full_reads")
	b.ReportMetric(hwm, "serve_maxrss_MiB")
	b.ReportMetric(firstStart.Seconds(), "first_start_s")
	b.ReportMetric(restart.Seconds(), "restart_s")
	b.ReportMetric(restartReads, "restart_full_reads")
	b.ReportMetric(restartHWM, "restart_maxrss_MiB")
}
