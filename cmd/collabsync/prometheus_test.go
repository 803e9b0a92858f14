package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestServeScrapedByPrometheus: a real Prometheus server scrapes the
// daemon, and its query API returns the reconcile counter.
func TestServeScrapedByPrometheus(t *testing.T) {
	testharness.Require(t, "prometheus", "promtool")
	listen := freeListen(t)
	e := newDemoEnv(t, serveConfig(listen, ""))
	d := startServe(t, e.config)
	d.waitReady(t)

	// promtool's linter on what the daemon exposes.
	_, body := d.get("/metrics")
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = strings.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	dir := t.TempDir()
	promListen := freeListen(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: collabsync\n    static_configs:\n      - targets: [%q]\n", listen)), 0o644)
	prom := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promListen, "--log.level=warn")
	logf, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	prom.Stdout, prom.Stderr = logf, logf
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", out)
		}
	}()
	query := "http://" + promListen + "/api/v1/query?query=" + url.QueryEscape(`collabsync_reconcile_runs_total{target="nss",result="success"}`)
	var got struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	eventually(t, 30*time.Second, "Prometheus to have scraped collabsync_reconcile_runs_total", func() bool {
		code, body := httpGet(query)
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		return got.Status == "success" && len(got.Data.Result) == 1
	})
	if m := got.Data.Result[0].Metric; m["job"] != "collabsync" || m["target"] != "nss" {
		t.Errorf("series labels = %v", m)
	}
	d.stop(t)
}
