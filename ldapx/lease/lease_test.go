package lease

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/internal/ldapconn"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
	"github.com/collabsync/collabsync/internal/testharness/tcpproxy"
)

const leaseDN = "cn=serve,dc=example,dc=org"

func startSlapd(t *testing.T) *slapd.Server {
	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	return slapd.StartT(t, slapd.Options{LDIF: []string{"../../configs/demo/directory.ldif"}, Schemas: []string{schema}, NoSyncprov: true})
}

// contender is one process campaigning, with what it saw.
type contender struct {
	l      *Lease
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	states []State
	// led and lost are when it started and stopped leading.
	led, lost []time.Time
}

func campaign(t *testing.T, url, rootDN, pwFile, holder string, ttl time.Duration) *contender {
	t.Helper()
	s := ldapconn.Defaults()
	s.URL, s.TLS, s.BindDN, s.PasswordFile, s.Timeout = url, "none", rootDN, pwFile, duration.Duration(5*time.Second)
	c := &contender{l: New(Config{Server: s, DN: leaseDN, Holder: holder, TTL: ttl}, slog.New(slog.NewTextHandler(io.Discard, nil))), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		leading := false
		c.l.Run(ctx, func(s State) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.states = append(c.states, s)
			if s.Leader != leading {
				leading = s.Leader
				if leading {
					c.led = append(c.led, time.Now())
				} else {
					c.lost = append(c.lost, time.Now())
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func (c *contender) stop() { c.cancel(); <-c.done }

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func leads(c *contender) bool { _, err := c.l.Held(); return err == nil }

// TestLeaseHandover: against real slapd, one of two contenders leads;
// released at stop, the other leads within a poll; a leader whose
// server stops answering (a partition, a pause) holds the lease no more
// before the other takes it — never two at once — and the generation
// rises with every change of holder.
func TestLeaseHandover(t *testing.T) {
	s := startSlapd(t)
	const ttl = 3 * time.Second
	proxyA := tcpproxy.StartT(t, strings.TrimPrefix(s.URI, "ldap://"))
	a := campaign(t, "ldap://"+proxyA.Addr, s.RootDN, s.RootPWFile, "host-a", ttl)
	waitFor(t, "a leads", 5*time.Second, func() bool { return leads(a) })
	b := campaign(t, s.URI, s.RootDN, s.RootPWFile, "host-b", ttl)
	time.Sleep(ttl + time.Second) // a renews: b never takes it
	if leads(b) || !leads(a) {
		t.Fatalf("a renews every ttl/3, yet a leads %v, b leads %v", leads(a), leads(b))
	}
	genA, _ := a.l.Held()
	if st := b.l.State(); st.Holder != "host-a" || st.Generation != genA {
		t.Errorf("b sees %+v, want host-a at generation %d", st, genA)
	}

	// Partition a from the server: a stops holding it before b takes it.
	proxyA.Freeze()
	frozeAt := time.Now()
	took := waitFor(t, "b takes the lapsed lease", ttl+3*time.Second, func() bool { return leads(b) })
	t.Logf("b took over %v after a's server stopped answering (ttl %v)", took, ttl)
	if took > ttl+2*time.Second {
		t.Errorf("takeover took %v, want at most ttl+2s", took)
	}
	a.mu.Lock()
	lostA := a.lost
	a.mu.Unlock()
	b.mu.Lock()
	ledB := b.led[0]
	b.mu.Unlock()
	if len(lostA) == 0 || !lostA[0].Before(ledB) {
		t.Fatalf("a stopped leading at %v, b led at %v (partition at %v): two leaders at once", lostA, ledB, frozeAt)
	}
	genB, _ := b.l.Held()
	if genB != genA+1 {
		t.Errorf("b leads at generation %d, want %d", genB, genA+1)
	}
	// a comes back: its renewal's assertion fails; it stays standby.
	proxyA.Thaw()
	time.Sleep(ttl)
	if leads(a) || !leads(b) {
		t.Fatalf("after the partition a leads %v, b leads %v", leads(a), leads(b))
	}

	// b stops: it releases, a takes over within a poll.
	b.stop()
	// At once (≈20 ms here); a machine under load may fail a read or two.
	took = waitFor(t, "a takes the released lease", ttl+2*time.Second, func() bool { return leads(a) })
	t.Logf("a took the released lease over in %v", took)
	if gen, _ := a.l.Held(); gen != genB+1 {
		t.Errorf("a leads at generation %d, want %d", gen, genB+1)
	}
}

// TestLeaseErrors: a lease entry that is not one, or whose parent is
// missing, is an error naming it; nobody leads.
func TestLeaseErrors(t *testing.T) {
	s := startSlapd(t)
	if err := s.Add(context.Background(), "dn: cn=taken,dc=example,dc=org\nobjectClass: organizationalRole\ncn: taken\n"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dn, want string }{
		{"cn=taken,dc=example,dc=org", "cn=taken,dc=example,dc=org is no lease"},
		{"cn=serve,ou=missing,dc=example,dc=org", "its parent does not exist"},
	} {
		t.Run(tc.dn, func(t *testing.T) {
			st := ldapconn.Defaults()
			st.URL, st.TLS, st.BindDN, st.PasswordFile = s.URI, "none", s.RootDN, s.RootPWFile
			l := New(Config{Server: st, DN: tc.dn, Holder: "h", TTL: 3 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			var seen []State
			l.Run(ctx, func(s State) { seen = append(seen, s) })
			if len(seen) == 0 || !strings.Contains(seen[0].Err, tc.want) {
				t.Errorf("states %+v, want an error with %q", seen, tc.want)
			}
			if _, err := l.Held(); !errors.Is(err, ErrNotHeld) {
				t.Errorf("Held: %v", err)
			}
		})
	}
}

// TestLeaseServerDown: a lease server that takes connections and drops
// them is tried once a poll, not in a loop, and said once in the log
// (again every 5 minutes while it lasts).
func TestLeaseServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("x\n"), 0o600)
	st := ldapconn.Defaults()
	st.URL, st.TLS, st.BindDN, st.PasswordFile = "ldap://"+ln.Addr().String(), "none", "cn=x,dc=example,dc=org", pw
	var log bytes.Buffer
	l := New(Config{Server: st, DN: leaseDN, Holder: "h", TTL: 3 * time.Second}, slog.New(slog.NewTextHandler(&log, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	var last State
	l.Run(ctx, func(s State) { last = s })
	if n := accepts.Load(); n < 2 || n > 4 {
		t.Errorf("%d connections in 2.5 s, want one a second", n)
	}
	if n := strings.Count(log.String(), "HA lease server"); n != 1 {
		t.Errorf("the failure logged %d times:\n%s", n, log.String())
	}
	if last.Err == "" || last.Leader {
		t.Errorf("state %+v", last)
	}
}
