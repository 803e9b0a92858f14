package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/sync/engine"
)

// TestMetricsLint runs client_golang's linter over every metric after a
// run, so names, units and help texts follow Prometheus conventions.
func TestMetricsLint(t *testing.T) {
	m := newMetrics("test")
	state := &directory.State{
		Users:      []directory.UserState{{Status: directory.StatusActive}},
		Violations: []directory.Violation{{Kind: directory.KindMailDomain, Severity: directory.SeverityError}},
	}
	plan := &engine.Plan{Target: "nss", Changes: []engine.Change{{Op: engine.OpAdd}}}
	m.observeRead(engine.RunReport{Started: time.Now(), State: state})
	m.observeTarget(engine.TargetReport{Started: time.Now(), State: state, Result: engine.Result{Target: "nss", Plan: plan, Applied: true}})
	m.setMode("syncrepl")
	m.ingestJobs.WithLabelValues("s", "new").Add(3)
	m.ingestCoreSeconds.WithLabelValues("c", "atlas").Add(7200)
	m.ingestBadLines.WithLabelValues("s").Inc()
	m.ingestRuns.WithLabelValues("s", "success").Inc()
	m.ingestLast.WithLabelValues("s").Set(1)
	m.ingestLag.WithLabelValues("s").Set(60)
	m.fullReads.WithLabelValues("refresh").Inc()
	m.modelDiffs.WithLabelValues("users").Inc()
	m.modelEntries.WithLabelValues("users").Set(3)
	m.targetCall("lists", "201")
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	want := `
# HELP collabsync_directory_objects Directory objects by kind and effective state, as of the last read.
# TYPE collabsync_directory_objects gauge
collabsync_directory_objects{kind="user",state="active"} 1
# HELP collabsync_violations Current rule violations by kind and severity.
# TYPE collabsync_violations gauge
collabsync_violations{kind="mail_domain",severity="error"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "collabsync_directory_objects", "collabsync_violations"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(m.runs.WithLabelValues("nss", "success")); n != 1 {
		t.Errorf("runs = %v", n)
	}
	if n := testutil.ToFloat64(m.changes.WithLabelValues("nss", "add")); n != 1 {
		t.Errorf("changes = %v", n)
	}
}
