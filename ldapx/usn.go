package ldapx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// controlShowDeleted makes Active Directory return deleted objects
// (tombstones), so a poll learns what was deleted since the last one.
const controlShowDeleted = "1.2.840.113556.1.4.417"

// USNWatcher keeps a Model current on Active Directory, which offers no
// syncrepl. A full read builds the model, keyed by objectGUID; then every
// interval it reads again only the entries whose uSNChanged passed the
// domain controller's highestCommittedUSN at the last poll, and removes
// the objects deleted (or moved out of a search) since; the entries that
// name one renamed or deleted are read again (AD rewrites their member
// values without a uSNChanged of theirs). Deletions are the tombstones
// the bind user may read, or else a listing of the GUIDs every
// deletionScan. A poll costs reads in proportion to the changes, not to
// the directory. The position is kept
// as the streams' cookies ("<DC>#<USN>"): a restart resumes from it, and
// another domain controller (USNs are per DC) means a full read.
type USNWatcher struct {
	client       *Client
	cfg          Config
	log          *slog.Logger
	events       WatchEvents
	interval     time.Duration
	deletionScan time.Duration
	warnedScan   bool
}

// NewUSNWatcher returns a watcher polling every interval, and listing
// the GUIDs every deletionScan when the bind user may not read the
// deleted objects.
func NewUSNWatcher(cfg Config, log *slog.Logger, events WatchEvents, interval, deletionScan time.Duration) *USNWatcher {
	return &USNWatcher{client: NewClient(cfg, log), cfg: cfg, log: log, events: events, interval: interval, deletionScan: deletionScan}
}

// Run keeps m current until ctx ends, reconnecting with backoff.
func (w *USNWatcher) Run(ctx context.Context, m *Model) {
	const minBackoff, maxBackoff = time.Second, time.Minute
	backoff := minBackoff
	for {
		conn, err := w.client.Connect(ctx)
		unreachable := err != nil
		if err == nil {
			w.events.Connected(true)
			start := time.Now()
			err = w.session(ctx, conn, m)
			conn.Close()
			m.down()
			w.events.Connected(false)
			if time.Since(start) > 30*time.Second {
				backoff = minBackoff // it had been working: retry soon (a search failing at once backs off)
			}
		} else {
			w.events.ConnectFailed(err)
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		w.log.Warn("directory change polling (uSNChanged) interrupted; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		if !w.client.pause(ctx, wait, unreachable) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// rootDSE reads where the domain controller is: who it is and its highest
// committed USN.
func rootDSE(ctx context.Context, conn *Connection) (dc, namingContext string, usn int64, err error) {
	req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)",
		[]string{"dsServiceName", "defaultNamingContext", "highestCommittedUSN"}, nil)
	resp := conn.SearchAsync(ctx, req, 1)
	var e *ldap.Entry
	for resp.Next() {
		if got := resp.Entry(); got != nil {
			e = got
		}
	}
	err = resp.Err()
	if err == nil && e == nil {
		err = errors.New("no root DSE")
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return "", "", 0, fmt.Errorf("read the root DSE: %w", err)
	}
	usn, err = strconv.ParseInt(e.GetAttributeValue("highestCommittedUSN"), 10, 64)
	if err != nil {
		return "", "", 0, fmt.Errorf("the root DSE has no highestCommittedUSN: this is not Active Directory (set ldap.schema)")
	}
	return e.GetAttributeValue("dsServiceName"), e.GetAttributeValue("defaultNamingContext"), usn, nil
}

// position is a poll's place: the domain controller and its USN.
func position(dc string, usn int64) []byte { return []byte(dc + "#" + strconv.FormatInt(usn, 10)) }

func parsePosition(cookie []byte) (dc string, usn int64, ok bool) {
	i := strings.LastIndexByte(string(cookie), '#')
	if i < 0 {
		return "", 0, false
	}
	usn, err := strconv.ParseInt(string(cookie[i+1:]), 10, 64)
	return string(cookie[:i]), usn, err == nil
}

func (w *USNWatcher) session(ctx context.Context, conn *Connection, m *Model) error {
	dc, nc, usn, err := rootDSE(ctx, conn)
	if err != nil {
		return err
	}
	searches := streams(w.cfg)
	// Deletions: the tombstones when the bind user may read them (each
	// poll sees the deletions since the last), else a scan of the GUIDs
	// every deletion_scan.
	tombstones := tombstonesReadable(ctx, conn, nc, uint32(w.cfg.PageSize))
	if tombstones {
		w.events.Deletions("tombstones", w.interval)
	} else {
		w.events.Deletions("scan", w.deletionScan+w.interval)
		if !w.warnedScan {
			w.warnedScan = true
			w.log.Warn("the bind account may not read deleted objects (CN=Deleted Objects): deletions are found by listing the users' and groups' GUIDs "+
				"every serve.deletion_scan; grant it List Contents and Read Property there for deletions within a poll (docs/SERVERS.md)",
				"deletion_scan", w.deletionScan)
		}
	}
	// Resume when every stream was last polled at this DC; else read whole.
	from, resumed := usn, true
	for name := range searches {
		cdc, cusn, ok := parsePosition(m.cookie(name))
		if !ok || cdc != dc || cusn > usn { // another DC, or this one restored from a backup
			resumed = false
			break
		}
		from = min(from, cusn)
	}
	if !resumed {
		if err := w.fullRead(ctx, conn, m, searches); err != nil {
			return err
		}
		from = usn
		for name := range searches {
			m.saveCookie(name, position(dc, usn))
		}
	} else {
		for name := range searches {
			m.beginRefresh(name, true)
		}
		err := w.poll(ctx, conn, m, searches, nc, from)
		if err == nil && !tombstones {
			// Deletions while serve was down are no tombstone it may read.
			err = w.sweep(ctx, conn, m, searches)
		}
		if err != nil {
			return err
		}
		for name, search := range searches {
			if err := m.endRefresh(name); err != nil {
				if errors.Is(err, errNoEntries) {
					// The next try reads whole (see Watcher.live).
					for other := range searches {
						m.dropCookie(other)
					}
					err = refusedEmpty(w.events, name, search, true)
				}
				return err
			}
			m.saveCookie(name, position(dc, usn))
			w.events.Live(string(name), true)
		}
		from = usn
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	var scan <-chan time.Time
	if !tombstones {
		st := time.NewTicker(w.deletionScan)
		defer st.Stop()
		scan = st.C
	}
	refresh := m.refreshRequired()
	for {
		sweep := false
		select {
		case <-ctx.Done():
			return nil
		case <-refresh:
			// The full reconcile found the model wrong; its cookies are gone.
			return fmt.Errorf("%w: the live model differed from a full read", errCookieRejected)
		case <-t.C:
		case <-scan:
			sweep = true
		}
		cdc, now, err := func() (string, int64, error) { dc, _, usn, err := rootDSE(ctx, conn); return dc, usn, err }()
		if err != nil {
			return err
		}
		if cdc != dc || now < from {
			return fmt.Errorf("the domain controller changed (%s, USN %d, was %s, %d): reading the directory whole", cdc, now, dc, from)
		}
		if now != from {
			if err := w.poll(ctx, conn, m, searches, nc, from); err != nil {
				return err
			}
			from = now
			for name := range searches {
				m.saveCookie(name, position(dc, now))
			}
		}
		if sweep {
			if err := w.sweep(ctx, conn, m, searches); err != nil {
				return err
			}
		}
	}
}

// wellKnownDeletedObjects is the GUID that names a domain's Deleted
// Objects container (<WKGUID=...,<domain>>).
const wellKnownDeletedObjects = "18e2ea80684f11d2b9aa00c04f79f805"

// tombstonesReadable reports whether the bind user may see deleted
// objects: AD and Samba answer a user who may not with an empty result,
// never an error (and show it the Deleted Objects container itself), so
// a poll cannot tell "none deleted" from "not allowed". A tombstone seen
// in the container says it may; a domain where nothing was ever deleted
// looks the same as no rights, and is scanned: slower, never wrong.
func tombstonesReadable(ctx context.Context, conn *Connection, nc string, pageSize uint32) bool {
	req := ldap.NewSearchRequest("<WKGUID="+wellKnownDeletedObjects+","+nc+">", ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
		"(isDeleted=TRUE)", []string{"objectGUID"}, []ldap.Control{ldap.NewControlString(controlShowDeleted, true, "")})
	found := false
	Stream(ctx, conn, req, pageSize, func(*ldap.Entry) error { found = true; return errSeen })
	return found
}

// errSeen ends a search that has seen what it looked for.
var errSeen = errors.New("seen")

// sweep lists every stream's GUIDs and removes the entries the model
// holds that are no longer there: deleted (or moved out of the searches)
// without a tombstone the bind user may read.
func (w *USNWatcher) sweep(ctx context.Context, conn *Connection, m *Model, searches map[StreamName]Search) error {
	var gone []string
	for _, r := range readOrder {
		search, ok := searches[r.stream]
		if !ok {
			continue
		}
		present := map[string]bool{}
		err := Stream(ctx, conn, searchRequest(search, withGUID([]string{noAttributes})), uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
			if key, err := guidKey(e); err == nil {
				present[key] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s for deletions: %w", r.what, err)
		}
		for _, key := range m.absent(r.stream, present) {
			if dn, ok := m.dnOf(r.stream, key); ok {
				gone = append(gone, dn)
			}
			m.remove(r.stream, key)
			w.events.SyncEvent(string(r.stream), "delete")
		}
	}
	return w.rereadReferrers(ctx, conn, m, searches, gone)
}

// rereadReferrers reads again the entries that name an entry renamed,
// moved or deleted (gone holds its old DNs): Active Directory changed
// their values itself, and no uSNChanged of theirs says so.
func (w *USNWatcher) rereadReferrers(ctx context.Context, conn *Connection, m *Model, searches map[StreamName]Search, gone []string) error {
	if len(gone) == 0 {
		return nil
	}
	dns := make(map[string]bool, len(gone))
	for _, dn := range gone {
		dns[strings.ToLower(dn)] = true
	}
	for _, r := range m.referrers(dns) {
		search := searches[r.stream]
		req := searchRequest(search, withGUID(m.em.attributes(r.stream)))
		req.BaseDN, req.Scope = r.dn, ldap.ScopeBaseObject
		found := false
		err := Stream(ctx, conn, req, uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
			key, err := complete(ctx, conn, e)
			if err != nil {
				return err
			}
			found = true
			m.put(r.stream, key, e)
			w.events.SyncEvent(string(r.stream), "modify")
			return nil
		})
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("read %s again (it names an entry renamed or deleted): %w", r.dn, err)
		}
		if !found {
			m.remove(r.stream, r.key)
		}
	}
	return nil
}

// fullRead builds the model from paged reads of every search.
func (w *USNWatcher) fullRead(ctx context.Context, conn *Connection, m *Model, searches map[StreamName]Search) error {
	for _, r := range readOrder {
		search, ok := searches[r.stream]
		if !ok {
			continue
		}
		m.beginRefresh(r.stream, false)
		err := Stream(ctx, conn, searchRequest(search, withGUID(m.em.attributes(r.stream))), uint32(w.cfg.PageSize),
			func(e *ldap.Entry) error {
				key, err := complete(ctx, conn, e)
				if err != nil {
					return err
				}
				m.put(r.stream, key, e)
				return nil
			})
		if err != nil {
			return fmt.Errorf("read %s: %w", r.what, err)
		}
		if err := m.endRefresh(r.stream); err != nil {
			if errors.Is(err, errNoEntries) {
				err = refusedEmpty(w.events, r.stream, search, false)
			}
			return err
		}
		w.events.Live(string(r.stream), false)
	}
	return nil
}

// poll applies what changed after USN from: entries changed and still in
// a search are read again; those changed but no longer in it (moved out,
// or no longer matching its filter) and those deleted are removed.
func (w *USNWatcher) poll(ctx context.Context, conn *Connection, m *Model, searches map[StreamName]Search, nc string, from int64) error {
	since := fmt.Sprintf("(uSNChanged>=%d)", from+1)
	// The old DNs of entries renamed, moved out or deleted: the entries
	// that name them are read again.
	var gone []string
	// Everything changed in the domain, by GUID: what a search no longer
	// returns among these has left it.
	changed := map[string]bool{}
	all := ldap.NewSearchRequest(nc, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, since, []string{"objectGUID"}, nil)
	if err := Stream(ctx, conn, all, uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
		key, err := guidKey(e)
		if err == nil {
			changed[key] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read changes: %w", err)
	}
	for _, r := range readOrder {
		search, ok := searches[r.stream]
		if !ok {
			continue
		}
		req := searchRequest(search, withGUID(m.em.attributes(r.stream)))
		req.Filter = andFilter(search.Filter, since)
		still := map[string]bool{}
		err := Stream(ctx, conn, req, uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
			key, err := complete(ctx, conn, e)
			if err != nil {
				return err
			}
			still[key] = true
			if old, ok := m.dnOf(r.stream, key); ok && old != e.DN {
				gone = append(gone, old) // renamed or moved
			}
			m.put(r.stream, key, e)
			w.events.SyncEvent(string(r.stream), "modify")
			return nil
		})
		if err != nil {
			return fmt.Errorf("read changed %s: %w", r.what, err)
		}
		for key := range changed {
			if !still[key] {
				if old, ok := m.dnOf(r.stream, key); ok {
					gone = append(gone, old)
				}
				m.remove(r.stream, key)
			}
		}
	}
	// Tombstones: deleted objects are in CN=Deleted Objects, seen only
	// with the show-deleted control, and only by a bind user with rights
	// there (else none is returned, and the scan finds the deletions).
	deleted := ldap.NewSearchRequest(nc, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		andFilter("(isDeleted=TRUE)", since), []string{"objectGUID"}, []ldap.Control{ldap.NewControlString(controlShowDeleted, true, "")})
	err := Stream(ctx, conn, deleted, uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
		key, err := guidKey(e)
		if err != nil {
			return nil
		}
		for name := range searches {
			if old, ok := m.dnOf(name, key); ok {
				gone = append(gone, old)
			}
			m.remove(name, key)
		}
		w.events.SyncEvent("deleted", "delete")
		return nil
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		err = nil // the rights were withdrawn since the session began: the next session scans
	}
	if err != nil {
		return fmt.Errorf("read deleted objects: %w", err)
	}
	return w.rereadReferrers(ctx, conn, m, searches, gone)
}

// complete takes an entry's key out of it and reads the rest of its
// ranged values (groups of more than 1,500 members).
func complete(ctx context.Context, conn *Connection, e *ldap.Entry) (string, error) {
	key, err := guidKey(e)
	if err == nil {
		err = completeRanges(ctx, conn, e)
	}
	return key, err
}

// guidKey is an entry's objectGUID as its key (entryKey), and takes it
// out of the entry (binary, it is the key, not an attribute the model maps
// or keeps).
func guidKey(e *ldap.Entry) (string, error) {
	raw := e.GetRawAttributeValue("objectGUID")
	for i, a := range e.Attributes {
		if strings.EqualFold(a.Name, "objectGUID") {
			e.Attributes = append(e.Attributes[:i:i], e.Attributes[i+1:]...)
			break
		}
	}
	// AD stores the GUID's first three fields little-endian.
	if len(raw) != 16 {
		return "", fmt.Errorf("entry %s has no objectGUID", e.DN)
	}
	b := []byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6]}
	return entryKey([16]byte(append(b, raw[8:]...))), nil
}

// withGUID adds objectGUID, every entry's key, to the attributes a search
// asks for ("1.1", none, becomes objectGUID alone).
func withGUID(attrs []string) []string {
	if len(attrs) == 1 && attrs[0] == noAttributes {
		return []string{"objectGUID"}
	}
	return append(slices.Clip(attrs), "objectGUID")
}
