package slapd

import (
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
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
