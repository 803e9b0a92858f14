// Package slapd runs a throwaway OpenLDAP slapd for tests, benchmarks and
// the demo: cn=config built offline with slapadd -n0, an mdb database with
// the memberof, ppolicy (account locks) and syncprov overlays, a random
// loopback port and an ldapi socket. It is stopped by PID.
package slapd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Options describe the server to start.
type Options struct {
	Dir    string // working directory (config, data, logs)
	Suffix string // default dc=example,dc=org
	// LDIF files loaded with slapadd before the server starts (fast, but
	// overlays do not run: memberOf is not computed).
	LDIF []string
	// Schemas are extra schema files in cn=config LDIF form.
	Schemas []string
	// TLS enables StartTLS and ldaps with a throwaway CA.
	TLS bool
	// NoSyncprov leaves the syncprov overlay out, for fallback tests.
	NoSyncprov bool
	// NoSessionLog leaves syncprov without a session log: a consumer
	// resuming from a cookie gets a present phase (every unchanged entry
	// named, the others to be deleted) instead of a list of deletions.
	NoSessionLog bool
	// MaxSizeBytes is the mdb map size (default 1 GiB).
	MaxSizeBytes int64
	// AccessLog logs every write (successful or not) to the database
	// cn=accesslog (slapo-accesslog), for tests that count writes:
	// WriteLog reads it.
	AccessLog bool
	// Consumer makes the server a syncrepl consumer replica of a subtree
	// of another (refreshAndPersist), as the replicas serving a centre's
	// nodes are.
	Consumer *Consumer
}

// Consumer is what a consumer replica replicates, from where, as whom.
type Consumer struct {
	Provider, SearchBase, BindDN, Password string
}

// Server is a running (or stopped) slapd.
type Server struct {
	opts Options

	URI          string // ldap://127.0.0.1:<port>
	LDAPSURI     string // ldaps://127.0.0.1:<port>, with TLS
	LDAPIURI     string // ldapi://<socket>
	Socket       string
	RootDN       string
	RootPassword string
	RootPWFile   string // the root password in a file, for bind.password_file
	Certs        *testharness.CertFiles

	port, tlsPort int
	sockDir       string
	cmd           *exec.Cmd
	done          chan error
	logPath       string
}

// RootPassword is the fixed password of the test root DN.
const rootPassword = "secret"

// Start builds the configuration, loads the LDIF and starts slapd.
func Start(opts Options) (*Server, error) {
	if opts.Suffix == "" {
		opts.Suffix = "dc=example,dc=org"
	}
	if opts.MaxSizeBytes == 0 {
		opts.MaxSizeBytes = 1 << 30
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	// sun_path is limited to 108 bytes; test directories can be deeper.
	sockDir, err := os.MkdirTemp("", "sl")
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:         opts,
		Socket:       filepath.Join(sockDir, "s"),
		sockDir:      sockDir,
		RootDN:       "cn=admin," + opts.Suffix,
		RootPassword: rootPassword,
		RootPWFile:   filepath.Join(opts.Dir, "rootpw"),
		logPath:      filepath.Join(opts.Dir, "slapd.log"),
	}
	s.LDAPIURI = "ldapi://" + url.PathEscape(s.Socket)
	if err := os.WriteFile(s.RootPWFile, []byte(rootPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	if opts.TLS {
		if s.Certs, err = testharness.NewCertFiles(opts.Dir); err != nil {
			return nil, err
		}
	}
	if err := s.configure(); err != nil {
		return nil, err
	}
	for _, l := range opts.LDIF {
		if err := s.slapadd(l); err != nil {
			return nil, err
		}
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

var configTemplate = template.Must(template.New("config").Parse(`dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {{.Dir}}/slapd.pid
{{- if .Certs}}
olcTLSCACertificateFile: {{.Certs.CA}}
olcTLSCertificateFile: {{.Certs.Cert}}
olcTLSCertificateKeyFile: {{.Certs.Key}}
{{- end}}

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: syncprov
olcModuleLoad: ppolicy
{{- if .AccessLog}}
olcModuleLoad: accesslog
{{- end}}

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
{{- range .Schemas}}
include: file://{{.}}
{{- end}}

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: unlimited

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: {{.Suffix}}
olcRootDN: {{.RootDN}}
olcRootPW: {{.RootPassword}}
olcDbDirectory: {{.Dir}}/data
olcDbMaxSize: {{.MaxSizeBytes}}
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid,cn eq
olcDbIndex: memberUid,member eq
olcDbIndex: uidNumber,gidNumber eq
olcDbIndex: entryCSN,entryUUID eq
olcLimits: * size=unlimited size.prtotal=unlimited time=unlimited
olcAccess: {0}to attrs=userPassword by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by self write by anonymous auth by * none
olcAccess: {1}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * read
{{- with .Consumer}}
olcSyncrepl: rid=001 provider={{.Provider}} type=refreshAndPersist retry="1 +" searchbase="{{.SearchBase}}" scope=sub schemachecking=off bindmethod=simple binddn="{{.BindDN}}" credentials={{.Password}}
{{- end}}

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof

dn: olcOverlay={1}ppolicy,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {1}ppolicy
{{- if .AccessLog}}

dn: olcDatabase={2}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {2}mdb
olcSuffix: cn=accesslog
olcDbDirectory: {{.Dir}}/accesslog
olcDbNoSync: TRUE
olcDbIndex: objectClass,reqStart eq
olcLimits: * size=unlimited time=unlimited
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth read by * none

dn: olcOverlay={3}accesslog,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcAccessLogConfig
olcOverlay: {3}accesslog
olcAccessLogDB: cn=accesslog
olcAccessLogOps: writes
{{- end}}
{{- if not .NoSyncprov}}

dn: olcOverlay={2}syncprov,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {2}syncprov
olcSpCheckpoint: 100 10
{{- if not .NoSessionLog}}
olcSpSessionLog: 10000
{{- end}}
{{- end}}
`))

func (s *Server) configure() error {
	for _, d := range []string{"cfg", "data", "accesslog"} {
		if err := os.MkdirAll(filepath.Join(s.opts.Dir, d), 0o700); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	err := configTemplate.Execute(&b, map[string]any{
		"Dir": s.opts.Dir, "Suffix": s.opts.Suffix, "RootDN": s.RootDN, "RootPassword": s.RootPassword,
		"MaxSizeBytes": s.opts.MaxSizeBytes, "Certs": s.Certs, "Schemas": s.opts.Schemas, "NoSyncprov": s.opts.NoSyncprov || s.opts.Consumer != nil, "NoSessionLog": s.opts.NoSessionLog,
		"Consumer": s.opts.Consumer, "AccessLog": s.opts.AccessLog,
	})
	if err != nil {
		return err
	}
	path := filepath.Join(s.opts.Dir, "config.ldif")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return err
	}
	return run("slapadd", "-n0", "-F", filepath.Join(s.opts.Dir, "cfg"), "-l", path)
}

func (s *Server) slapadd(ldif string) error {
	return run("slapadd", "-q", "-n1", "-F", filepath.Join(s.opts.Dir, "cfg"), "-l", ldif)
}

// Start (re)starts a stopped server on the same ports.
func (s *Server) Start() error {
	if s.port == 0 {
		var err error
		if s.port, err = freePort(); err != nil {
			return err
		}
		if s.opts.TLS {
			if s.tlsPort, err = freePort(); err != nil {
				return err
			}
		}
	}
	s.URI = fmt.Sprintf("ldap://127.0.0.1:%d", s.port)
	urls := []string{s.URI + "/", s.LDAPIURI + "/"}
	if s.opts.TLS {
		s.LDAPSURI = fmt.Sprintf("ldaps://127.0.0.1:%d", s.tlsPort)
		urls = append(urls, s.LDAPSURI+"/")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	os.Remove(s.Socket)
	cmd := exec.Command("slapd", "-F", filepath.Join(s.opts.Dir, "cfg"), "-h", strings.Join(urls, " "), "-d", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a test's Ctrl-C does not reach it before Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	s.cmd = cmd
	s.done = make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	return s.waitReady(10 * time.Second)
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			return fmt.Errorf("slapd exited during start-up (%v): %s", err, s.Log())
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			if _, err := os.Stat(s.Socket); err == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("slapd not ready after %v: %s", limit, s.Log())
}

// Stop ends slapd with SIGTERM (SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Close stops slapd for good and removes its socket directory.
func (s *Server) Close() error {
	err := s.Stop()
	os.RemoveAll(s.sockDir)
	return err
}

// Kill ends slapd with SIGKILL, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// PID is the running slapd's process id (0 when stopped).
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Log returns slapd's output so far, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Modify applies LDIF change records with the real ldapmodify, as root over
// ldapi with SASL EXTERNAL, so overlays (memberof, syncprov) see the change.
func (s *Server) Modify(ctx context.Context, ldif string) error {
	cmd := exec.CommandContext(ctx, "ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", s.LDAPIURI)
	cmd.Stdin = strings.NewReader(ldif)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ldapmodify: %w: %s", err, out)
	}
	return nil
}

// Add adds entries (content records) with ldapadd.
func (s *Server) Add(ctx context.Context, ldif string) error {
	cmd := exec.CommandContext(ctx, "ldapadd", "-Q", "-Y", "EXTERNAL", "-H", s.LDAPIURI)
	cmd.Stdin = strings.NewReader(ldif)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ldapadd: %w: %s", err, out)
	}
	return nil
}

// Backup dumps the database with slapcat (entryCSNs and the contextCSN
// included, as an operator's backup would), into path.
func (s *Server) Backup(path string) error {
	out, err := exec.Command("slapcat", "-n1", "-F", filepath.Join(s.opts.Dir, "cfg"), "-l", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("slapcat: %w: %s", err, out)
	}
	return nil
}

// Restore replaces the database with a Backup, as an operator restoring an
// older backup does: stop, empty the database, slapadd, start.
func (s *Server) Restore(backup string) error {
	if err := s.Stop(); err != nil {
		return err
	}
	data := filepath.Join(s.opts.Dir, "data")
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	if err := os.Mkdir(data, 0o700); err != nil {
		return err
	}
	// -w recomputes the contextCSN from the entries, as slapadd does for a
	// provider restored from backup.
	if err := run("slapadd", "-q", "-w", "-n1", "-F", filepath.Join(s.opts.Dir, "cfg"), "-l", backup); err != nil {
		return err
	}
	return s.Start()
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func freePort() (int, error) {
	ports, err := testharness.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Write is one write operation the server's access log recorded.
type Write struct {
	Type   string   // add, modify, delete, modrdn
	DN     string   // the entry written
	Mods   []string // reqMod: "attr:+ value", "attr:= value", ... (add: the entry's attributes)
	Result string   // reqResult: "0" for success
	Start  string   // reqStart, which orders the writes
}

// WriteLog returns the writes to entries under base (Options.AccessLog),
// oldest first.
func (s *Server) WriteLog(ctx context.Context, base string) ([]Write, error) {
	out, err := exec.CommandContext(ctx, "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-Q", "-Y", "EXTERNAL", "-H", s.LDAPIURI,
		"-b", "cn=accesslog", "(objectClass=auditWriteObject)", "reqType", "reqDN", "reqMod", "reqResult", "reqStart").Output()
	if err != nil {
		return nil, fmt.Errorf("ldapsearch cn=accesslog: %w", err)
	}
	var writes []Write
	for _, rec := range strings.Split(string(out), "\n\n") {
		var w Write
		for _, line := range strings.Split(rec, "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			switch k {
			case "reqType":
				w.Type = v
			case "reqDN":
				w.DN = v
			case "reqMod":
				w.Mods = append(w.Mods, v)
			case "reqResult":
				w.Result = v
			case "reqStart":
				w.Start = v
			}
		}
		if w.DN != "" && strings.HasSuffix(strings.ToLower(w.DN), strings.ToLower(base)) {
			writes = append(writes, w)
		}
	}
	slices.SortFunc(writes, func(a, b Write) int { return strings.Compare(a.Start, b.Start) })
	return writes, nil
}
