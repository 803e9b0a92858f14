package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
	"github.com/collabsync/collabsync/ldapx"
)

// bigDirectory starts slapd with a generated directory of users and
// collaborations (memberUid) and returns a config for it.
func bigDirectory(b *testing.B, p gendir.Params) (*slapd.Server, string, *config.Config) {
	b.Helper()
	testharness.Require(b, "ldapsearch", "/usr/bin/time")
	e := newGeneratedSyncEnv(b, p)
	cfg, err := loadConfig(e.config)
	if err != nil {
		b.Fatal(err)
	}
	return e.server, e.config, cfg
}

// BenchmarkFullRead100k reads 100k users and 10k collaborations from slapd
// three ways, interleaved so machine noise hits all alike: ldapsearch
// dumping the same entries and attributes (the reference), collabsync's
// streaming Source in-process, and a whole `collabsync plan` process
// against an nss target that is already in sync (read, map, diff).
func BenchmarkFullRead100k(b *testing.B) {
	fullRead(b, gendir.Params{Users: 100_000, Collaborations: 10_000})
}

// BenchmarkFullReadHeavy100k and BenchmarkFullReadHeavy1M: the same on
// heavy-tailed collaborations (the largest a fifth of the users, four
// memberships per user on average), at 100k users / 10k collaborations
// and 1M / 100k.
func BenchmarkFullReadHeavy100k(b *testing.B) {
	fullRead(b, gendir.Params{Users: 100_000, Collaborations: 10_000, MembersPerUser: 4, HeavyTail: true})
}

func BenchmarkFullReadHeavy1M(b *testing.B) {
	fullRead(b, gendir.Params{Users: 1_000_000, Collaborations: 100_000, MembersPerUser: 4, HeavyTail: true})
}

func fullRead(b *testing.B, p gendir.Params) {
	users, collabs := p.Users, p.Collaborations
	s, cfgPath, cfg := bigDirectory(b, p)
	if r := collabsyncB(b, cfgPath, "sync", "--once"); r != nil {
		b.Fatal(r)
	}
	src := ldapx.NewSource(cfg.LDAP, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mapper := ldapx.NewMapper(cfg.LDAP)

	// rawReceive is the floor set by the connection: the same two paged
	// searches with every entry discarded unmapped, received by
	// collabsync's connection (the lean decoder) or by go-ldap's.
	rawReceive := func(goLDAP bool) float64 {
		var conn ldapx.Conn
		if goLDAP {
			gl, err := ldap.DialURL(s.URI)
			if err != nil {
				b.Fatal(err)
			}
			if err := gl.Bind(s.RootDN, s.RootPassword); err != nil {
				b.Fatal(err)
			}
			conn = gl
		} else {
			c, err := ldapx.NewClient(cfg.LDAP, slog.New(slog.NewTextHandler(io.Discard, nil))).Connect(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			conn = c
		}
		defer conn.Close()
		start := time.Now()
		for _, q := range []struct {
			s     ldapx.Search
			attrs []string
		}{{cfg.LDAP.Users.Search, mapper.UserAttributes()}, {cfg.LDAP.Collaborations.Search, mapper.CollaborationAttributes()}} {
			req := ldap.NewSearchRequest(q.s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, q.s.Filter, q.attrs, nil)
			if err := ldapx.Stream(context.Background(), conn, req, 1000, func(*ldap.Entry) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start).Seconds()
	}

	// The rules over the same snapshot, with institution lists so the
	// e-mail rules run for every user.
	pol, err := wiring.Policy(cfg, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	pol.MemberDomains, pol.AcceptedDomains = []string{"example.org"}, []string{"partner.example.net"}

	var refT, rawT, goldapT, srcT, rulesT, planT, refRSS, planRSS []float64
	for i := 0; i < b.N; i++ {
		for rep := 0; rep < 3; rep++ {
			// The commands timed run with this process at rest: at 1M
			// users a collection of its own snapshot and state (1 GB)
			// still under way took a core from them.
			runtime.GC()
			t, rss := ldapsearchDump(b, s.URI, s.RootDN, s.RootPassword, cfg.LDAP)
			refT = append(refT, t)
			refRSS = append(refRSS, rss)

			rawT = append(rawT, rawReceive(false))
			goldapT = append(goldapT, rawReceive(true))

			start := time.Now()
			snap, err := src.Snapshot(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			srcT = append(srcT, time.Since(start).Seconds())
			if len(snap.Users) != users || len(snap.Collaborations) != collabs {
				b.Fatalf("read %d users, %d collaborations", len(snap.Users), len(snap.Collaborations))
			}
			start = time.Now()
			state := directory.Evaluate(snap, pol, nil)
			rulesT = append(rulesT, time.Since(start).Seconds())
			if len(state.Users) != users {
				b.Fatalf("evaluated %d users", len(state.Users))
			}
			runtime.GC() // the snapshot and state are no longer used

			t3, r3 := testharness.Measure(b, nil, binary, "-config", cfgPath, "-log-level", "warn", "plan")
			planT = append(planT, t3.Seconds())
			planRSS = append(planRSS, r3)
		}
	}
	ref := testharness.Median(refT)
	b.ReportMetric(ref, "ldapsearch_s")
	b.ReportMetric(testharness.Median(rawT), "raw_receive_s")
	b.ReportMetric(testharness.Median(rawT)/ref, "raw_receive/ldapsearch")
	b.ReportMetric(testharness.Median(goldapT)/ref, "goldap_receive/ldapsearch")
	b.ReportMetric(testharness.Median(srcT), "source_s")
	b.ReportMetric(testharness.Median(srcT)/ref, "source/ldapsearch")
	b.ReportMetric(testharness.Median(rulesT), "rules_s")
	b.ReportMetric(testharness.Median(rulesT)/testharness.Median(srcT), "rules/source")
	b.ReportMetric(testharness.Median(planT), "plan_s")
	b.ReportMetric(testharness.Median(planT)/ref, "plan/ldapsearch")
	b.ReportMetric(testharness.Median(refRSS), "ldapsearch_maxrss_MiB")
	b.ReportMetric(testharness.Median(planRSS), "plan_maxrss_MiB")
}

// ldapsearchDump is the reference of the full-read benchmarks: ldapsearch
// dumping the users, then the collaborations, with the mapped attributes,
// 1000 a page. It returns the seconds and the larger peak RSS (MiB).
func ldapsearchDump(b *testing.B, uri, bindDN, password string, cfg ldapx.Config) (float64, float64) {
	b.Helper()
	// ldapsearch -y takes the password byte for byte: no trailing newline.
	pw := filepath.Join(b.TempDir(), "pw")
	os.WriteFile(pw, []byte(password), 0o600)
	mapper := ldapx.NewMapper(cfg)
	var total time.Duration
	var peak float64
	for _, q := range []struct {
		s     ldapx.Search
		attrs []string
	}{{cfg.Users.Search, mapper.UserAttributes()}, {cfg.Collaborations.Search, mapper.CollaborationAttributes()}} {
		args := append([]string{"-LLL", "-x", "-H", uri, "-D", bindDN, "-y", pw, "-E", "pr=1000/noprompt", "-b", q.s.BaseDN, q.s.Filter}, q.attrs...)
		t, rss := testharness.Measure(b, nil, "ldapsearch", args...)
		total += t
		peak = max(peak, rss)
	}
	return total.Seconds(), peak
}

// collabsyncB runs the binary for a benchmark and returns an error on failure.
func collabsyncB(b *testing.B, cfgPath string, args ...string) error {
	cmd := exec.Command(binary, append([]string{"-config", cfgPath, "-log-level", "warn"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("collabsync %v: %w\n%s", args, err, out)
	}
	return nil
}

// BenchmarkServeChangeLatency: with `collabsync serve` running on its
// default debounce (200 ms), 50 membership changes made with ldapmodify,
// each timed from just before ldapmodify starts until the real getent
// (private mount namespace) shows it. getent is polled every few ms; one
// poll (unshare + mount + getent) costs ≈10 ms, the resolution of the figure.
func BenchmarkServeChangeLatency(b *testing.B) {
	e := newDemoEnv(b, fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b)))
	d := startServe(b, e.config)
	d.waitReady(b)
	const changes = 50
	var lat []float64
	for i := 0; i < b.N; i++ {
		for n := 0; n < changes; n++ {
			op, want := "add", true
			if n%2 == 1 {
				op, want = "delete", false
			}
			start := time.Now()
			e.modify(b, fmt.Sprintf("dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\n%s: memberUid\nmemberUid: trent\n", op))
			for e.inGroup(b, "lsst", "trent") != want {
				if time.Since(start) > 10*time.Second {
					b.Fatalf("change %d not seen after 10 s", n)
				}
			}
			lat = append(lat, time.Since(start).Seconds()*1000)
		}
	}
	b.ReportMetric(testharness.Median(lat), "p50_ms") // sorts lat
	b.ReportMetric(lat[len(lat)*99/100], "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	d.stop(b)
}
