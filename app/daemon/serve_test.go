package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting/ingest"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
	"github.com/collabsync/collabsync/sync/targets"
)

// demo is the demo directory in a real slapd (with syncprov) and a
// configuration for it: the demo's own, its serve section replaced by
// the tests' (fast debounce and retries), extra appended.
type demo struct {
	server *slapd.Server
	config string
	outDir string
	dir    string
}

func newDemo(t *testing.T, extra string) *demo {
	t.Helper()
	testharness.RequireRoot(t)
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}})
	dir := t.TempDir()
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	full, err := testharness.DemoConfig("../..", map[string]string{"LDAP_URI": s.URI, "BIND_DN": s.RootDN, "PASSWORD_FILE": s.RootPWFile,
		"STATE_DIR": filepath.Join(dir, "state"), "NSS_DIR": out})
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(full, "\nserve:\n") // the tests' serve section replaces the demo's
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	doc += fmt.Sprintf("\nserve:\n  listen: %q\n  debounce: 50ms\n  retry_min: 200ms\n  retry_max: 2s\n", listen) + extra
	cfg := filepath.Join(dir, "collabsync.yaml")
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return &demo{server: s, config: cfg, outDir: out, dir: dir}
}

// addTarget adds a target instance (a flow mapping) to the configuration.
func (d *demo) addTarget(t *testing.T, instance string) {
	t.Helper()
	data, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "\naccounting:\n", "\n  - "+instance+"\naccounting:\n", 1)
	if err := os.WriteFile(d.config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *demo) modify(t *testing.T, ldif string) {
	t.Helper()
	if err := d.server.Modify(context.Background(), ldif); err != nil {
		t.Fatal(err)
	}
}

// inGroup reads the nss target's group file.
func (d *demo) inGroup(t *testing.T, group, uid string) bool {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(d.outDir, "group"))
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) == 4 && f[0] == group {
			for _, m := range strings.Split(f[3], ",") {
				if m == uid {
					return true
				}
			}
		}
	}
	return false
}

// served is Run in this process, until stop.
type served struct {
	base  string
	store *store.Store
	stop  func(t *testing.T)
	mu    sync.Mutex
	log   bytes.Buffer
}

func (s *served) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

func (s *served) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// serve runs the daemon on the demo's configuration, as cmd's serve does.
func (d *demo) serve(t *testing.T) *served {
	t.Helper()
	load := func(path string) (*config.Config, error) {
		return config.Load(path, targets.Kinds(), ingest.Formats().Names())
	}
	cfg, err := load(d.config)
	if err != nil {
		t.Fatal(err)
	}
	st, err := wiring.OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &served{base: "http://" + cfg.Serve.Listen, store: st}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{ConfigPath: d.config, LoadConfig: load, Config: cfg, Store: st,
			Log: slog.New(slog.NewJSONHandler(s, nil)), Version: "test"})
	}()
	stopped := false
	s.stop = func(t *testing.T) {
		if stopped {
			return
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v to stop", took)
			}
		case <-time.After(12 * time.Second):
			t.Fatal("did not stop within 12 s")
		}
		st.Close()
	}
	t.Cleanup(func() {
		s.stop(t)
		// serve.memory_limit auto sets this process's limit.
		debug.SetMemoryLimit(math.MaxInt64)
		if t.Failed() {
			t.Logf("daemon log:\n%s", s.logText())
		}
	})
	return s
}

func (s *served) get(path string) (int, string) {
	resp, err := http.Get(s.base + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// status returns /status (empty while the daemon is not listening yet).
func (s *served) status(t *testing.T) StatusReport {
	t.Helper()
	var r StatusReport
	code, body := s.get("/status")
	if code == 0 {
		return r
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/status: %v: %s", err, body)
	}
	return r
}

// metric returns the value of one sample line of /metrics ("" if absent).
func (s *served) metric(name string) string {
	_, body := s.get("/metrics")
	return testharness.Sample(body, name)
}

func (s *served) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 20*time.Second, "/readyz", func() bool { code, _ := s.get("/readyz"); return code == 200 })
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	testharness.Eventually(t, limit, what, cond)
}

// TestChangeStream: a membership change in the directory reaches the nss
// files through syncrepl and back out on removal; /status, the metrics
// and the log say so, and the memory limit is set from the resting heap.
func TestChangeStream(t *testing.T) {
	d := newDemo(t, "")
	s := d.serve(t)
	s.waitReady(t)
	if d.inGroup(t, "lsst", "trent") {
		t.Fatal("trent in lsst before the change")
	}
	d.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent in lsst", func() bool { return d.inGroup(t, "lsst", "trent") })
	d.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent out of lsst", func() bool { return !d.inGroup(t, "lsst", "trent") })

	st := s.status(t)
	if st.ChangeStream.Mode != "syncrepl" || !st.ChangeStream.Connected || len(st.ChangeStream.Live) != 4 {
		t.Errorf("change stream status = %+v", st.ChangeStream)
	}
	if st.Targets["nss"] == nil || st.Targets["nss"].Result != "success" || !st.Ready {
		t.Errorf("status = %+v", st)
	}
	if v := s.metric(`collabsync_reconcile_runs_total{result="success",target="nss"}`); v == "" || v == "0" {
		t.Errorf("runs metric = %q", v)
	}
	if v := s.metric(`collabsync_change_stream_mode{mode="syncrepl"}`); v != "1" {
		t.Errorf("mode metric = %q", v)
	}
	if !strings.Contains(s.logText(), `"msg":"reconciled","target":"nss"`) {
		t.Error("no JSON reconcile log line per target")
	}
	// serve.memory_limit auto: measured when the model is complete and
	// once the first run is over (again after restQuiet if a change's run
	// overlapped that), not after every change; the runtime exports the
	// limit.
	measured := func() int { return strings.Count(s.logText(), `"msg":"memory limit set from the resting heap"`) }
	eventually(t, 5*time.Second, "two resting measurements", func() bool { return measured() >= 2 })
	time.Sleep(3 * restQuiet)
	settled := measured()
	d.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent in lsst again", func() bool { return d.inGroup(t, "lsst", "trent") })
	time.Sleep(3 * restQuiet)
	if n := measured(); n != settled || n > 3 {
		t.Errorf("%d resting measurements, %d before a change: want 2 (3 if a change overlapped the first run's), none for a change", n, settled)
	}
	if v := s.metric("go_gc_gomemlimit_bytes"); v == "" || v == "9.223372036854776e+18" {
		t.Errorf("go_gc_gomemlimit_bytes = %q, want a limit", v)
	}
}

// TestFailingTargetRetriedAlone: an exec target whose program fails is
// queued and retried with backoff while nss takes every change; /readyz,
// /status and the queue metrics name it; once the program works the
// queue clears and the daemon is ready.
func TestFailingTargetRetriedAlone(t *testing.T) {
	d := newDemo(t, "")
	bin := filepath.Join(d.dir, "bin")
	os.Mkdir(bin, 0o755)
	program := filepath.Join(bin, "hook")
	os.WriteFile(program, []byte("#!/bin/sh\ncat >/dev/null\necho 'hook: refused' >&2\nexit 3\n"), 0o755)
	d.addTarget(t, fmt.Sprintf("{name: hook, kind: exec, program: %s, timeout: 10s, state_file: %s}", program, filepath.Join(d.dir, "hook.json")))
	s := d.serve(t)
	eventually(t, 20*time.Second, "the hook queued for retry", func() bool {
		h := s.status(t).Targets["hook"]
		return h != nil && h.Result == "failure" && s.metric("collabsync_retry_queue_targets") == "1"
	})
	if code, body := s.get("/readyz"); code != 503 || !strings.Contains(body, "not reconciled since start: hook") {
		t.Errorf("/readyz with the hook failing: %d %s", code, body)
	}
	if h := s.status(t).Targets["hook"]; !strings.Contains(h.Error, "exit status 3: hook: refused") {
		t.Errorf("hook error = %q, want its exit status and stderr", h.Error)
	}
	// nss is not held up by the failing hook.
	d.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent in lsst", func() bool { return d.inGroup(t, "lsst", "trent") })

	os.WriteFile(program+".new", []byte("#!/bin/sh\ncat >/dev/null\n"), 0o755)
	os.Rename(program+".new", program)
	s.waitReady(t)
	if v := s.metric("collabsync_retry_queue_targets"); v != "0" {
		t.Errorf("retry queue after recovery = %q", v)
	}
	if h := s.status(t).Targets["hook"]; h.Result != "success" {
		t.Errorf("hook after recovery = %+v", h)
	}
}

// TestHeldPlanApproved: a deletion over the guard's limit is held, named
// by /readyz and the held gauge; an approval recorded in the store (as
// `collabsync approve` records it) is applied within seconds.
func TestHeldPlanApproved(t *testing.T) {
	d := newDemo(t, "")
	// Any deletion is held.
	data, _ := os.ReadFile(d.config)
	os.WriteFile(d.config, []byte(strings.Replace(string(data), "kind: nss", "kind: nss\n    guard: {max_delete_ratio: 0, min_deletes: 0}", 1)), 0o600)
	s := d.serve(t)
	s.waitReady(t)
	d.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: ivan\n")
	var digest string
	eventually(t, 10*time.Second, "the plan held", func() bool {
		h := s.status(t).Targets["nss"]
		if h == nil || h.Held == nil {
			return false
		}
		digest = h.Held.Digest
		return true
	})
	if code, body := s.get("/readyz"); code != 503 || !strings.Contains(body, "collabsync approve nss "+digest) {
		t.Errorf("/readyz while held: %d %s", code, body)
	}
	if s.metric(`collabsync_plan_held{target="nss"}`) != "1" || !d.inGroup(t, "atlas", "ivan") {
		t.Fatal("the deletion was not held")
	}
	start := time.Now()
	if err := s.store.Approve(context.Background(), "nss", digest, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the approved plan applied", func() bool { return !d.inGroup(t, "atlas", "ivan") })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the approved plan took %v", took)
	}
	s.waitReady(t)
}
