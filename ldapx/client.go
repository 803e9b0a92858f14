// Package ldapx is all of collabsync's LDAP: dialing (ldap, ldaps, ldapi),
// StartTLS, binding, failover across URIs, streaming paged search, escaping,
// and mapping entries into the directory model.
package ldapx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/secret"
)

// Conn is the narrow part of a connection that collabsync uses (Connection
// and go-ldap's *ldap.Conn both have it), so tests can
// put a fault-injecting fake in its place.
type Conn interface {
	SearchAsync(ctx context.Context, req *ldap.SearchRequest, bufferSize int) ldap.Response
	Close() error
}

// Client connects and binds to the first reachable URI of the configuration.
type Client struct {
	cfg Config
	log *slog.Logger
	// modeChecked: the password file's mode is checked once per client.
	modeChecked sync.Once
}

// NewClient returns a client for cfg. It does not connect.
func NewClient(cfg Config, log *slog.Logger) *Client {
	return &Client{cfg: cfg, log: log}
}

// Connect tries each URI in order and returns the first connection that
// dials, upgrades to TLS if configured, and binds. The error lists why every
// URI failed.
func (c *Client) Connect(ctx context.Context) (*Connection, error) {
	var errs []error
	for _, uri := range c.cfg.URIs {
		conn, err := c.connect(ctx, uri)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ldap %s: %w", uri, ctx.Err())
		}
		c.log.Warn("LDAP server unusable, trying the next", "uri", uri, "err", err)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no LDAP server usable: %w", errors.Join(errs...))
}

func (c *Client) connect(ctx context.Context, uri string) (*Connection, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(c.cfg.Timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dialer := &net.Dialer{}
	var nc net.Conn
	switch u.Scheme {
	case "ldapi":
		path := u.Host
		if path == "" {
			path = "/var/run/slapd/ldapi"
		}
		nc, err = dialer.DialContext(ctx, "unix", path)
	case "ldap":
		nc, err = dialer.DialContext(ctx, "tcp", hostPort(u.Host, "389"))
	case "ldaps":
		var tc *tls.Config
		if tc, err = c.tlsConfig(u.Hostname()); err == nil {
			td := &tls.Dialer{NetDialer: dialer, Config: tc}
			nc, err = td.DialContext(ctx, "tcp", hostPort(u.Host, "636"))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ldap %s: dial: %w", uri, tlsHint(err))
	}
	conn := newConnection(nc)
	conn.uri = uri
	if err := c.secureAndBind(ctx, conn, u.Scheme, u.Hostname()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ldap %s: %w", uri, err)
	}
	conn.start()
	return conn, nil
}

func (c *Client) secureAndBind(ctx context.Context, conn *Connection, scheme, host string) error {
	if c.cfg.TLS.StartTLS && scheme == "ldap" {
		tc, err := c.tlsConfig(host)
		if err != nil {
			return err
		}
		if err := conn.StartTLS(ctx, tc); err != nil {
			return fmt.Errorf("StartTLS: %w", tlsHint(err))
		}
	}
	b := c.cfg.Bind
	switch b.Method {
	case BindSimple:
		c.modeChecked.Do(func() {
			if fi, err := os.Stat(b.PasswordFile); err == nil && fi.Mode().Perm()&0o007 != 0 {
				c.log.Warn("the LDAP password file is readable by every user of this machine; make it 0600 or 0640",
					"password_file", b.PasswordFile, "mode", fi.Mode().Perm().String())
			}
		})
		pw, err := secret.Read(b.PasswordFile)
		if err != nil {
			return err
		}
		if err := conn.Bind(ctx, b.DN, pw); err != nil {
			return fmt.Errorf("bind as %q: %w", b.DN, err)
		}
	case BindExternal:
		if err := conn.ExternalBind(ctx); err != nil {
			return fmt.Errorf("SASL EXTERNAL bind: %w", err)
		}
	case BindAnonymous:
	default:
		return fmt.Errorf("unknown bind method %q", b.Method)
	}
	return nil
}

// tlsConfig verifies the server against ca_file (or the system roots).
func (c *Client) tlsConfig(host string) (*tls.Config, error) {
	t := c.cfg.TLS
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit operator opt-out, logged below
	}
	if t.ServerName != "" {
		tc.ServerName = t.ServerName
	}
	if t.InsecureSkipVerify {
		c.log.Warn("TLS certificate verification is disabled by ldap.tls.insecure_skip_verify")
	}
	if t.CAFile != "" {
		pool, err := ReadCAFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// tlsHint explains a certificate that names its host only in its common
// name: Go checks subjectAltName alone (Samba's self-made host certificate
// is such a one).
func tlsHint(err error) error {
	var host x509.HostnameError
	if errors.As(err, &host) && host.Certificate != nil && len(host.Certificate.DNSNames) == 0 && len(host.Certificate.IPAddresses) == 0 {
		return fmt.Errorf("%w: the server's certificate names no host or address in subjectAltName, only a common name (%q), "+
			"which Go does not check: give the server a certificate with its name or address in subjectAltName "+
			"(Samba's self-made one has none; docs/SERVERS.md)", err, host.Certificate.Subject.CommonName)
	}
	return err
}

// pause waits d before the next attempt to connect; after a failure to
// connect at all, it ends early once a configured server answers a TCP
// connection again (tried every second), so that the first reconnect
// after an outage does not wait out a backoff that grew during it. It
// returns false when ctx ends.
func (c *Client) pause(ctx context.Context, d time.Duration, unreachable bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var probe <-chan time.Time
	if unreachable {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		probe = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-probe:
			if c.answers(ctx) {
				return true
			}
		}
	}
}

// answers reports whether some configured server accepts a connection.
func (c *Client) answers(ctx context.Context) bool {
	for _, uri := range c.cfg.URIs {
		u, err := ParseURI(uri)
		if err != nil {
			continue
		}
		network, addr := "tcp", hostPort(u.Host, "389")
		switch u.Scheme {
		case "ldaps":
			addr = hostPort(u.Host, "636")
		case "ldapi":
			network, addr = "unix", u.Host
			if addr == "" {
				addr = "/var/run/slapd/ldapi"
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		nc, err := (&net.Dialer{}).DialContext(dctx, network, addr)
		cancel()
		if err == nil {
			nc.Close()
			return true
		}
	}
	return false
}

func hostPort(host, defaultPort string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), defaultPort)
}
