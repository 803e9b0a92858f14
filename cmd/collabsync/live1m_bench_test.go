package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// BenchmarkServeLive1M: serve on default settings over 1M users and 100k
// collaborations with heavy-tailed sizes (the largest 200k members, four
// memberships per user on average) in slapd with syncprov. 50 single
// membership changes, one member of each of the 25 largest collaborations
// taken out and put back in turn, each timed from ldapmodify to the real
// getent. Reported as BenchmarkServeLive100k: p50, p99 and max of the
// changes, full reads during them, serve's peak RSS, the first start's
// and the restart's time to ready, and the restart's full reads and peak
// RSS; as the reference, the p50 and max of ldapmodify's own time for
// the same changes, and the p99 of each change's time after ldapmodify
// returned (collabsync's share, less the few ms of ldapmodify's exit).
//
// slapd's share is large because back-mdb, when any value of an indexed
// attribute is deleted, indexes every remaining value again (200k index
// writes for one member taken out of the largest collaboration; memberUid
// is indexed, as nslcd and SSSD look groups up by it). So after the
// restart, with memberUid taken out of slapd's index, 20 more changes
// are reported as unindexed_p99_ms and unindexed_ldapmodify_max_ms: the
// same path with slapd's re-index left out.
func BenchmarkServeLive1M(b *testing.B) {
	const users, collabs, changes, unindexed = 1_000_000, 100_000, 50, 20
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
	// One member of each of the 25 largest collaborations.
	conn := e.server.RootConn(b)
	member := make([]string, changes/2)
	for n := range member {
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
	lat, mod, after := memberChanges(b, e, member, changes)
	reads := d.fullReads() - before
	hwm := peakRSS(b, d.cmd.Process.Pid)
	d.stop(b)
	d, restart := startServeReadyWithin(b, e.config, 15*time.Minute)
	restartReads := d.fullReads()
	restartHWM := peakRSS(b, d.cmd.Process.Pid)
	// Taken out, nothing put back: an index added makes slapd index
	// the whole database on a thread of its own (a core for a minute).
	e.modify(b, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\ndelete: olcDbIndex\nolcDbIndex: memberUid,member eq\n")
	uLat, uMod, _ := memberChanges(b, e, member, unindexed)
	d.stop(b)
	b.ReportMetric(testharness.Median(lat), "p50_ms") // sorts lat
	b.ReportMetric(lat[len(lat)*99/100], "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	b.ReportMetric(testharness.Median(mod), "ldapmodify_p50_ms")
	b.ReportMetric(mod[len(mod)-1], "ldapmodify_max_ms")
	sort.Float64s(after)
	b.ReportMetric(after[len(after)*99/100], "after_ldapmodify_p99_ms")
	sort.Float64s(uLat)
	sort.Float64s(uMod)
	b.ReportMetric(uLat[len(uLat)*99/100], "unindexed_p99_ms")
	b.ReportMetric(uMod[len(uMod)-1], "unindexed_ldapmodify_max_ms")
	b.ReportMetric(reads, "full_reads")
	b.ReportMetric(hwm, "serve_maxrss_MiB")
	b.ReportMetric(firstStart.Seconds(), "first_start_s")
	b.ReportMetric(restart.Seconds(), "restart_s")
	b.ReportMetric(restartReads, "restart_full_reads")
	b.ReportMetric(restartHWM, "restart_maxrss_MiB")
}

// memberChanges makes n membership changes, member[k] taken out of the
// k-th largest collaboration and put back in turn, and returns each one's
// time from the start of ldapmodify to the real getent, ldapmodify's own
// time, and the difference, in ms.
func memberChanges(b *testing.B, e *syncEnv, member []string, n int) (lat, mod, after []float64) {
	for i := range n {
		op, want := "delete", false
		if i%2 == 1 {
			op, want = "add", true
		}
		k := i / 2 // the same collaboration out, then in
		start := time.Now()
		e.modify(b, fmt.Sprintf("dn: cn=%s,ou=groups,dc=example,dc=org\nchangetype: modify\n%s: memberUid\nmemberUid: %s\n", gendir.Collab(k), op, member[k]))
		mod = append(mod, time.Since(start).Seconds()*1000)
		for e.inGroup(b, gendir.Collab(k), member[k]) != want {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("change %d not seen after 2 min", i)
			}
		}
		lat = append(lat, time.Since(start).Seconds()*1000)
		after = append(after, lat[i]-mod[i])
		b.Logf("change %d (%s %s, %s): %.0f ms (ldapmodify %.0f ms)", i, op, member[k], gendir.Collab(k), lat[i], mod[i])
	}
	return lat, mod, after
}
