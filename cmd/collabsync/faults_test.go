package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// mountNS is a private mount namespace kept alive by a sleeping process:
// mounts made in it (a small tmpfs over the nss directory) outlive the
// daemons run in it, and the test sees its files through /proc/<pid>/root.
type mountNS struct{ pid int }

func newMountNS(t testing.TB) *mountNS {
	t.Helper()
	testharness.Require(t, "unshare", "nsenter", "mount")
	testharness.RequireRoot(t)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ns := &mountNS{pid: cmd.Process.Pid}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	eventually(t, 5*time.Second, "the namespace", func() bool {
		theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", ns.pid))
		return theirs != "" && theirs != self
	})
	return ns
}

// wrap runs a command inside the namespace.
func (ns *mountNS) wrap() []string {
	return []string{"nsenter", "-t", strconv.Itoa(ns.pid), "-m", "--"}
}

func (ns *mountNS) run(t testing.TB, args ...string) {
	t.Helper()
	argv := append(ns.wrap(), args...)
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

// path is p as seen inside the namespace.
func (ns *mountNS) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", ns.pid, p) }

func (ns *mountNS) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(ns.path(p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (ns *mountNS) files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(ns.path(dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func groupHas(groupFile, group, uid string) bool {
	for _, line := range strings.Split(groupFile, "\n") {
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

func metricAtLeast(d *daemonProc, name string, min float64) bool {
	v, err := strconv.ParseFloat(d.metric(name), 64)
	return err == nil && v >= min
}

// TestServeTargetFailsThenRecovers: the nss directory read-only (a tmpfs
// remounted ro), the daemon restarted meanwhile, then writable again; then
// full (ENOSPC), then with room again. The files stay whole while it
// fails, the retry queue is in the metrics (depth, age across the restart),
// and once it clears every change is applied, once.
func TestServeTargetFailsThenRecovers(t *testing.T) {
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	ns := newMountNS(t)
	dir := e.outDir
	ns.run(t, "mount", "-t", "tmpfs", "-o", "size=64k,mode=755", "tmpfs", dir)
	group := filepath.Join(dir, "group")
	d := startServeIn(t, e.config, ns.wrap())
	d.waitReady(t)
	before := ns.read(t, filepath.Join(dir, "passwd")) + ns.read(t, group)

	ns.run(t, "mount", "-o", "remount,ro", dir)
	failedAt := time.Now()
	e.modify(t, "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "the failure queued", func() bool {
		ts := d.status(t).Targets["nss"]
		return ts != nil && ts.Result == "failure" && d.metric("collabsync_retry_queue_targets") == "1"
	})
	if msg := d.status(t).Targets["nss"].Error; !strings.Contains(msg, "read-only file system") || !strings.Contains(msg, dir) {
		t.Errorf("error %q does not say the directory is read-only", msg)
	}
	if now := ns.read(t, filepath.Join(dir, "passwd")) + ns.read(t, group); now != before {
		t.Error("the files changed while the directory was read-only")
	}

	// Restarted while failing: the queue, and its age, survive.
	d.stop(t)
	d = startServeIn(t, e.config, ns.wrap())
	eventually(t, 10*time.Second, "the failure queued again after the restart", func() bool {
		return metricAtLeast(d, `collabsync_retry_queue_attempts{target="nss"}`, 2)
	})
	if !metricAtLeast(d, `collabsync_retry_queue_oldest_seconds{target="nss"}`, time.Since(failedAt).Seconds()-1) {
		t.Errorf("oldest age %s, failing for %v", d.metric(`collabsync_retry_queue_oldest_seconds{target="nss"}`), time.Since(failedAt))
	}
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n")

	ns.run(t, "mount", "-o", "remount,rw", dir)
	eventually(t, 10*time.Second, "both changes applied", func() bool {
		g := ns.read(t, group)
		return groupHas(g, "lsst", "trent") && groupHas(g, "atlas", "trent")
	})
	eventually(t, 5*time.Second, "the queue empty", func() bool { return d.metric("collabsync_retry_queue_targets") == "0" })
	// Applied once: one user added, two groups modified, in this daemon's life.
	for op, want := range map[string]string{"add": "1", "modify": "2", "delete": "0"} {
		if got := d.metric(`collabsync_changes_applied_total{op="` + op + `",target="nss"}`); got != want {
			t.Errorf("changes applied, %s: %s, want %s", op, got, want)
		}
	}

	// Full: the write fails, the files stay whole, no temporary file stays.
	before = ns.read(t, filepath.Join(dir, "passwd")) + ns.read(t, group)
	filler, err := os.OpenFile(ns.path(filepath.Join(dir, "filler")), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 4096))
	}
	filler.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: trent\n")
	eventually(t, 10*time.Second, "the write failing", func() bool {
		ts := d.status(t).Targets["nss"]
		return ts != nil && strings.Contains(ts.Error, "no space left on device")
	})
	if now := ns.read(t, filepath.Join(dir, "passwd")) + ns.read(t, group); now != before {
		t.Error("the files changed while the directory was full")
	}
	if got := strings.Join(ns.files(t, dir), " "); got != "filler group passwd" {
		t.Errorf("the directory holds %s", got)
	}
	os.Remove(ns.path(filepath.Join(dir, "filler")))
	eventually(t, 10*time.Second, "applied once there is room", func() bool { return !groupHas(ns.read(t, group), "atlas", "trent") })
	d.stop(t)
}
