package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// newLargeServeEnv is newLargeSyncEnv with serve's listen address and the
// real getent in a private mount namespace.
func newLargeServeEnv(b *testing.B, users, collabs int) (*syncEnv, *daemonProc, time.Duration) {
	b.Helper()
	testharness.Require(b, "unshare", "getent")
	testharness.RequireRoot(b)
	e := newLargeSyncEnv(b, users, collabs)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	// serve on its defaults but for the address.
	os.WriteFile(e.config, append(cfg, fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b))...), 0o600)
	if e.view, err = testharness.NewNSSView(e.outDir, filepath.Dir(e.outDir)); err != nil {
		testharness.Missing(b, "%v", err)
	}
	d, took := startServeReady(b, e.config)
	return e, d, took
}

// startServeReady starts serve and returns it with the time until /readyz.
func startServeReady(b *testing.B, config string) (*daemonProc, time.Duration) {
	return startServeReadyWithin(b, config, 120*time.Second)
}

func startServeReadyWithin(b *testing.B, config string, limit time.Duration) (*daemonProc, time.Duration) {
	start := time.Now()
	d := startServe(b, config)
	eventually(b, limit, "/readyz", func() bool { code, _ := d.get("/readyz"); return code == 200 })
	return d, time.Since(start)
}

// fullReads is the daemon's count of whole-directory reads.
func (d *daemonProc) fullReads() float64 {
	_, body := d.get("/metrics")
	total := 0.0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "collabsync_directory_full_reads_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// peakRSS is the process's VmHWM in MiB.
func peakRSS(b *testing.B, pid int) float64 {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	b.Fatalf("no VmHWM for %d", pid)
	return 0
}

// memberChange adds (or removes) user k+1 to collaboration k of a
// generated directory, of which it is not a member.
func memberChange(k int, op string) string {
	return fmt.Sprintf("dn: cn=%s,ou=groups,dc=example,dc=org\nchangetype: modify\n%s: memberUid\nmemberUid: %s\n", gendir.Collab(k), op, gendir.UID(k+1))
}

// BenchmarkServeLive100k: serve on default settings over 100k users and
// 10k collaborations in slapd with syncprov. 50 single membership changes
// each timed from ldapmodify to the real getent; then a burst of 1,000
// changes over 10 s (one connection, one modify every 10 ms), timed from
// the last modify until the group file holds all of them. Reported: p50,
// p99 and max of the single changes, the burst's lag, the full directory
// reads during the series (the metric), serve's peak RSS (VmHWM), and the
// time to ready of the first start (a full refresh) and of a restart (the
// saved model, resumed from its cookies), with the restart's full reads.
func BenchmarkServeLive100k(b *testing.B) {
	const users, collabs = 100_000, 10_000
	e, d, firstStart := newLargeServeEnv(b, users, collabs)
	before := d.fullReads()

	var lat []float64
	for n := 0; n < 50; n++ {
		start := time.Now()
		e.modify(b, memberChange(n, "add"))
		for !e.inGroup(b, gendir.Collab(n), gendir.UID(n+1)) {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("change %d not seen after 30 s", n)
			}
		}
		lat = append(lat, time.Since(start).Seconds()*1000)
		b.Logf("change %d (add %s to %s): %.1f ms", n, gendir.UID(n+1), gendir.Collab(n), lat[n])
	}

	conn := e.server.RootConn(b)
	const burst = 1000
	tick := time.NewTicker(10 * time.Millisecond)
	for k := 100; k < 100+burst; k++ {
		<-tick.C
		req := ldap.NewModifyRequest(fmt.Sprintf("cn=%s,ou=groups,dc=example,dc=org", gendir.Collab(k)), nil)
		req.Add("memberUid", []string{gendir.UID(k + 1)})
		if err := conn.Modify(req); err != nil {
			b.Fatal(err)
		}
	}
	tick.Stop()
	last := time.Now()
	group := filepath.Join(e.outDir, "group")
	for {
		if missing := missingMembers(b, group, 100, burst); missing == 0 {
			break
		} else if time.Since(last) > 60*time.Second {
			b.Fatalf("%d burst changes still missing 60 s after the last", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	burstLag := time.Since(last)
	if !e.inGroup(b, gendir.Collab(100+burst-1), gendir.UID(100+burst)) {
		b.Fatal("getent does not show the burst's last change the group file holds")
	}
	reads := d.fullReads() - before
	hwm := peakRSS(b, d.cmd.Process.Pid)
	d.stop(b)

	// A restart: the saved model resumes from its cookies.
	d, restart := startServeReady(b, e.config)
	restartReads := d.fullReads()
	d.stop(b)

	b.ReportMetric(testharness.Median(lat), "p50_ms") // sorts lat
	b.ReportMetric(lat[len(lat)*99/100], "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	b.ReportMetric(burstLag.Seconds()*1000, "burst_lag_ms")
	b.ReportMetric(reads, "full_reads")
	b.ReportMetric(hwm, "serve_maxrss_MiB")
	b.ReportMetric(firstStart.Seconds(), "first_start_s")
	b.ReportMetric(restart.Seconds(), "restart_s")
	b.ReportMetric(restartReads, "restart_full_reads")
}

// missingMembers counts the burst's changes (user k+1 in collaboration k
// for k in [from, from+n)) the group file does not hold yet.
func missingMembers(b *testing.B, group string, from, n int) int {
	data, err := os.ReadFile(group)
	if err != nil {
		b.Fatal(err)
	}
	members := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) == 4 {
			members[f[0]] = "," + f[3] + ","
		}
	}
	missing := 0
	for k := from; k < from+n; k++ {
		if !strings.Contains(members[gendir.Collab(k)], ","+gendir.UID(k+1)+",") {
			missing++
		}
	}
	return missing
}
