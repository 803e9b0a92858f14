package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// TestSIGKILLNeverTearsFiles: sync and serve killed with SIGKILL at random
// moments, 20 times each, while the directory flips between two states:
// the files always equal one of the two complete states, and the next run
// completes them and leaves no temporary file.
func TestSIGKILLNeverTearsFiles(t *testing.T) {
	// What SIGKILL leaves on disk does not need the race detector, whose
	// build is several times slower.
	raceBuild := binary
	binary = plainBinary(t)
	defer func() { binary = raceBuild }()
	e := newLargeSyncEnv(t, 10000, 1000)
	data, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, append(data, serveConfig(freeListen(t), "")...), 0o600)
	passwd, group := filepath.Join(e.outDir, "passwd"), filepath.Join(e.outDir, "group")
	uid := gendir.UID(1)
	setShell := func(shell string) {
		e.modify(t, fmt.Sprintf("dn: uid=%s,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: loginShell\nloginShell: %s\n", uid, shell))
	}
	read := func() (string, string) {
		p, err1 := os.ReadFile(passwd)
		g, err2 := os.ReadFile(group)
		if err1 != nil || err2 != nil {
			t.Fatalf("read the files: %v %v", err1, err2)
		}
		return string(p), string(g)
	}
	// The two complete states, and how long a run takes.
	shells := []string{"/bin/x", "/bin/y"}
	var states [2]string
	var groupFile string
	// The shorter of the two runs: one slowed by a busy machine made
	// the kills land after most runs had ended (8 of 20 once in CI).
	runTime := time.Duration(math.MaxInt64)
	for i, sh := range shells {
		setShell(sh)
		start := time.Now()
		e.sync(t)
		runTime = min(runTime, time.Since(start))
		states[i], groupFile = read()
	}
	if states[0] == states[1] {
		t.Fatal("the two states write the same passwd file")
	}
	check := func(what string) {
		t.Helper()
		p, g := read()
		if (p != states[0] && p != states[1]) || g != groupFile {
			t.Fatalf("%s: the files are neither state (passwd %d bytes, group %d bytes)", what, len(p), len(g))
		}
	}
	noTemporaryFiles := func(what string) {
		t.Helper()
		entries, _ := os.ReadDir(e.outDir)
		for _, en := range entries {
			if strings.Contains(en.Name(), ".tmp") {
				t.Errorf("%s: %s left behind", what, en.Name())
			}
		}
	}
	killed := 0
	for round := 0; round < 20; round++ {
		setShell(shells[round%2])
		p := startCollabsync(t, e.config, "sync", "--once")
		time.Sleep(rand.N(runTime))
		p.cmd.Process.Signal(syscall.SIGKILL)
		if p.wait(t) == -1 {
			killed++
		}
		check(fmt.Sprintf("sync round %d", round))
		e.sync(t)
		if p, _ := read(); p != states[round%2] {
			t.Fatalf("sync round %d: the next sync did not complete the state", round)
		}
		noTemporaryFiles(fmt.Sprintf("sync round %d", round))
	}
	if killed < 10 {
		t.Errorf("only %d of 20 syncs were killed before they ended (runs take %v)", killed, runTime)
	}

	killed = 0
	for round := 0; round < 20; round++ {
		d := startServe(t, e.config)
		if round == 0 {
			d.waitReady(t)
		}
		setShell(shells[(round+1)%2])
		time.Sleep(rand.N(runTime + 100*time.Millisecond))
		d.cmd.Process.Signal(syscall.SIGKILL)
		if err := <-d.exited; err != nil {
			killed++
		}
		check(fmt.Sprintf("serve round %d", round))
	}
	if killed < 20 {
		t.Errorf("only %d of 20 daemons were killed", killed)
	}
	d := startServe(t, e.config)
	d.waitReady(t)
	eventually(t, 30*time.Second, "serve completing the last state", func() bool { p, _ := read(); return p == states[20%2] })
	noTemporaryFiles("serve")
	d.stop(t)
}
