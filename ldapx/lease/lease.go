// Package lease is the leader lease of an active/passive pair of
// collabsync serve: one entry in a directory both hosts reach, changed
// only with the Assertion control (RFC 4528), so a change is a
// compare-and-swap on what the writer last read. No clock is compared
// across hosts: a standby takes the lease when the entry has not changed
// for the lease's duration by its own clock, and a holder counts its
// lease from the moment it sent the renewal, less a margin.
//
// The entry (objectClass csLease, configs/ldap/collabsync.schema):
//
//	csLeaseHolder      who holds it
//	csLeaseGeneration  raised by every change of holder: the fencing token
//	csLeaseRenewed     when the holder last renewed it (its clock; a version)
//	csLeaseSeconds     how long it lasts after a renewal; 0 when released
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/internal/ldapconn"
)

// Config says where the lease is and who this process is.
type Config struct {
	Server ldapconn.Settings
	DN     string
	Holder string
	TTL    time.Duration
}

// State is what the lease says now.
type State struct {
	Leader bool `json:"leader"`
	// Holder is who holds the lease, as last read ("" when none does).
	Holder     string    `json:"holder,omitempty"`
	Generation uint64    `json:"generation"`
	Since      time.Time `json:"since"`
	// Err is why the lease server could not be read or written, last time.
	Err string `json:"error,omitempty"`
}

// Lease campaigns for and holds the lease.
type Lease struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	state      State
	validUntil time.Time // while leader: when the lease may have lapsed for the others
	entry      entry     // as last read or written
}

// New returns a lease; Run campaigns.
func New(cfg Config, log *slog.Logger) *Lease {
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	return &Lease{cfg: cfg, log: log.With("lease", cfg.DN)}
}

// ErrNotHeld is the error of Held when this process does not hold the
// lease (or may no longer: its last renewal is too old).
var ErrNotHeld = errors.New("this process does not hold the HA lease")

// Held returns the lease's generation while this process holds it, by
// its own clock; after a pause (SIGSTOP, a frozen VM) longer than the
// lease it holds it no longer, before any goroutine has run.
func (l *Lease) Held() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.state.Leader || !time.Now().Before(l.validUntil) {
		return 0, fmt.Errorf("%w (lease %s)", ErrNotHeld, l.cfg.DN)
	}
	return l.state.Generation, nil
}

// State returns what the lease says now.
func (l *Lease) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// entry is the lease entry's values: all of them together are its
// version, asserted by every write.
type entry struct {
	exists     bool
	holder     string
	generation uint64
	renewed    string
	seconds    int
}

func (e entry) assertion() string {
	return fmt.Sprintf("(&(csLeaseGeneration=%d)(csLeaseRenewed=%s)(csLeaseSeconds=%d)(csLeaseHolder=%s))",
		e.generation, ldap.EscapeFilter(e.renewed), e.seconds, ldap.EscapeFilter(e.holder))
}

// margin is how much sooner than the others a holder takes its lease to
// end: the others start counting when they read the renewal, after it was
// sent; the margin is for clocks that run at different rates.
func (l *Lease) margin() time.Duration { return l.cfg.TTL / 5 }

// poll is how often a standby reads the entry, and the most a takeover
// comes after the lease's end.
func (l *Lease) poll() time.Duration { return min(time.Second, l.cfg.TTL/3) }

// Run campaigns for the lease and renews it while held, until ctx ends;
// then it releases the lease if held, so the other takes over at once.
// changed is called (from Run's goroutine) with each change of
// leadership, and with each new holder or error seen.
func (l *Lease) Run(ctx context.Context, changed func(State)) {
	settings := l.cfg.Server
	// A renewal that waits longer than a third of the lease is as good
	// as lost; 2 s at least, for a busy server (the lease's end is by the
	// clock, not by this wait: Held fails on time even while it lasts).
	settings.Timeout = duration.Duration(min(time.Duration(settings.Timeout), max(l.cfg.TTL/3, 2*time.Second)))
	var (
		conn *ldap.Conn
		done func()
		// seen is the entry as first read unchanged, and when.
		seen   entry
		seenAt time.Time
		last   State
	)
	closeConn := func() {
		if done != nil {
			done()
		}
		conn, done = nil, nil
	}
	defer closeConn()
	report := func() {
		s := l.State()
		if s.Leader != last.Leader || s.Holder != last.Holder || s.Generation != last.Generation || s.Err != last.Err {
			last = s
			changed(s)
		}
	}
	setErr := func(err error) {
		l.mu.Lock()
		l.state.Err = ""
		if err != nil {
			l.state.Err = err.Error()
		}
		l.mu.Unlock()
	}
	// failing: since when the server has not answered (zero: it does);
	// the failure is logged when it starts and every few minutes after.
	var failing, logged time.Time
	for {
		// A server that cannot be reached is tried again after a poll.
		wait := l.poll()
		err := func() error {
			if conn == nil {
				c, d, err := ldapconn.Dial(ctx, settings)
				if err != nil {
					return err
				}
				conn, done = c, d
			}
			if l.State().Leader {
				wait = l.cfg.TTL / 3
				return l.renew(conn)
			}
			wait = l.poll()
			e, err := l.read(conn)
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.state.Holder, l.state.Generation = e.holder, e.generation
			if e.seconds == 0 {
				l.state.Holder = ""
			}
			l.mu.Unlock()
			now := time.Now()
			if !e.exists || e != seen {
				seen, seenAt = e, now
			}
			switch {
			case !e.exists:
				return l.create(conn)
			case e.seconds == 0 || now.Sub(seenAt) >= time.Duration(e.seconds)*time.Second:
				return l.take(conn, e)
			}
			return nil
		}()
		if err != nil && ctx.Err() == nil {
			setErr(err)
			closeConn()
			if now := time.Now(); failing.IsZero() || now.Sub(logged) >= 5*time.Minute {
				if failing.IsZero() {
					failing = now
				}
				logged = now
				l.log.Warn("HA lease server", "err", err, "failing_since", failing)
			}
			if l.State().Leader && !time.Now().Before(l.validUntilNow()) {
				l.stepDown("the lease could not be renewed in time")
			}
		} else if err == nil {
			if !failing.IsZero() {
				l.log.Info("HA lease server answers again", "failed_for", time.Since(failing).Round(time.Second))
			}
			failing = time.Time{}
			setErr(nil)
		}
		report()
		if ctx.Err() != nil {
			l.release(settings)
			report()
			return
		}
		if l.State().Leader {
			// Renewed (or trying): step down on time even when the
			// server does not answer.
			wait = min(wait, time.Until(l.validUntilNow()))
		}
		select {
		case <-ctx.Done():
		case <-time.After(max(wait, 10*time.Millisecond)):
		}
		if l.State().Leader && !time.Now().Before(l.validUntilNow()) {
			l.stepDown("the lease was not renewed in time")
			report()
		}
	}
}

func (l *Lease) validUntilNow() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

func (l *Lease) stepDown(why string) {
	l.mu.Lock()
	l.state.Leader = false
	l.validUntil = time.Time{}
	l.mu.Unlock()
	l.log.Warn("stepping down: this process no longer leads", "why", why)
}

var attrs = []string{"csLeaseHolder", "csLeaseGeneration", "csLeaseRenewed", "csLeaseSeconds"}

// read reads the entry; exists is false when there is none.
func (l *Lease) read(c *ldap.Conn) (entry, error) {
	res, err := c.Search(ldap.NewSearchRequest(l.cfg.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", append([]string{"objectClass"}, attrs...), nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return entry{}, nil
	}
	if err != nil {
		return entry{}, fmt.Errorf("read %s: %w", l.cfg.DN, err)
	}
	if len(res.Entries) != 1 {
		return entry{}, fmt.Errorf("read %s: %d entries", l.cfg.DN, len(res.Entries))
	}
	le := res.Entries[0]
	e := entry{exists: true, holder: le.GetAttributeValue("csLeaseHolder"), renewed: le.GetAttributeValue("csLeaseRenewed")}
	gen, err1 := strconv.ParseUint(le.GetAttributeValue("csLeaseGeneration"), 10, 64)
	secs, err2 := strconv.Atoi(le.GetAttributeValue("csLeaseSeconds"))
	if err1 != nil || err2 != nil || e.holder == "" || e.renewed == "" {
		return entry{}, fmt.Errorf("%s is no lease (objectClass csLease with csLeaseHolder, csLeaseGeneration, csLeaseRenewed and csLeaseSeconds): "+
			"remove it, or name another entry in ha.lease_dn", l.cfg.DN)
	}
	e.generation, e.seconds = gen, secs
	return e, nil
}

// next is the entry this process writes to hold the lease at generation.
func (l *Lease) next(generation uint64, sent time.Time) entry {
	return entry{exists: true, holder: l.cfg.Holder, generation: generation,
		renewed: sent.UTC().Format("20060102150405.000Z"), seconds: int((l.cfg.TTL + time.Second - 1) / time.Second)}
}

func (e entry) modify(dn string, assert *ldapconn.Assertion) *ldap.ModifyRequest {
	m := ldap.NewModifyRequest(dn, []ldap.Control{assert})
	m.Replace("csLeaseHolder", []string{e.holder})
	m.Replace("csLeaseGeneration", []string{strconv.FormatUint(e.generation, 10)})
	m.Replace("csLeaseRenewed", []string{e.renewed})
	m.Replace("csLeaseSeconds", []string{strconv.Itoa(e.seconds)})
	return m
}

// lead records the lease as held from sent.
func (l *Lease) lead(e entry, sent time.Time) {
	l.mu.Lock()
	was := l.state.Leader
	l.entry = e
	l.state.Leader, l.state.Holder, l.state.Generation = true, e.holder, e.generation
	if !was {
		l.state.Since = sent
	}
	l.validUntil = sent.Add(time.Duration(e.seconds)*time.Second - l.margin())
	l.mu.Unlock()
	if !was {
		l.log.Info("this process leads", "generation", e.generation)
	}
}

// create makes the entry, held by this process at generation 1; another
// process that made it first wins.
func (l *Lease) create(c *ldap.Conn) error {
	sent := time.Now()
	e := l.next(1, sent)
	parsed, err := ldap.ParseDN(l.cfg.DN)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) != 1 || parsed.RDNs[0].Attributes[0].Type != "cn" {
		return fmt.Errorf("ha.lease_dn %s: want cn=<name>,<an existing entry>", l.cfg.DN)
	}
	a := ldap.NewAddRequest(l.cfg.DN, nil)
	a.Attribute("objectClass", []string{"top", "csLease"})
	a.Attribute("cn", []string{parsed.RDNs[0].Attributes[0].Value})
	a.Attribute("csLeaseHolder", []string{e.holder})
	a.Attribute("csLeaseGeneration", []string{"1"})
	a.Attribute("csLeaseRenewed", []string{e.renewed})
	a.Attribute("csLeaseSeconds", []string{strconv.Itoa(e.seconds)})
	a.Attribute("description", []string{"leader lease of collabsync serve: do not edit"})
	err = c.Add(a)
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists):
		return nil // the other was first: read next time
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		return fmt.Errorf("create %s: its parent does not exist: create it (the lease entry is made in it): %w", l.cfg.DN, err)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUndefinedAttributeType), ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation):
		return fmt.Errorf("create %s: the server lacks collabsync's schema (load configs/ldap/collabsync.ldif): %w", l.cfg.DN, err)
	case err != nil:
		return fmt.Errorf("create %s: %w", l.cfg.DN, err)
	}
	l.lead(e, sent)
	return nil
}

// take takes the lapsed or released lease seen as e, at the next
// generation; another process that took it first wins.
func (l *Lease) take(c *ldap.Conn, seen entry) error {
	assert, err := ldapconn.NewAssertion(seen.assertion())
	if err != nil {
		return err
	}
	sent := time.Now()
	e := l.next(seen.generation+1, sent)
	err = c.Modify(e.modify(l.cfg.DN, assert))
	switch {
	case ldapconn.AssertionFailed(err):
		return nil // changed since read: renewed, or taken by the other
	case err != nil:
		return fmt.Errorf("take %s: %w", l.cfg.DN, err)
	}
	if seen.seconds == 0 {
		l.log.Info("taking over the released lease", "from", seen.holder)
	} else {
		l.log.Warn("taking over the lapsed lease", "from", seen.holder, "generation", seen.generation)
	}
	l.lead(e, sent)
	return nil
}

// renew renews the held lease; one changed by another since this
// process wrote it is lost.
func (l *Lease) renew(c *ldap.Conn) error {
	l.mu.Lock()
	held := l.entry
	l.mu.Unlock()
	for attempt := 0; ; attempt++ {
		assert, err := ldapconn.NewAssertion(held.assertion())
		if err != nil {
			return err
		}
		sent := time.Now()
		e := l.next(held.generation, sent)
		err = c.Modify(e.modify(l.cfg.DN, assert))
		switch {
		case err == nil:
			l.lead(e, sent)
			return nil
		case !ldapconn.AssertionFailed(err):
			return fmt.Errorf("renew %s: %w", l.cfg.DN, err)
		}
		// A renewal whose answer was lost wrote the entry anyway: still
		// this process's at its generation.
		now, rerr := l.read(c)
		if rerr != nil {
			return rerr
		}
		if attempt > 0 || now.holder != held.holder || now.generation != held.generation || now.seconds == 0 {
			l.stepDown(fmt.Sprintf("the lease was taken: held by %s at generation %d", now.holder, now.generation))
			return nil
		}
		held = now
	}
}

// release hands the lease over at once: its duration set to 0.
func (l *Lease) release(settings ldapconn.Settings) {
	if !l.State().Leader {
		return
	}
	l.mu.Lock()
	held := l.entry
	l.mu.Unlock()
	l.stepDown("stopping")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, done, err := ldapconn.Dial(ctx, settings)
	if err != nil {
		l.log.Warn("the lease is not released: the other process takes over when it lapses", "err", err)
		return
	}
	defer done()
	assert, err := ldapconn.NewAssertion(held.assertion())
	if err != nil {
		return
	}
	e := l.next(held.generation, time.Now())
	e.seconds = 0
	if err := c.Modify(e.modify(l.cfg.DN, assert)); err != nil {
		l.log.Warn("the lease is not released: the other process takes over when it lapses", "err", err)
		return
	}
	l.log.Info("lease released")
}

// Holder reads who holds the lease: the holder's name and generation,
// and whether it is held (not released; a holder that died holds it
// until the other takes it). ok is false when there is no lease entry.
func Holder(ctx context.Context, cfg Config) (holder string, generation uint64, held bool, err error) {
	c, done, err := ldapconn.Dial(ctx, cfg.Server)
	if err != nil {
		return "", 0, false, err
	}
	defer done()
	l := &Lease{cfg: cfg}
	e, err := l.read(c)
	if err != nil || !e.exists {
		return "", 0, false, err
	}
	return e.holder, e.generation, e.seconds > 0, nil
}
