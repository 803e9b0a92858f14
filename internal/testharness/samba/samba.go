// Package samba runs a throwaway Samba 4 Active Directory domain controller
// for tests: provisioned with RFC 2307 attributes under a private
// directory, one process in the foreground, LDAP only, in a network
// namespace of its own (AD's ports are fixed: two runs on one machine
// would meet on 127.0.0.1:389) with its pid, lock and socket directories
// in its own directory, never the machine's /run/samba.
package samba

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Options configure a domain controller.
type Options struct {
	// TLS gives the DC a certificate for its address from a throwaway CA
	// and keeps AD's default: simple binds only over TLS (ldaps:// or
	// StartTLS). Without it, tests bind over plain LDAP.
	TLS bool
	// MakeCertificate, when set, is configs/samba/make-dc-certificate: TLS
	// with the certificate it makes for the DC's address, as a site
	// following docs/SERVERS.md would.
	MakeCertificate string
	// CNOnlyTLS is TLS with a certificate from a throwaway CA that names
	// the DC's address only in its common name (no subjectAltName).
	CNOnlyTLS bool
	// SelfMadeTLS is TLS with the certificate Samba makes itself at its
	// first start (private/tls: a CA with a negative serial number, a
	// host certificate without subjectAltName), as a DC is left by
	// provisioning. SelfMadeCA is then its CA file.
	SelfMadeTLS bool
}

// Server is a running Samba AD DC.
type Server struct {
	URI           string                 // ldap://<its address>:389 (AD's port is fixed)
	LDAPSURI      string                 // ldaps://<its address>:636
	Certs         *testharness.CertFiles // with TLS
	SelfMadeCA    string                 // with SelfMadeTLS
	BaseDN        string                 // DC=example,DC=org
	AdminDN       string
	AdminPassword string
	AdminPWFile   string // the password in a file, for bind.password_file

	dir  string
	ns   *testharness.NetNS
	cmd  *exec.Cmd
	done chan error
}

const adminPassword = "Passw0rd-collabsync!"

// StartT provisions and starts a domain controller for a test and stops it
// when the test ends. Without Samba it skips, or fails when CI is set.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	testharness.Require(t, "samba", "samba-tool", "ldapadd", "unshare", "nsenter", "ip")
	testharness.RequireRoot(t)
	s, err := Start(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start samba: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stop samba: %v", err)
		}
	})
	return s
}

// Start provisions the domain EXAMPLE.ORG in dir and starts samba in a
// network namespace of its own.
func Start(dir string, opts Options) (*Server, error) {
	ns, err := testharness.NewNetNS()
	if err != nil {
		return nil, fmt.Errorf("network namespace for samba: %w", err)
	}
	s := &Server{URI: "ldap://" + ns.IP + ":389", LDAPSURI: "ldaps://" + ns.IP + ":636", BaseDN: "DC=example,DC=org",
		AdminDN: "CN=Administrator,CN=Users,DC=example,DC=org", AdminPassword: adminPassword,
		AdminPWFile: filepath.Join(dir, "adminpw"), dir: dir, ns: ns}
	if err := s.provision(opts); err != nil {
		ns.Close()
		return nil, err
	}
	if err := s.Start(); err != nil {
		ns.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) provision(opts Options) error {
	dir := s.dir
	if err := os.WriteFile(s.AdminPWFile, []byte(adminPassword+"\n"), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"domain", "provision", "--use-rfc2307", "--realm=EXAMPLE.ORG", "--domain=EXAMPLE", "--server-role=dc",
		"--dns-backend=NONE", "--host-ip=" + s.ns.IP, "--targetdir=" + dir, "--adminpass=" + adminPassword,
		// Not the machine's: a host name longer than 15 characters is no NetBIOS name.
		"--host-name=dc1", "--option=netbios name = DC1"}
	run := filepath.Join(dir, "run")
	for _, o := range []string{"interfaces = " + s.ns.IP + "/30", "bind interfaces only = yes", "server services = ldap",
		"log file = " + filepath.Join(dir, "log.%m"),
		// Everything a DC keeps outside its targetdir by default.
		"pid directory = " + run, "winbindd socket directory = " + filepath.Join(run, "winbindd"),
		"ntp signd socket directory = " + filepath.Join(run, "ntp_signd")} {
		args = append(args, "--option="+o)
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "samba-tool", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("samba-tool domain provision: %v: %s", err, testharness.Tail(string(out)))
	}
	// Without TLS, simple binds over plain LDAP, as tests bind (provision
	// does not keep this option).
	conf := filepath.Join(dir, "etc/smb.conf")
	data, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	global := "\tldap server require strong auth = no\n"
	switch {
	case opts.MakeCertificate != "":
		tlsDir := filepath.Join(dir, "tls")
		if out, err := exec.Command(opts.MakeCertificate, tlsDir, "dc1.example.org", s.ns.IP).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", opts.MakeCertificate, err, out)
		}
		s.Certs = &testharness.CertFiles{CA: filepath.Join(tlsDir, "ca.pem"), Cert: filepath.Join(tlsDir, "dc.pem"), Key: filepath.Join(tlsDir, "dc.key")}
		global = fmt.Sprintf("\ttls enabled = yes\n\ttls keyfile = %s\n\ttls certfile = %s\n\ttls cafile = %s\n", s.Certs.Key, s.Certs.Cert, s.Certs.CA)
	case opts.TLS || opts.CNOnlyTLS:
		if opts.TLS {
			s.Certs, err = testharness.NewCertFiles(dir, s.ns.IP)
		} else {
			s.Certs, err = testharness.NewCertFilesCNOnly(dir, s.ns.IP)
		}
		if err != nil {
			return err
		}
		global = fmt.Sprintf("\ttls enabled = yes\n\ttls keyfile = %s\n\ttls certfile = %s\n\ttls cafile = %s\n", s.Certs.Key, s.Certs.Cert, s.Certs.CA)
	case opts.SelfMadeTLS:
		global = "\ttls enabled = yes\n"
		s.SelfMadeCA = filepath.Join(dir, "private/tls/ca.pem")
	}
	data = []byte(strings.Replace(string(data), "[global]\n", "[global]\n"+global, 1))
	return os.WriteFile(conf, data, 0o644)
}

// Start runs samba in the foreground and waits until LDAP answers.
func (s *Server) Start() error {
	addr := net.JoinHostPort(s.ns.IP, "389")
	s.cmd = s.ns.Command("samba", "-i", "-s", filepath.Join(s.dir, "etc/smb.conf"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(s.dir, "samba.out"))
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-s.done:
			out, _ := os.ReadFile(filepath.Join(s.dir, "samba.out"))
			return fmt.Errorf("samba exited: %v: %s", err, testharness.Tail(string(out)))
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("samba did not listen on %s within 60 s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SMBConf is the DC's smb.conf, for the tools that act on its database.
func (s *Server) SMBConf() string { return filepath.Join(s.dir, "etc/smb.conf") }

// AddBindUser creates an ordinary domain user (no rights beyond what
// every authenticated user has) and returns its DN and a file with its
// password, for bind.password_file.
func (s *Server) AddBindUser(ctx context.Context, name string) (dn, passwordFile string, err error) {
	const password = "Bind-Passw0rd-collabsync!"
	out, err := exec.CommandContext(ctx, "samba-tool", "user", "create", name, password, "-s", filepath.Join(s.dir, "etc/smb.conf")).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("samba-tool user create %s: %v: %s", name, err, out)
	}
	passwordFile = filepath.Join(s.dir, name+".pw")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		return "", "", err
	}
	return "CN=" + name + ",CN=Users," + s.BaseDN, passwordFile, nil
}

// Add adds LDIF records (changetype add by default) as the Administrator.
func (s *Server) Add(ctx context.Context, ldif string) error {
	return s.ldap(ctx, "ldapadd", ldif)
}

// Modify applies LDIF change records as the Administrator.
func (s *Server) Modify(ctx context.Context, ldif string) error {
	return s.ldap(ctx, "ldapmodify", ldif)
}

func (s *Server) ldap(ctx context.Context, tool, ldif string) error {
	uri := s.URI
	cmd := exec.CommandContext(ctx, tool, "-x", "-H", uri, "-D", s.AdminDN, "-w", s.AdminPassword)
	switch {
	case s.Certs != nil:
		cmd = exec.CommandContext(ctx, tool, "-x", "-H", s.LDAPSURI, "-D", s.AdminDN, "-w", s.AdminPassword)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.Certs.CA) // OpenLDAP's client falls back to the CN
	case s.SelfMadeCA != "":
		// Its host certificate names no address: the harness's own
		// changes go over TLS unverified (collabsync's never do).
		cmd = exec.CommandContext(ctx, tool, "-x", "-H", s.LDAPSURI, "-D", s.AdminDN, "-w", s.AdminPassword)
		cmd.Env = append(os.Environ(), "LDAPTLS_REQCERT=never")
	}
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", tool, err, out)
	}
	return nil
}

// Stop stops samba: its whole process group, workers included (they
// outlive the main process for a moment, writing into its directory).
// Start runs it again in the same namespace.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	err := testharness.StopGroup(s.cmd.Process.Pid, 20*time.Second)
	<-s.done
	s.cmd = nil
	return err
}

// Close stops samba and ends its network namespace.
func (s *Server) Close() error {
	err := s.Stop()
	if nerr := s.ns.Close(); err == nil {
		err = nerr
	}
	return err
}
