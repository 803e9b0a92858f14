// Package node runs a stand-in for one of a centre's compute nodes: a
// private mount namespace whose /etc/nsswitch.conf says "files ldap" and
// whose nslcd (from Debian's nslcd and libnss-ldapd) answers getent and
// id from an LDAP server, usually a consumer replica (the recipe in
// ../shared/COMPONENTS.md). The machine's /etc and its nslcd are never
// touched: the namespace binds its own nslcd.conf, nsswitch.conf and /run.
// No nscd: getent asks nslcd every time.
package node

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Node is a running node.
type Node struct {
	nslcd *exec.Cmd
	log   string // nslcd's debug output
}

// StartT starts a node whose nslcd reads users under ou=people,base and
// groups under ou=groups,base from uri, and stops it when the test ends.
// Without nslcd it skips, or fails when CI is set.
func StartT(t testing.TB, uri, base string) *Node {
	t.Helper()
	testharness.Require(t, "unshare", "nsenter", "getent")
	testharness.RequireRoot(t)
	if _, err := os.Stat("/usr/sbin/nslcd"); err != nil {
		testharness.Missing(t, "nslcd not installed (make test installs nslcd and libnss-ldapd)")
	}
	grp, err := user.LookupGroup("nslcd")
	if err != nil {
		testharness.Missing(t, "no nslcd group: %v", err)
	}
	usr, err := user.Lookup("nslcd")
	if err != nil {
		testharness.Missing(t, "no nslcd user: %v", err)
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(grp.Gid)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(filepath.Join(run, "nslcd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(run, "nslcd"), uid, gid); err != nil {
		t.Fatal(err)
	}
	nsswitch := filepath.Join(dir, "nsswitch.conf")
	conf := filepath.Join(dir, "nslcd.conf")
	if err := os.WriteFile(nsswitch, []byte("passwd: files ldap\ngroup: files ldap\nshadow: files\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("uid nslcd\ngid nslcd\nuri %s\nbase passwd ou=people,%s\nbase group ou=groups,%s\ncache dn2uid 0s\n", uri, base, base)
	if err := os.WriteFile(conf, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(conf, 0, gid); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --bind %s /etc/nsswitch.conf && mount --bind %s /etc/nslcd.conf && mount --bind %s /run && exec /usr/sbin/nslcd -d",
		quote(nsswitch), quote(conf), quote(run))
	n := &Node{log: filepath.Join(dir, "nslcd.log")}
	logFile, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	n.nslcd = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	n.nslcd.Stdout, n.nslcd.Stderr = logFile, logFile
	if err := n.nslcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.nslcd.Process.Kill()
		n.nslcd.Wait()
	})
	// Ready once its socket is there.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(run, "nslcd", "socket")); err == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("nslcd did not open its socket within 10 s:\n%s", n.Log())
		}
	}
}

// Log is nslcd's debug output so far.
func (n *Node) Log() string {
	data, _ := os.ReadFile(n.log)
	return string(data)
}

// Getent runs getent with args on the node; its output, "" when getent
// finds nothing (exit 2).
func (n *Node) Getent(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.nslcd.Process.Pid), "-m", "getent"}, args...)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("getent %s on the node: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
