package daemon

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestDashboardQueriesExportedMetrics: every query of the shipped Grafana
// dashboard names metrics the daemon exports, and groups only by labels
// those metrics have.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../../configs/grafana/collabsync.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	labels := exported(t)
	metricRE := regexp.MustCompile(`\b(?:collabsync|process|go)_[a-z_]+\b`)
	byRE := regexp.MustCompile(`by \(([^)]*)\)`)
	queries := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			names := metricRE.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("%s: %q names no metric", p.Title, q.Expr)
			}
			have := []string{"le", "job", "instance"}
			for _, n := range names {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if _, ok := labels[n]; !ok {
						base = strings.TrimSuffix(base, suffix)
					}
				}
				ls, ok := labels[base]
				if !ok {
					t.Errorf("%s: %s is not a metric the daemon exports", p.Title, n)
				}
				have = append(have, ls...)
			}
			for _, m := range byRE.FindAllStringSubmatch(q.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); !slices.Contains(have, l) {
						t.Errorf("%s: %q groups by %s, a label none of its metrics has", p.Title, q.Expr, l)
					}
				}
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries", queries)
	}
}

// exported is what the daemon's registry describes: each metric and its
// labels.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	labels := map[string][]string{}
	descs := make(chan *prometheus.Desc)
	go func() { newMetrics("test").reg.Describe(descs); close(descs) }()
	descRE := regexp.MustCompile(`fqName: "([^"]+)".*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}`)
	for d := range descs {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		for _, part := range []string{m[2], m[3]} {
			for _, l := range strings.Split(part, ",") {
				if l, _, _ = strings.Cut(strings.TrimSpace(l), "="); l != "" {
					labels[m[1]] = append(labels[m[1]], l)
				}
			}
		}
		if _, ok := labels[m[1]]; !ok {
			labels[m[1]] = nil
		}
	}
	return labels
}

// TestAlertingRules: the shipped alerting rules load (promtool check
// rules), fire as their unit tests say (promtool test rules), and name
// only metrics the daemon exports.
func TestAlertingRules(t *testing.T) {
	testharness.Require(t, "promtool")
	dir := "../../configs/prometheus"
	for _, args := range [][]string{{"check", "rules", "collabsync.rules.yml"}, {"test", "rules", "collabsync.rules.test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	rules, err := os.ReadFile(filepath.Join(dir, "collabsync.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	labels := exported(t)
	names := regexp.MustCompile(`\bcollabsync_[a-z_]+\b`).FindAllString(string(rules), -1)
	if len(names) < 8 {
		t.Fatalf("only %d metrics named", len(names))
	}
	for _, n := range names {
		if _, ok := labels[n]; !ok {
			t.Errorf("the rules name %s, which the daemon does not export", n)
		}
	}
}
