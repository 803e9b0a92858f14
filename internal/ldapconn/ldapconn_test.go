package ldapconn

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/duration"
)

// TestDialFailsWhileContextEnds: a bind that fails while the caller's
// context ends at the same moment closes the connection once, and never
// a nil one (the closure once read the result Dial was setting to nil:
// a panic and a data race, seen in CI under -race by TestLeaseServerDown).
func TestDialFailsWhileContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a server that hangs up on everyone: every bind fails
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := Settings{URL: "ldap://" + ln.Addr().String(), TLS: "none", BindDN: "cn=x", PasswordFile: pw, Timeout: duration.Duration(time.Second)}
	for i := range 300 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Duration(i%7) * 50 * time.Microsecond)
			cancel()
		}()
		if c, done, err := Dial(ctx, s); err == nil {
			done()
			t.Fatalf("round %d: bound to a server that hangs up (%v)", i, c)
		}
		cancel()
	}
}
