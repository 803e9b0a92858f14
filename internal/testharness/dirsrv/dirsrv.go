// Package dirsrv runs a throwaway 389 Directory Server (FreeIPA's core) for
// tests: created with dscreate under a private prefix (nothing under the
// machine's /etc, /var or /run), listening on loopback only, with the
// memberOf, Retro Changelog and Content Synchronization plugins, so RFC 4533
// syncrepl works as on a FreeIPA server.
package dirsrv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Options configure a server.
type Options struct {
	Dir    string // everything of the instance lives below it
	Suffix string // default dc=example,dc=org
	// LDIF files imported (offline, with ldif2db) before the first start.
	LDIF []string
	// DefaultRetroChangelog leaves the Retro Changelog as 389-ds enables
	// it, without nsuniqueid: every syncrepl cookie then ends in
	// #4294967295 and cannot be resumed from.
	DefaultRetroChangelog bool
}

// Server is a running (or stopped) 389-ds instance.
type Server struct {
	URI          string // ldap://127.0.0.1:<port>
	RootDN       string
	RootPassword string
	RootPWFile   string // the root password in a file, for bind.password_file

	dir, confDir, pidFile, logFile string
	port                           int
}

const (
	instance     = "cs"
	rootPassword = "Secret-389-ds"
)

// Start creates the instance, imports the LDIF, enables the plugins and
// starts the server.
func Start(opts Options) (*Server, error) {
	if opts.Suffix == "" {
		opts.Suffix = "dc=example,dc=org"
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := traversable(dir); err != nil {
		return nil, err
	}
	s := &Server{dir: dir, RootDN: "cn=Directory Manager", RootPassword: rootPassword,
		RootPWFile: filepath.Join(dir, "rootpw"), confDir: filepath.Join(dir, "etc/dirsrv/slapd-"+instance),
		pidFile: filepath.Join(dir, "run/dirsrv/slapd-"+instance+".pid"), logFile: filepath.Join(dir, "var/log/dirsrv/slapd-"+instance+"/errors")}
	if err := os.WriteFile(s.RootPWFile, []byte(rootPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.create(opts.Suffix); err != nil {
		return nil, err
	}
	for _, l := range opts.LDIF {
		if err := s.importLDIF(l); err != nil {
			return nil, err
		}
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	if err := s.enablePlugins(!opts.DefaultRetroChangelog); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// traversable lets the dirsrv user reach dir (test directories are 0700).
func traversable(dir string) error {
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

// create runs dscreate with a private copy of its defaults whose every
// instance path is below dir, and systemd off.
func (s *Server) create(suffix string) error {
	d := s.dir
	defaults, err := os.ReadFile("/usr/share/dirsrv/inf/defaults.inf")
	if err != nil {
		return fmt.Errorf("389-ds: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(defaults), "\n") {
		key, _, _ := strings.Cut(line, " = ")
		switch key {
		case "with_systemd":
			line = "with_systemd = 0"
		case "initconfig_dir":
			line = "initconfig_dir = " + d + "/etc/default"
		case "sysconf_dir":
			line = "sysconf_dir = " + d + "/etc"
		case "local_state_dir":
			line = "local_state_dir = " + d + "/var"
		case "inst_dir":
			line = "inst_dir = " + d + "/lib/dirsrv/slapd-{instance_name}"
		case "db_home_dir":
			line = "db_home_dir = " + d + "/shm/slapd-{instance_name}"
		}
		for _, p := range []string{"/etc/dirsrv", "/var/lib/dirsrv", "/var/log/dirsrv", "/run/dirsrv", "/run/lock/dirsrv", "/run/slapd-", "/etc/tmpfiles.d"} {
			line = strings.ReplaceAll(line, " "+p, " "+d+p)
		}
		out = append(out, line)
	}
	for _, sub := range []string{"share/dirsrv/inf", "etc/dirsrv", "etc/default", "etc/tmpfiles.d", "var/lib/dirsrv", "var/log/dirsrv",
		"run/dirsrv", "run/lock/dirsrv", "lib/dirsrv", "shm"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d, "share/dirsrv/inf/defaults.inf"), []byte(strings.Join(out, "\n")), 0o644); err != nil {
		return err
	}
	// The templates dscreate copies from sysconf_dir.
	for _, tmpl := range []string{"schema", "config"} {
		if out, err := exec.Command("cp", "-r", "/etc/dirsrv/"+tmpl, filepath.Join(d, "etc/dirsrv/")).CombinedOutput(); err != nil {
			return fmt.Errorf("389-ds templates: %v: %s", err, out)
		}
	}
	if err := chownDirsrv(filepath.Join(d, "run"), filepath.Join(d, "var"), filepath.Join(d, "shm")); err != nil {
		return err
	}
	inf := fmt.Sprintf(`[general]
full_machine_name = localhost
start = False
systemd = False
selinux = False
[slapd]
instance_name = %s
port = %d
secure_port = %d
root_password = %s
self_sign_cert = False
[backend-userroot]
suffix = %s
create_suffix_entry = True
sample_entries = no
`, instance, s.port, s.port+1, rootPassword, suffix)
	infPath := filepath.Join(d, "instance.inf")
	if err := os.WriteFile(infPath, []byte(inf), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dscreate", "from-file", infPath)
	cmd.Env = append(os.Environ(), "PREFIX="+d)
	cmd.Dir = d
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dscreate: %v: %s", err, testharness.Tail(string(out)))
	}
	s.Stop() // dscreate may leave it running
	// Loopback only.
	dse := filepath.Join(s.confDir, "dse.ldif")
	data, err := os.ReadFile(dse)
	if err != nil {
		return err
	}
	portLine := fmt.Sprintf("nsslapd-port: %d\n", s.port)
	if !strings.Contains(string(data), portLine) {
		return fmt.Errorf("389-ds: no %q in %s", strings.TrimSpace(portLine), dse)
	}
	data = []byte(strings.Replace(string(data), portLine, portLine+"nsslapd-listenhost: 127.0.0.1\n", 1))
	return os.WriteFile(dse, data, 0o600)
}

// importLDIF loads entries offline (the server stopped).
func (s *Server) importLDIF(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	copyPath := filepath.Join(s.dir, "var/lib/dirsrv", filepath.Base(path))
	if err := os.WriteFile(copyPath, data, 0o644); err != nil {
		return err
	}
	out, err := exec.Command("/usr/sbin/ns-slapd", "ldif2db", "-D", s.confDir, "-n", "userroot", "-i", copyPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ldif2db %s: %v: %s", path, err, testharness.Tail(string(out)))
	}
	return chownDirsrv(filepath.Join(s.dir, "var"))
}

// enablePlugins turns on memberOf, the Retro Changelog (keyed by
// nsuniqueid, or every cookie ends in #4294967295 and a restart asks for
// a full refresh) and Content Synchronization, then restarts.
func (s *Server) enablePlugins(uniqueID bool) error {
	ldif := `dn: cn=MemberOf Plugin,cn=plugins,cn=config
changetype: modify
replace: nsslapd-pluginEnabled
nsslapd-pluginEnabled: on

dn: cn=Retro Changelog Plugin,cn=plugins,cn=config
changetype: modify
replace: nsslapd-pluginEnabled
nsslapd-pluginEnabled: on
`
	if uniqueID {
		ldif += `-
replace: nsslapd-attribute
nsslapd-attribute: nsuniqueid:targetUniqueId
`
	}
	ldif += `
dn: cn=Content Synchronization,cn=plugins,cn=config
changetype: modify
replace: nsslapd-pluginEnabled
nsslapd-pluginEnabled: on
`
	if err := s.Modify(context.Background(), ldif); err != nil {
		return err
	}
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Modify applies an LDIF change record set as the root DN.
func (s *Server) Modify(ctx context.Context, ldif string) error {
	cmd := exec.CommandContext(ctx, "ldapmodify", "-x", "-H", s.URI, "-D", s.RootDN, "-y", s.rawPW())
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ldapmodify: %v: %s", err, out)
	}
	return nil
}

// rawPW is the root password without a newline, for ldapmodify -y.
func (s *Server) rawPW() string {
	p := s.RootPWFile + ".raw"
	os.WriteFile(p, []byte(rootPassword), 0o600)
	return p
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() error {
	s.URI = fmt.Sprintf("ldap://127.0.0.1:%d", s.port)
	cmd := exec.Command("/usr/sbin/ns-slapd", "-D", s.confDir, "-i", s.pidFile)
	if out, err := cmd.CombinedOutput(); err != nil { // it forks into the background
		return fmt.Errorf("ns-slapd: %v: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logFile)
			return fmt.Errorf("389-ds did not start listening: %v\n%s", err, testharness.Tail(string(log)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the server (SIGTERM) and waits for it to exit.
func (s *Server) Stop() error {
	data, err := os.ReadFile(s.pidFile)
	if err != nil {
		return nil // not running
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return nil
	}
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		os.Remove(s.pidFile)
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("389-ds (pid %d) did not stop within 30 s", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.Remove(s.pidFile)
	return nil
}

// Close stops the server.
func (s *Server) Close() error { return s.Stop() }

func chownDirsrv(paths ...string) error {
	u, err := user.Lookup("dirsrv")
	if err != nil {
		return fmt.Errorf("389-ds: %w", err)
	}
	for _, p := range paths {
		if out, err := exec.Command("chown", "-R", u.Uid+":"+u.Gid, p).CombinedOutput(); err != nil {
			return fmt.Errorf("chown %s: %v: %s", p, err, out)
		}
	}
	return nil
}

func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// dscreate wants a secure port too: the next one must be free.
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1)); err == nil {
			l2.Close()
			return port, nil
		}
	}
}
