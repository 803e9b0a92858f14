package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

// proc is a collabsync command running in the background.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func startCollabsync(t *testing.T, configPath string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, append([]string{"-config", configPath, "-log-format", "text"}, args...)...)}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		t.Fatalf("%v did not end", p.cmd.Args)
	}
	return p.cmd.ProcessState.ExitCode()
}

// newLargeSyncEnv is a generated standard-schema directory (memberUid) in
// slapd: big enough that a sync spends a while reading it (to pause it at
// chosen moments, to benchmark it). The nss files are written, not read
// through getent.
func newLargeSyncEnv(t testing.TB, users, collabs int) *syncEnv {
	t.Helper()
	return newGeneratedSyncEnv(t, gendir.Params{Users: users, Collaborations: collabs})
}

// newGeneratedSyncEnv is newLargeSyncEnv for any generated directory;
// schemas are loaded beside the standard ones.
func newGeneratedSyncEnv(t testing.TB, p gendir.Params, schemas ...string) *syncEnv {
	t.Helper()
	dir := t.TempDir()
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := gendir.Write(f, p); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The mdb map: ≈2.5 KiB per user with the indexes, 1 GiB at least.
	s := slapd.StartT(t, slapd.Options{LDIF: []string{ldif}, MaxSizeBytes: max(1<<30, int64(p.Users)*8<<10), Schemas: schemas})
	out := filepath.Join(dir, "extrausers")
	os.Mkdir(out, 0o755)
	cfg := writeFile(t, filepath.Join(dir, "collabsync.yaml"),
		fmt.Sprintf(standardConfig, s.URI, s.RootDN, s.RootPWFile, filepath.Join(dir, "state"), out))
	return &syncEnv{server: s, config: cfg, outDir: out}
}

func shellOf(t *testing.T, passwd, uid string) string {
	t.Helper()
	data, err := os.ReadFile(passwd)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) == 7 && f[0] == uid {
			return f[6]
		}
	}
	return ""
}

// TestPausedSyncNeverOverwritesNewer: a sync stopped (SIGSTOP) at three
// moments of its run while the directory changes and a second sync runs.
// The second waits for the first (the lock covers read and write), a third
// with a short -lock-wait gives up naming the holder, and the files end
// with the newest directory state every time.
func TestPausedSyncNeverOverwritesNewer(t *testing.T) {
	e := newLargeSyncEnv(t, 20000, 2000)
	passwd := filepath.Join(e.outDir, "passwd")
	e.sync(t)
	start := time.Now()
	e.sync(t) // a warm run, as the paused ones are
	clean := time.Since(start)
	uid := gendir.UID(1)
	held := 0
	for round, frac := range []float64{0.15, 0.4, 0.65} {
		shell := fmt.Sprintf("/bin/shell%d", round)
		a := startCollabsync(t, e.config, "sync", "--once")
		// Paused a fraction of a run after it took the lock, not after
		// it started: in a loaded fresh-clone CI the pause fell outside
		// the locked part in 2 of 3 rounds, none of which had ended.
		lockFile := filepath.Join(filepath.Dir(e.outDir), "state", "collabsync.lock")
		for deadline := time.Now().Add(10 * time.Second); !holdsFlock(a.cmd.Process.Pid, lockFile) && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(frac * float64(clean)))
		a.cmd.Process.Signal(syscall.SIGSTOP)
		// Stopped (T), or ended before the signal came (Z: a loaded
		// machine makes the warm run's time a poor guide).
		var procState string
		eventually(t, time.Second, fmt.Sprintf("round %d: the sync stopped mid-run (a run takes %v)", round, clean), func() bool {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
			if _, rest, ok := strings.Cut(string(stat), ") "); ok && rest != "" {
				procState = rest[:1]
			}
			return procState == "T" || procState == "Z"
		})
		if procState == "Z" {
			t.Logf("round %d: the sync ended before it was paused at %.0f%% of %v", round, 100*frac, clean)
			a.wait(t)
			continue
		}
		e.modify(t, fmt.Sprintf("dn: uid=%s,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: loginShell\nloginShell: %s\n", uid, shell))

		// Runs vary; whether the paused sync holds the lock (it has not
		// released it yet) is read from the kernel, not guessed.
		holds := holdsFlock(a.cmd.Process.Pid, lockFile)
		if holds {
			held++
			r := collabsync(t, e.config, "-lock-wait", "300ms", "sync", "--once")
			want := fmt.Sprintf("is in use by collabsync sync (pid %d)", a.cmd.Process.Pid)
			if r.code != exitFailure || !strings.Contains(r.stderr, want) {
				t.Errorf("round %d: a sync while another holds the state: code %d, stderr:\n%s", round, r.code, r.stderr)
			}
		}
		b := startCollabsync(t, e.config, "sync", "--once")
		time.Sleep(300 * time.Millisecond)
		a.cmd.Process.Signal(syscall.SIGCONT)
		if code := a.wait(t); code != 0 {
			t.Fatalf("round %d: paused sync: code %d\n%s", round, code, a.stderr.String())
		}
		if code := b.wait(t); code != 0 {
			t.Fatalf("round %d: second sync: code %d\n%s", round, code, b.stderr.String())
		}
		if holds && !strings.Contains(b.stderr.String(), "waiting up to") {
			t.Errorf("round %d: the second sync did not say it waited:\n%s", round, b.stderr.String())
		}
		if got := shellOf(t, passwd, uid); got != shell {
			t.Errorf("round %d (paused at %.0f%% of a run): %s's shell is %q, want the newest %q", round, 100*frac, uid, got, shell)
		}
	}
	if held < 2 {
		t.Errorf("the paused sync held the lock in %d of 3 rounds (a run takes %v): the test did not test", held, clean)
	}
}

// holdsFlock reports whether the process holds an flock(2) lock on the
// file, as /proc/locks lists them ("1: FLOCK  ADVISORY  WRITE 4242
// 00:2e:1234 0 EOF": pid, then device and inode).
func holdsFlock(pid int, path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	ino := strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	data, _ := os.ReadFile("/proc/locks")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[1] == "FLOCK" && f[4] == strconv.Itoa(pid) && strings.HasSuffix(f[5], ":"+ino) {
			return true
		}
	}
	return false
}

// TestConcurrentFirstRuns: a plan and a sync started together on a new
// state directory, eight times: the schema is created once, both succeed.
func TestConcurrentFirstRuns(t *testing.T) {
	e := newSyncEnv(t, "../../ldapx/testdata/small.ldif")
	base, _ := os.ReadFile(e.config)
	for round := 0; round < 8; round++ {
		state := filepath.Join(t.TempDir(), "state")
		cfg := writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), replaceStateDir(string(base), state))
		procs := []*proc{startCollabsync(t, cfg, "plan"), startCollabsync(t, cfg, "sync", "--once"), startCollabsync(t, cfg, "plan")}
		for _, p := range procs {
			if code := p.wait(t); code != 0 {
				t.Errorf("round %d: %v: code %d\n%s", round, p.cmd.Args[5:], code, p.stderr.String())
			}
		}
		if fi, err := os.Stat(filepath.Join(state, "collabsync.db")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("round %d: state database: %v %v", round, fi.Mode(), err)
		}
	}
}

// TestServeWaitsForAPausedSync: serve and a sync on one state directory: a
// sync stopped mid-run holds the lock, serve's reconcile of a change waits
// for it (and says so) instead of writing beside it, then applies.
func TestServeWaitsForAPausedSync(t *testing.T) {
	e := newLargeSyncEnv(t, 20000, 2000)
	data, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, append(data, serveConfig(freeListen(t), "")...), 0o600)
	passwd := filepath.Join(e.outDir, "passwd")
	e.sync(t)
	start := time.Now()
	e.sync(t)
	clean := time.Since(start)
	d := startServe(t, e.config)
	d.waitReady(t)

	a := startCollabsync(t, e.config, "sync", "--once")
	time.Sleep(clean / 4)
	a.cmd.Process.Signal(syscall.SIGSTOP)
	lockFile := filepath.Join(filepath.Dir(e.outDir), "state", "collabsync.lock")
	eventually(t, time.Second, fmt.Sprintf("the paused sync holding the lock (a run takes %v)", clean), func() bool {
		return holdsFlock(a.cmd.Process.Pid, lockFile)
	})
	uid := gendir.UID(2)
	e.modify(t, fmt.Sprintf("dn: uid=%s,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: loginShell\nloginShell: /bin/serve\n", uid))
	eventually(t, 10*time.Second, "serve waiting for the state directory", func() bool {
		return strings.Contains(d.logText(), "waiting for the state directory")
	})
	time.Sleep(500 * time.Millisecond)
	if got := shellOf(t, passwd, uid); got == "/bin/serve" {
		t.Fatal("serve wrote while a sync held the state directory")
	}
	a.cmd.Process.Signal(syscall.SIGCONT)
	if code := a.wait(t); code != 0 {
		t.Fatalf("sync: %d\n%s", code, a.stderr.String())
	}
	eventually(t, 20*time.Second, "serve applying after the sync", func() bool { return shellOf(t, passwd, uid) == "/bin/serve" })
	d.stop(t)
}
