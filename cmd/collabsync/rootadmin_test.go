package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRootCommandLeavesStateToTheService: the state and nss directories
// belong to the service's user (uid 65534 here), as systemd's
// StateDirectory= and the package's tmpfiles entry make them, and are
// empty. An admin runs sync --once and approve as root: every file they
// leave there is the service user's, and the service user's own plan and
// sync then open the database and the locks and write the files.
func TestRootCommandLeavesStateToTheService(t *testing.T) {
	const service = 65534
	e := newSyncEnv(t, "../../ldapx/testdata/small.ldif")
	state := filepath.Join(filepath.Dir(e.outDir), "state")
	// The service user may read the configuration and its password file
	// (the test's; the package's unit passes it as a credential), and run
	// the binary.
	pw := filepath.Join(filepath.Dir(e.outDir), "pw")
	data, err := os.ReadFile(e.server.RootPWFile)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(pw, data, 0o644)
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.ReplaceAll(string(cfg), e.server.RootPWFile, pw)), 0o644)
	for _, p := range []string{e.config, pw, filepath.Dir(e.outDir), filepath.Dir(filepath.Dir(e.outDir)), filepath.Dir(binary)} {
		os.Chmod(p, 0o755)
	}
	os.Mkdir(state, 0o750)
	for _, d := range []string{state, e.outDir} {
		if err := os.Chown(d, service, service); err != nil {
			t.Fatal(err)
		}
	}

	if r := collabsync(t, e.config, "sync", "--once"); r.code != 0 {
		t.Fatalf("sync as root: %d\n%s", r.code, r.stderr)
	}
	collabsync(t, e.config, "approve", "nss", "0123456789abcdef") // refused: nothing is held, but it opens the state
	var rootOwned []string
	for _, dir := range []string{state, e.outDir} {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, _ := d.Info()
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != service {
				rootOwned = append(rootOwned, path)
			}
			return nil
		})
	}
	if len(rootOwned) > 0 {
		t.Errorf("root's commands left files the service does not own: %v", rootOwned)
	}

	asService := func(args ...string) (int, string) {
		cmd := exec.Command(binary, append([]string{"-config", e.config, "-log-format", "text"}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: service, Gid: service}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), stderr.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, stderr.String()
	}
	e.modify(t, "dn: uid=alice,ou=people,dc=example,dc=org\nchangetype: modify\nreplace: loginShell\nloginShell: /bin/zsh\n")
	if code, stderr := asService("plan"); code != 0 {
		t.Errorf("plan as the service user after root's commands: %d\n%s", code, stderr)
	}
	if code, stderr := asService("sync", "--once"); code != 0 {
		t.Errorf("sync as the service user after root's commands: %d\n%s", code, stderr)
	}
	if got := shellOf(t, filepath.Join(e.outDir, "passwd"), "alice"); got != "/bin/zsh" {
		t.Errorf("alice's shell after the service user's sync: %q", got)
	}
}
