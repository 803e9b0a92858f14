package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/mailman"
)

// BenchmarkMailman1000: 1,000 collaborations of 20 members (10,000
// users) in slapd, a mailman target against a real Mailman core through
// a proxy counting the REST calls. Reported: the first sync (every list
// created and filled) and a sync without changes, each with its REST
// calls; the calls of the first sync against the fewest that can do its
// work (a create and a subscription per member, one read of the empty
// domain); and, under serve, the time from one membership change in
// slapd to the roster (median of 10).
func BenchmarkMailman1000(b *testing.B) {
	const users, collabs = 10_000, 1_000
	e := newLargeSyncEnv(b, users, collabs)
	mm := mailman.StartT(b)
	backend, _ := url.Parse(mm.URL)
	proxy := httputil.NewSingleHostReverseProxy(backend)
	var calls, writes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodGet {
			writes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	data, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	doc := strings.Replace(string(data), "targets:\n  nss:\n    dir: "+e.outDir+"\n", fmt.Sprintf(`targets:
  - {name: nss, kind: nss, dir: %s}
  - {name: lists, kind: mailman, url: %s, password_file: %s, domain: lists.example.org}
`, e.outDir, srv.URL, mm.PasswordFile), 1)
	if doc == string(data) {
		b.Fatal("could not add the mailman target")
	}
	doc += fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b))
	writeFile(b, e.config, doc)
	sync := func() (time.Duration, int64, int64) {
		calls.Store(0)
		writes.Store(0)
		start := time.Now()
		if err := collabsyncB(b, e.config, "sync", "--once"); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), calls.Load(), writes.Load()
	}
	first, firstCalls, _ := sync()
	members, err := mm.Members(context.Background(), gendir.Collab(7)+".lists.example.org")
	if err != nil || len(members) != 20 {
		b.Fatalf("%s has %d members (%v)", gendir.Collab(7), len(members), err)
	}
	again, againCalls, againWrites := sync()
	if againWrites != 0 {
		b.Errorf("a sync without changes made %d REST writes", againWrites)
	}

	d, _ := startServeReady(b, e.config)
	var lat []float64
	for n := 0; n < 10; n++ {
		k := 100 + n
		start := time.Now()
		e.modify(b, memberChange(k, "add"))
		want := gendir.UID(k+1) + "@example.org"
		for {
			m, err := mm.Members(context.Background(), gendir.Collab(k)+".lists.example.org")
			if err != nil {
				b.Fatal(err)
			}
			if slices.Contains(m, want) {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("change %d not on the roster after 30 s", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		lat = append(lat, time.Since(start).Seconds()*1000)
	}
	d.stop(b)

	minimal := float64(collabs + collabs*20 + 1)
	b.ReportMetric(first.Seconds(), "first_sync_s")
	b.ReportMetric(float64(firstCalls), "first_calls")
	b.ReportMetric(float64(firstCalls)/minimal, "first_calls/minimal")
	b.ReportMetric(again.Seconds(), "nochange_sync_s")
	b.ReportMetric(float64(againCalls), "nochange_calls")
	b.ReportMetric(float64(againWrites), "nochange_writes")
	b.ReportMetric(testharness.Median(lat), "change_to_roster_p50_ms")
}
