// Package postfix runs a throwaway Postfix for tests: SMTP on a loopback
// port, every mail for example.org delivered to a Maildir under one
// directory, nothing relayed (the recipe in ../shared/COMPONENTS.md). It
// needs root (postfix -c DIR) and touches nothing under /etc/postfix.
package postfix

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Domain is the domain the server delivers when a test names none.
const Domain = "example.org"

// Server is a running Postfix.
type Server struct {
	Port    int
	dir     string
	running bool
}

// StartT starts Postfix for a test, delivering mail for domains (none:
// Domain), and stops it when the test ends. Without Postfix it skips, or
// fails when CI is set.
func StartT(t testing.TB, domains ...string) *Server {
	t.Helper()
	return StartTLST(t, nil, domains...)
}

// StartTLST is StartT with STARTTLS offered under the certificate
// certs (nil: none).
func StartTLST(t testing.TB, certs *testharness.CertFiles, domains ...string) *Server {
	t.Helper()
	testharness.Require(t, "postfix")
	testharness.RequireRoot(t)
	dir := t.TempDir()
	s, err := Start(dir, certs, domains...)
	if err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	t.Cleanup(func() {
		if !s.running {
			return // a test stopped it
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop postfix: %v", err)
		}
	})
	return s
}

const master = `%d inet n - n - - smtpd
tlsmgr unix - - n 1000? 1 tlsmgr
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`

// Start writes a configuration under dir and starts Postfix on a free
// loopback port, delivering mail for domains (none: Domain), offering
// STARTTLS with certs unless nil.
func Start(dir string, certs *testharness.CertFiles, domains ...string) (*Server, error) {
	if len(domains) == 0 {
		domains = []string{Domain}
	}
	ports, err := testharness.FreePorts(1)
	if err != nil {
		return nil, err
	}
	s := &Server{Port: ports[0], dir: dir}
	// The postfix user walks to its queue: every directory above it must
	// let it through.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir() {
			if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
				return nil, err
			}
		}
	}
	for _, sub := range []string{"etc", "queue", "data", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command("chown", "postfix:postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown data: %v: %s", err, out)
	}
	if err := os.Chown(filepath.Join(dir, "mail"), 65534, 65534); err != nil {
		return nil, err
	}
	mainCf := strings.ReplaceAll(`compatibility_level = 3.6
queue_directory = $B/queue
data_directory = $B/data
myhostname = mail.example.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = $DOMAINS
virtual_mailbox_base = $B/mail
virtual_mailbox_maps = texthash:$B/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
relayhost =
default_transport = error:outbound mail disabled
relay_transport = error:outbound mail disabled
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_relay_restrictions = reject_unauth_destination
smtpd_tls_security_level = none
smtputf8_enable = no
maillog_file = $B/maillog
maillog_file_prefixes = $B
`, "$B", dir)
	mainCf = strings.ReplaceAll(mainCf, "$DOMAINS", strings.Join(domains, ", "))
	if certs != nil {
		mainCf = strings.Replace(mainCf, "smtpd_tls_security_level = none\n", fmt.Sprintf("smtpd_tls_security_level = may\n"+
			"smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\nsmtpd_tls_received_header = yes\n", certs.Cert, certs.Key), 1)
	}
	var vmailbox strings.Builder
	for _, d := range domains {
		fmt.Fprintf(&vmailbox, "@%s all/\n", d)
	}
	files := map[string]string{
		"main.cf":   mainCf,
		"master.cf": fmt.Sprintf(master, s.Port),
		// Every mail in one Maildir (a catch-all cannot name a Maildir
		// per user); Mails tells them by Delivered-To.
		"vmailbox": vmailbox.String(),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start starts the stopped server again (its queue kept).
func (s *Server) Start() error {
	if out, err := exec.Command("postfix", "-c", filepath.Join(s.dir, "etc"), "start").CombinedOutput(); err != nil {
		return fmt.Errorf("postfix start: %v: %s", err, out)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
		if err == nil {
			c.Close()
			s.running = true
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postfix: port %d not accepting after 15 s: %v; log:\n%s", s.Port, err, s.Log())
		}
	}
}

// Stop stops the server.
func (s *Server) Stop() error {
	if out, err := exec.Command("postfix", "-c", filepath.Join(s.dir, "etc"), "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("postfix stop: %v: %s", err, out)
	}
	s.running = false
	// The master's children are gone ≈20 ms later; wait for the port.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.Port))
		if err != nil {
			return nil
		}
		c.Close()
	}
	return fmt.Errorf("postfix: port %d still accepting 10 s after stop", s.Port)
}

// Log is Postfix's log.
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "maillog"))
	return string(data)
}

// Mail is one delivered message.
type Mail struct {
	To, Subject, MessageID string
	Body                   string // decoded
	Raw                    string
}

// Mails returns every message delivered so far, in delivery order.
func (s *Server) Mails() ([]Mail, error) {
	root := filepath.Join(s.dir, "mail", "all", "new")
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		files = append(files, file{e.Name(), fi.ModTime()})
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].name < files[j].name
	})
	var out []Mail
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f.name))
		if err != nil {
			return nil, err
		}
		msg, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		var dec mime.WordDecoder
		subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			return nil, fmt.Errorf("%s: subject: %w", f.name, err)
		}
		var body io.Reader = msg.Body
		switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			body = quotedprintable.NewReader(body)
		case "base64":
			body = base64.NewDecoder(base64.StdEncoding, body)
		}
		text, err := io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("%s: body: %w", f.name, err)
		}
		m := Mail{To: msg.Header.Get("Delivered-To"), Subject: subject, MessageID: msg.Header.Get("Message-Id"),
			Body: strings.ReplaceAll(string(text), "\r\n", "\n"), Raw: string(data)}
		out = append(out, m)
	}
	return out, nil
}
