package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
)

// buildPackages runs `make package` for a version into a directory of its
// own and returns the directory.
func buildPackages(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "--no-print-directory", "package", "PKGDIR="+dir, "PKG_VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package %s: %v\n%s", version, err, out)
	}
	return dir
}

// throwawayRoot is the script's preamble: a private mount namespace in
// which an overlay of the machine's root (its changes on a tmpfs) is
// entered with chroot, so dpkg and the maintainer scripts write nothing
// the machine keeps. $PKGS is the packages' directory, seen at /pkgs.
const throwawayRoot = `set -eu
w=$(mktemp -d)
mount -t tmpfs tmpfs "$w"
mkdir "$w/upper" "$w/work" "$w/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$w/upper,workdir=$w/work" "$w/root"
mount -t proc proc "$w/root/proc"
mount --rbind /dev "$w/root/dev"
mount -t tmpfs tmpfs "$w/root/run"
mount -t tmpfs tmpfs "$w/root/tmp"
mkdir -p "$w/root/pkgs"
mount --bind "$PKGS" "$w/root/pkgs"
inroot() { chroot "$w/root" /bin/sh -c "$1"; }
`

// TestPackageInstallUpgradePurge: make package builds the .deb and the
// .rpm; the .deb installs into a throwaway root (an overlay of this
// machine's, in a private mount namespace): the binary says its version,
// sysusers and tmpfiles made the user and the nss directory,
// systemd-analyze verify passes on the installed unit, check-config on the
// installed example names the one file to create and passes once it is
// there (README's install steps); an upgrade keeps
// an edited configuration; a purge leaves none of its files. The .rpm
// holds the same payload. The machine's own /usr and dpkg database are
// untouched.
func TestPackageInstallUpgradePurge(t *testing.T) {
	testharness.RequireRoot(t)
	testharness.Require(t, "make", "dpkg", "dpkg-deb", "rpm", "unshare", "chroot", "mount", "systemd-analyze", "systemd-sysusers", "systemd-tmpfiles")
	first, second := buildPackages(t, "0.1.0"), buildPackages(t, "0.1.1")
	deb1, deb2 := filepath.Join(first, "collabsync_0.1.0_amd64.deb"), filepath.Join(second, "collabsync_0.1.1_amd64.deb")
	rpm1 := filepath.Join(first, "collabsync-0.1.0-1.x86_64.rpm")
	for _, f := range []string{deb1, deb2, rpm1} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("make package: %v", err)
		}
	}
	pkgs := t.TempDir()
	for _, f := range []string{deb1, deb2} {
		data, _ := os.ReadFile(f)
		os.WriteFile(filepath.Join(pkgs, filepath.Base(f)), data, 0o644)
	}

	// The same payload in both packages (files and links, not directories).
	payload := func(name string, args ...string) []string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		var files []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			path := f[len(f)-1]
			if name == "dpkg-deb" {
				if strings.HasPrefix(f[0], "d") {
					continue
				}
				path = strings.TrimPrefix(path, ".")
			}
			files = append(files, path)
		}
		slices.Sort(files)
		return files
	}
	debFiles, rpmFiles := payload("dpkg-deb", "-c", deb1), payload("rpm", "-qpl", rpm1)
	if !slices.Equal(debFiles, rpmFiles) {
		t.Errorf("payloads differ:\n.deb %v\n.rpm %v", debFiles, rpmFiles)
	}

	script := throwawayRoot + `
inroot 'dpkg -i /pkgs/collabsync_0.1.0_amd64.deb' >/dev/null
echo "version: $(inroot 'collabsync version')"
echo "user: $(inroot 'getent passwd collabsync | cut -d: -f1,6')"
echo "nss dir: $(inroot 'stat -c %U:%a /var/lib/extrausers')"
inroot 'systemd-analyze verify /usr/lib/systemd/system/collabsync.service' && echo "verify: ok"
inroot 'mkdir -p /etc/systemd/system/collabsync.service.d && cp /usr/share/collabsync/systemd/*.conf /etc/systemd/system/collabsync.service.d/'
inroot 'systemd-analyze verify collabsync.service 2>&1' | grep -q . || echo "verify with the drop-ins: ok"
echo "check-config as installed: $(inroot 'collabsync check-config 2>&1' | tail -n 1)"
inroot '(umask 077; echo secret > /etc/collabsync/ldap-password)'
echo "check-config with the password file: $(inroot 'collabsync check-config 2>&1')"
echo "conffile: $(inroot 'dpkg-query -W -f="\${Conffiles}" collabsync' | awk '{print $1}')"
inroot 'echo "# edited by the site" >> /etc/collabsync/collabsync.yaml'
inroot 'dpkg -i /pkgs/collabsync_0.1.1_amd64.deb' >/dev/null
echo "upgraded: $(inroot 'collabsync version')"
echo "edit kept: $(inroot 'tail -n 1 /etc/collabsync/collabsync.yaml')"
inroot 'dpkg --purge collabsync' >/dev/null
echo "after purge: $(inroot 'ls /usr/bin/collabsync /etc/collabsync/collabsync.yaml /usr/lib/systemd/system/collabsync.service 2>/dev/null | wc -l') files, status $(inroot 'dpkg-query -W -f="\${db:Status-Status}" collabsync 2>/dev/null || echo none')"
`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "PKGS="+pkgs)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install in a throwaway root: %v\n%s", err, out)
	}
	got := string(out)
	t.Logf("in the throwaway root:\n%s", got)
	for _, want := range []string{
		"version: collabsync 0.1.0",
		"user: collabsync:/var/lib/collabsync",
		"nss dir: collabsync:755",
		"verify: ok",
		"verify with the drop-ins: ok",
		"ldap.bind.password_file: cannot read: stat /etc/collabsync/ldap-password: no such file or directory",
		"check-config with the password file: /etc/collabsync/collabsync.yaml: OK",
		"conffile: /etc/collabsync/collabsync.yaml",
		"upgraded: collabsync 0.1.1",
		"edit kept: # edited by the site",
		"after purge: 0 files, status",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "status installed") {
		t.Errorf("still installed after the purge:\n%s", got)
	}
	// Nothing reached the machine itself.
	if _, err := os.Stat("/usr/lib/systemd/system/collabsync.service"); err == nil {
		t.Error("the machine's own /usr got the unit")
	}
	if st, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "collabsync").Output(); string(st) == "installed" {
		t.Error("the machine's dpkg database lists collabsync")
	}
}

// TestMakeInstall: make install puts the package's files under DESTDIR,
// the binary and the unit's ExecStart under PREFIX, and keeps a
// configuration already there.
func TestMakeInstall(t *testing.T) {
	testharness.Require(t, "make", "install")
	dest := t.TempDir()
	conf := filepath.Join(dest, "etc/collabsync/collabsync.yaml")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	os.WriteFile(conf, []byte("# the site's\n"), 0o640)
	cmd := exec.Command("make", "-C", "../..", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/opt/cs")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"opt/cs/bin/collabsync", "etc/systemd/system/collabsync.service", "usr/lib/sysusers.d/collabsync.conf",
		"usr/lib/tmpfiles.d/collabsync.conf", "opt/cs/share/man/man1/collabsync.1", "opt/cs/share/doc/collabsync/README.md",
		"opt/cs/share/collabsync/prometheus/collabsync.rules.yml", "opt/cs/share/collabsync/systemd/userdb.conf"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/collabsync.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/cs/bin/collabsync ") || strings.Contains(string(unit), "/usr/bin/collabsync") {
		t.Errorf("the unit's ExecStart does not follow PREFIX:\n%s", unit)
	}
	if got, _ := os.ReadFile(conf); string(got) != "# the site's\n" {
		t.Errorf("make install replaced the site's configuration: %q", got)
	}
}
