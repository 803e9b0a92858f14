package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// BenchmarkServeLive100kSlowMailman: BenchmarkServeLive100k's single
// changes with a second target, a mailman target whose server answers
// every request after 2 s (a fault-injecting stand-in for a Mailman core
// under load: it has no lists and accepts every write). With each target
// on its own worker the nss change latency must not move while the
// mailman target spends its time waiting. Reported: the nss p50 and p99
// and the requests the slow server answered during the series and those
// under way during it (asked before its end, not answered before its
// start).
func BenchmarkServeLive100kSlowMailman(b *testing.B) {
	const users, collabs = 100_000, 10_000
	testharness.Require(b, "unshare", "getent")
	testharness.RequireRoot(b)
	var asked, answered atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
			return
		}
		answered.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet:
			fmt.Fprint(w, `{"start": 0, "total_size": 0, "entries": []}`)
		case http.MethodPost:
			w.Header().Set("Location", "http://"+r.Host+r.URL.Path+"/x")
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	b.Cleanup(slow.Close)

	e := newLargeSyncEnv(b, users, collabs)
	pw := writeFile(b, filepath.Join(b.TempDir(), "mailman-pw"), "secret\n")
	data, err := os.ReadFile(e.config)
	if err != nil {
		b.Fatal(err)
	}
	doc := strings.Replace(string(data), "targets:\n  nss:\n    dir: "+e.outDir+"\n", fmt.Sprintf(`targets:
  - {name: nss, kind: nss, dir: %s}
  - {name: lists, kind: mailman, url: %s, password_file: %s, domain: lists.example.org, timeout: 30s}
`, e.outDir, slow.URL, pw), 1)
	if doc == string(data) {
		b.Fatal("could not add the mailman target")
	}
	writeFile(b, e.config, doc+fmt.Sprintf("serve:\n  listen: %q\n", freeListen(b)))
	if e.view, err = testharness.NewNSSView(e.outDir, filepath.Dir(e.outDir)); err != nil {
		testharness.Missing(b, "%v", err)
	}
	d := startServe(b, e.config)
	// Ready needs every target's first run, and the mailman target's
	// never ends. The series starts once nss's first run is written and
	// recorded (/readyz waits for as much before BenchmarkServeLive100k's)
	// and the mailman target has asked its server: begun as soon as the
	// group file was complete, the first change met the rest of the
	// start and was the slowest of the 50 every time (67-110 ms; the
	// others within the plain benchmark's).
	group := filepath.Join(e.outDir, "group")
	eventually(b, 120*time.Second, "the nss target's first run", func() bool {
		data, err := os.ReadFile(group)
		if err != nil || strings.Count(string(data), "\n") < collabs {
			return false
		}
		_, metrics := d.get("/metrics")
		return strings.Contains(metrics, `collabsync_last_success_timestamp_seconds{target="nss"}`)
	})
	eventually(b, 120*time.Second, "the mailman target waiting on its server", func() bool { return asked.Load() > 0 })
	before := answered.Load()
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
	}
	// The mailman target was busy during the series if a request of
	// its was waiting for the slow server at some moment of it: one
	// asked before the series ended and not answered before it began.
	// (A series shorter than the server's 2 s may see no answer.)
	inFlight, during := asked.Load()-before, answered.Load()-before
	d.stop(b)
	if inFlight == 0 {
		b.Fatal("no request to the slow server was under way during the series: the mailman target was not busy")
	}
	b.ReportMetric(testharness.Median(lat), "p50_ms") // sorts lat
	b.ReportMetric(lat[len(lat)*99/100], "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	b.ReportMetric(float64(during), "slow_requests_during")
	b.ReportMetric(float64(inFlight), "slow_requests_under_way")
}
