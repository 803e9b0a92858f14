// Package ldapconn is the one way collabsync opens a connection that
// writes to a directory (the ldap target's published subtree, the HA
// lease): a URL, TLS verified by default, a bind from a password file,
// and the Assertion control (RFC 4528) that makes a write conditional.
package ldapconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/internal/secret"
)

// Settings say where to write and as whom; embedded (inline) in the
// settings of what writes.
type Settings struct {
	URL string `yaml:"url"`
	// TLS: starttls (the default for ldap://), none (plain text, a server
	// on this host only); ldaps:// URLs are TLS from the start.
	TLS          string            `yaml:"tls"`
	CAFile       string            `yaml:"ca_file"`
	BindDN       string            `yaml:"bind_dn"`
	PasswordFile string            `yaml:"password_file"`
	Timeout      duration.Duration `yaml:"timeout"`
}

// Defaults are the settings' defaults.
func Defaults() Settings {
	return Settings{TLS: "starttls", Timeout: duration.Duration(30 * time.Second)}
}

// Problem is one setting that is wrong: its key and why.
type Problem struct{ Key, Msg string }

// Validate checks the settings; files are read (a password file that
// cannot be read is a problem now, not at the first write).
func (s *Settings) Validate() []Problem {
	var probs []Problem
	bad := func(key, format string, args ...any) {
		probs = append(probs, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	u, err := url.Parse(s.URL)
	switch {
	case err != nil:
		bad("url", "%v", err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		bad("url", "want ldap:// or ldaps://, got %q", s.URL)
	}
	switch s.TLS {
	case "starttls", "none":
	default:
		bad("tls", "want starttls or none, got %q", s.TLS)
	}
	if s.CAFile != "" {
		if _, err := os.ReadFile(s.CAFile); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	if s.BindDN == "" {
		bad("bind_dn", "is required (a DN that may write there)")
	} else if _, err := ldap.ParseDN(s.BindDN); err != nil {
		bad("bind_dn", "%v", err)
	}
	if s.PasswordFile == "" {
		bad("password_file", "is required")
	} else if _, err := secret.Read(s.PasswordFile); err != nil {
		bad("password_file", "%v", err)
	}
	if s.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	return probs
}

// HostPort is a URL's host and port, the scheme's default port filled in.
func HostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// Dial connects, secures and binds; the connection is closed when ctx
// ends (go-ldap's calls take no context) or when done is called.
func Dial(ctx context.Context, s Settings) (c *ldap.Conn, done func(), err error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("ca_file %s: no certificate", s.CAFile)
		}
	}
	timeout := time.Duration(s.Timeout)
	conn, err := ldap.DialURL(s.URL, ldap.DialWithTLSConfig(tc), ldap.DialWithDialer(&net.Dialer{Timeout: timeout}))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.URL, err)
	}
	conn.SetTimeout(timeout)
	// The closures hold conn, never c: an error return sets c to nil while
	// ctx may be ending (a nil Close and a data race, seen under -race).
	c = conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	done = func() { stop(); conn.Close() }
	if u.Scheme == "ldap" && s.TLS == "starttls" {
		if err := c.StartTLS(tc); err != nil {
			done()
			return nil, nil, fmt.Errorf("%s: StartTLS: %w", s.URL, err)
		}
	}
	pw, err := secret.Read(s.PasswordFile)
	if err != nil {
		done()
		return nil, nil, err
	}
	if err := c.Bind(s.BindDN, pw); err != nil {
		done()
		return nil, nil, fmt.Errorf("%s: bind as %s: %w", s.URL, s.BindDN, err)
	}
	return c, done, nil
}

// AssertionOID is the Assertion control's (RFC 4528).
const AssertionOID = "1.3.6.1.1.12"

// Assertion is the Assertion control: the operation it is sent with is
// carried out only if the target entry matches the filter, else it fails
// with assertionFailed (122) and changes nothing. Critical: a server
// that does not know the control refuses the operation rather than
// carrying it out unconditionally.
type Assertion struct {
	Filter string
	// packet is the compiled filter.
	packet *ber.Packet
}

var _ ldap.Control = (*Assertion)(nil)

// NewAssertion compiles an RFC 4515 filter into the control.
func NewAssertion(filter string) (*Assertion, error) {
	p, err := ldap.CompileFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("assertion %s: %w", filter, err)
	}
	return &Assertion{Filter: filter, packet: p}, nil
}

// GetControlType implements ldap.Control.
func (a *Assertion) GetControlType() string { return AssertionOID }

// Encode implements ldap.Control: the control's value is the filter's
// BER encoding.
func (a *Assertion) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, AssertionOID, "Control Type"))
	p.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "Criticality"))
	v := ber.Encode(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, nil, "Control Value")
	v.AppendChild(a.packet)
	p.AppendChild(v)
	return p
}

// String implements ldap.Control.
func (a *Assertion) String() string {
	return fmt.Sprintf("Control Type: %s (Assertion)  Criticality: true  Filter: %s", AssertionOID, a.Filter)
}

// AssertionFailed says whether err is a write refused because its
// assertion did not hold.
func AssertionFailed(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode == ldap.LDAPResultAssertionFailed
}
