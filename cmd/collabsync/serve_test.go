package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/app/daemon"
	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// daemonProc is `collabsync serve` running for a test.
type daemonProc struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan error
}

func freeListen(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serveConfig is the serve: section for tests: fast debounce and retries.
func serveConfig(listen, extra string) string {
	return fmt.Sprintf("serve:\n  listen: %q\n  debounce: 50ms\n  retry_min: 200ms\n  retry_max: 2s\n  poll_interval: 1s\n%s", listen, extra)
}

func startServe(t testing.TB, configPath string, env ...string) *daemonProc {
	t.Helper()
	return startServeIn(t, configPath, nil, env...)
}

// startServeIn starts serve under a wrapper command (nsenter ...).
func startServeIn(t testing.TB, configPath string, wrap []string, env ...string) *daemonProc {
	t.Helper()
	cfg, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	listen := ""
	for _, line := range strings.Split(string(cfg), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen: "); ok {
			listen = strings.Trim(v, `"`)
		}
	}
	d := &daemonProc{base: "http://" + listen, exited: make(chan error, 1)}
	argv := append(append([]string{}, wrap...), binary, "-config", configPath, "-log-format", "json", "serve")
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append(os.Environ(), env...)
	stderr, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		d.exited <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logText())
		}
	})
	return d
}

func (d *daemonProc) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// get fetches a path of the daemon's HTTP server.
func (d *daemonProc) get(path string) (int, string) { return httpGet(d.base + path) }

func httpGet(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds or the limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	testharness.Eventually(t, limit, what, cond)
}

func (d *daemonProc) waitReady(t testing.TB) {
	t.Helper()
	eventually(t, 20*time.Second, "/readyz", func() bool { code, _ := d.get("/readyz"); return code == 200 })
}

func (d *daemonProc) status(t *testing.T) daemon.StatusReport {
	t.Helper()
	_, body := d.get("/status")
	var s daemon.StatusReport
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("status %q: %v", body, err)
	}
	return s
}

// stop sends SIGTERM and checks a clean exit within 10 s.
func (d *daemonProc) stop(t testing.TB) {
	t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %v to stop", took)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("did not stop within 12 s of SIGTERM")
	}
}

// metric returns the value of one sample line of /metrics ("" if absent).
func (d *daemonProc) metric(name string) string {
	_, body := d.get("/metrics")
	return testharness.Sample(body, name)
}

func (e *syncEnv) inGroup(t testing.TB, group, uid string) bool {
	out := e.getent(t, "getent group "+group+" || true")
	_, members, _ := strings.Cut(strings.TrimSpace(out), ":x:")
	_, list, _ := strings.Cut(members, ":")
	for _, m := range strings.Split(list, ",") {
		if m == uid {
			return true
		}
	}
	return false
}

// notifySocket listens as systemd does for sd_notify messages.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return sock, msgs
}

func TestServeNotify(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	sock, msgs := notifySocket(t)
	d := startServe(t, e.config, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=300000")
	seen := map[string]bool{}
	deadline := time.After(15 * time.Second)
	for !(seen["READY=1"] && seen["WATCHDOG=1"] && seen["STATUS"]) {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, "STATUS=") {
				seen["STATUS"] = true
				if !strings.Contains(m, "nss success") && !strings.Contains(m, "directory") {
					t.Errorf("status line %q says nothing useful", m)
				}
			}
			seen[m] = true
		case <-deadline:
			t.Fatalf("sd_notify messages so far: %v", seen)
		}
	}
	d.stop(t)
	stopping := false
	for len(msgs) > 0 {
		if <-msgs == "STOPPING=1" {
			stopping = true
		}
	}
	if !stopping {
		t.Error("no STOPPING=1")
	}
}

func TestServeRestartResumesFromCookie(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	d := startServe(t, e.config)
	d.waitReady(t)
	eventually(t, 5*time.Second, "streams live", func() bool { return len(d.status(t).ChangeStream.Live) == 4 })
	if fresh := d.metric(`collabsync_syncrepl_events_total{stream="users",type="add"}`); fresh != "14" {
		t.Errorf("first refresh delivered %q user entries, want all 14", fresh)
	}
	d.stop(t)

	// A change while the daemon is down is caught up on restart, and the
	// stream resumes from its cookie instead of a full refresh.
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	d = startServe(t, e.config)
	d.waitReady(t)
	eventually(t, 10*time.Second, "trent in lsst", func() bool { return e.inGroup(t, "lsst", "trent") })
	eventually(t, 5*time.Second, "streams live", func() bool { return len(d.status(t).ChangeStream.Live) == 4 })
	for stream, resumed := range d.status(t).ChangeStream.Resumed {
		if !resumed {
			t.Errorf("stream %s did not resume from its cookie", stream)
		}
	}
	if n := d.metric(`collabsync_syncrepl_events_total{stream="users",type="add"}`); n != "" {
		t.Errorf("resumed users stream re-sent %s entries", n)
	}
	// The model was restored from the state store: nothing read whole.
	if body := d.metrics(t); strings.Contains(body, "collabsync_directory_full_reads_total{") {
		t.Errorf("the restart read the directory whole:\n%s", grepLines(body, "collabsync_directory_full_reads_total"))
	}
	d.stop(t)
}

// TestServeSlapdDiesAndReturns: while slapd is down nothing downstream
// changes; past serve.directory_grace /readyz says the directory is
// unreachable and /status why (before: ready, and no error shown); once
// slapd is back, serve reconnects within seconds however long the outage
// (before: the backoff grown during it, ≈24 s after a minute's outage),
// and is ready again.
func TestServeSlapdDiesAndReturns(t *testing.T) {
	// A full reconcile every second, so runs happen while slapd is down.
	e := newDemoEnv(t, serveConfig(freeListen(t), "  full_reconcile: \"@every 1s\"\n  directory_grace: 2s\n"))
	d := startServe(t, e.config)
	d.waitReady(t)
	before := statFiles(t, e.outDir)
	e.server.Kill()
	eventually(t, 10*time.Second, "failed directory reads", func() bool {
		v := d.metric(`collabsync_directory_reads_total{result="failure"}`)
		return v != "" && v != "0" && v != "1"
	})
	if after := statFiles(t, e.outDir); after != before {
		t.Fatal("downstream changed while the directory was down")
	}
	if st := d.status(t); st.ChangeStream.Connected || st.Directory.LastError == "" {
		t.Errorf("status while down = %+v", st)
	}
	eventually(t, 10*time.Second, "not ready past the grace", func() bool {
		code, body := d.get("/readyz")
		return code == 503 && strings.Contains(body, "the directory has been unreachable since") && strings.Contains(body, "connection refused")
	})
	if st := d.status(t); st.ChangeStream.DownSince.IsZero() || !strings.Contains(st.ChangeStream.LastError, "connection refused") {
		t.Errorf("status while down = %+v", st.ChangeStream)
	}
	// Down long enough for the backoff to grow past 16 s.
	time.Sleep(25 * time.Second)
	if err := e.server.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	eventually(t, 5*time.Second, "reconnected", func() bool { return d.status(t).ChangeStream.Connected })
	t.Logf("reconnected %v after slapd came back", time.Since(back).Round(time.Millisecond))
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 20*time.Second, "trent in lsst after slapd came back", func() bool { return e.inGroup(t, "lsst", "trent") })
	d.waitReady(t)
	d.stop(t)
}

func TestServeReload(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	good, _ := os.ReadFile(e.config)
	d := startServe(t, e.config)
	d.waitReady(t)
	os.WriteFile(e.config, []byte("ldap: [this is not\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "refused reload", func() bool {
		return d.metric(`collabsync_config_reloads_total{result="failure"}`) == "1"
	})
	if !strings.Contains(d.logText(), "configuration reload refused") {
		t.Error("refusal not logged")
	}
	// The old configuration keeps running.
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent in lsst", func() bool { return e.inGroup(t, "lsst", "trent") })

	// A valid new configuration is taken (and the service restarted with
	// it), its memory limit too.
	limit := func() string { return d.metric("go_gc_gomemlimit_bytes") }
	if l := limit(); l != "6.7108864e+07" {
		t.Errorf("auto memory limit of the demo = %s, want the 64 MiB floor", l)
	}
	os.WriteFile(e.config, append(good, []byte("  memory_limit: 256MiB\n")...), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "accepted reload", func() bool {
		return d.metric(`collabsync_config_reloads_total{result="success"}`) == "1"
	})
	eventually(t, 5*time.Second, "memory limit 256MiB", func() bool { return limit() == "2.68435456e+08" })
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent out of lsst", func() bool { return !e.inGroup(t, "lsst", "trent") })
	// Back to auto: measured again.
	os.WriteFile(e.config, good, 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "auto memory limit after the reload", func() bool { return limit() == "6.7108864e+07" })
	d.stop(t)
}

func TestServePollsWithoutSyncprov(t *testing.T) {
	testharness.Require(t, "unshare", "getent")
	testharness.RequireRoot(t)
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}, NoSyncprov: true})
	e := demoEnvOn(t, s, serveConfig(freeListen(t), ""))
	d := startServe(t, e.config)
	d.waitReady(t)
	eventually(t, 10*time.Second, "poll mode", func() bool { return d.metric(`collabsync_change_stream_mode{mode="poll"}`) == "1" })
	if log := d.logText(); !strings.Contains(log, "falling back to polling") || !strings.Contains(log, "Content Synchronization") {
		t.Error("fallback (and what each server needs) not said in the log")
	}
	// Polling, the metrics and status still tell whether the directory answers.
	eventually(t, 5*time.Second, "connected while polling", func() bool { return d.metric("collabsync_ldap_connected") == "1" })
	if st := d.status(t).ChangeStream; !st.Connected || !strings.Contains(st.Why, "no syncrepl") {
		t.Errorf("/status change stream while polling: %+v", st)
	}
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent in lsst by polling", func() bool { return e.inGroup(t, "lsst", "trent") })

	// The operator loads syncprov: the daemon follows the stream again.
	if err := s.Add(context.Background(), "dn: olcOverlay=syncprov,olcDatabase={1}mdb,cn=config\nobjectClass: olcOverlayConfig\n"+
		"objectClass: olcSyncProvConfig\nolcOverlay: syncprov\n"); err != nil {
		t.Fatal(err)
	}
	d.live(t, 15*time.Second)
	if v := d.metric(`collabsync_change_stream_mode{mode="poll"}`); v != "0" {
		t.Errorf("poll mode metric = %q after syncrepl came back", v)
	}
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "trent out of lsst by syncrepl", func() bool { return !e.inGroup(t, "lsst", "trent") })
	d.stop(t)
}

// TestServeOnePerStateDirectory: a second serve on the same state
// directory refuses to start, naming the first (two would write one saved
// model and apply every change twice).
func TestServeOnePerStateDirectory(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	d := startServe(t, e.config)
	d.waitReady(t)
	r := collabsync(t, e.config, "serve")
	if r.code != 1 || !strings.Contains(r.stderr, "another collabsync serve runs on the state directory") ||
		!strings.Contains(r.stderr, fmt.Sprintf("pid %d", d.cmd.Process.Pid)) {
		t.Errorf("second serve: exit %d\n%s", r.code, r.stderr)
	}
	d.stop(t)
}
