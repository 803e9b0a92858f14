package dirsrv

import (
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
)

// StartT starts a server for a test and stops it when the test ends.
// Without 389-ds installed it skips, or fails when CI is set.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	testharness.Require(t, "dscreate", "ns-slapd", "ldapmodify")
	testharness.RequireRoot(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("start 389-ds: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
