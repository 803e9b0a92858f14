package slapd

import (
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/go-ldap/ldap/v3"
)

// StartT starts a server for a test and stops it when the test ends. Without
// slapd installed it skips, or fails when CI is set.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	testharness.Require(t, "slapd", "slapadd", "ldapmodify")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// RootConn is a connection bound as the root DN, closed with the test.
func (s *Server) RootConn(t testing.TB) *ldap.Conn {
	t.Helper()
	conn, err := ldap.DialURL(s.URI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Bind(s.RootDN, s.RootPassword); err != nil {
		t.Fatal(err)
	}
	return conn
}
