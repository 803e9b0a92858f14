package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestUserDBAsTheServiceUser: serve run as an unprivileged user (uid
// 65534 standing for collabsync) can make its userdb socket in
// /run/systemd/userdb once the shipped collabsync-userdb.tmpfiles has
// given that user its ACL there (applied by the real systemd-tmpfiles in
// a private mount namespace), and getent answers through nss-systemd.
// Before the ACL, the provider cannot make its socket and /readyz says
// so; it tries again and serves once the ACL is there.
func TestUserDBAsTheServiceUser(t *testing.T) {
	const service = "65534"
	testharness.Require(t, "getent", "setpriv", "systemd-tmpfiles")
	if _, err := os.Stat("/lib/x86_64-linux-gnu/libnss_systemd.so.2"); err != nil {
		testharness.Missing(t, "libnss-systemd: %v", err)
	}
	ns := newMountNS(t)
	ns.run(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/run/systemd")
	nsswitch := writeFile(t, filepath.Join(t.TempDir(), "nsswitch.conf"), "passwd: files systemd\ngroup: files systemd\nshadow: files\n")
	ns.run(t, "mount", "--bind", nsswitch, "/etc/nsswitch.conf")
	tmpfiles, err := os.ReadFile("../../systemd/collabsync-userdb.tmpfiles")
	if err != nil {
		t.Fatal(err)
	}
	conf := writeFile(t, filepath.Join(t.TempDir(), "collabsync-userdb.conf"), strings.ReplaceAll(string(tmpfiles), "user:collabsync:", "user:"+service+":"))
	os.Chmod(conf, 0o644)
	ns.run(t, "mkdir", "-m", "755", "/run/systemd/userdb")

	e := newDemoEnv(t, serveConfig(freeListen(t), "  userdb: io.collabsync.Directory\n"))
	// The service user's state, nss directory, configuration and password.
	dir := filepath.Dir(e.outDir)
	pw := filepath.Join(dir, "pw")
	data, _ := os.ReadFile(e.server.RootPWFile)
	os.WriteFile(pw, data, 0o644)
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.ReplaceAll(string(cfg), e.server.RootPWFile, pw)), 0o644)
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o750)
	for _, p := range []string{e.config, pw, dir, filepath.Dir(dir), filepath.Dir(binary)} {
		os.Chmod(p, 0o755)
	}
	for _, p := range []string{state, e.outDir} {
		os.Chown(p, 65534, 65534)
	}
	asService := append(ns.wrap(), "setpriv", "--reuid="+service, "--regid="+service, "--clear-groups")
	d := startServeIn(t, e.config, asService)
	eventually(t, 20*time.Second, "/readyz saying the provider cannot serve", func() bool {
		code, body := d.get("/readyz")
		return code == 503 && strings.Contains(body, "the userdb provider is not serving") && strings.Contains(body, "permission denied")
	})
	ns.run(t, "systemd-tmpfiles", "--create", conf)
	d.waitReady(t)
	argv := append(ns.wrap(), "getent", "passwd", "alice")
	out, _ := exec.Command(argv[0], argv[1:]...).Output()
	if got := string(out); !strings.HasPrefix(got, "alice:x:10001:") {
		t.Errorf("getent passwd alice through the service user's socket = %q\n%s", got, d.logText())
	}
	d.stop(t)
}
