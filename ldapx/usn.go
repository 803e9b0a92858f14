package ldapx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/config"
)

// controlShowDeleted makes Active Directory return deleted objects
// (tombstones), so a poll learns what was deleted since the last one.
const controlShowDeleted = "1.2.840.113556.1.4.417"

// USNWatcher keeps a Model current on Active Directory, which offers no
// syncrepl. A full read builds the model, keyed by objectGUID; then every
// interval it reads again only the entries whose uSNChanged passed the
// domain controller's highestCommittedUSN at the last poll, and removes
// the objects deleted (or moved out of a search) since. A poll costs reads
// in proportion to the changes, not to the directory. The position is kept
// as the streams' cookies ("<DC>#<USN>"): a restart resumes from it, and
// another domain controller (USNs are per DC) means a full read.
type USNWatcher struct {
	client   *Client
	cfg      config.LDAP
	log      *slog.Logger
	events   WatchEvents
	interval time.Duration
}

// NewUSNWatcher returns a watcher polling every interval.
func NewUSNWatcher(cfg config.LDAP, log *slog.Logger, events WatchEvents, interval time.Duration) *USNWatcher {
	return &USNWatcher{client: NewClient(cfg, log), cfg: cfg, log: log, events: events, interval: interval}
}

// Run keeps m current until ctx ends, reconnecting with backoff.
func (w *USNWatcher) Run(ctx context.Context, m *Model) {
	const minBackoff, maxBackoff = time.Second, time.Minute
	backoff := minBackoff
	for {
		conn, err := w.client.Connect(ctx)
		if err == nil {
			w.events.Connected(true)
			err = w.session(ctx, conn, m)
			conn.Close()
			m.down()
			w.events.Connected(false)
			backoff = minBackoff
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		w.log.Warn("directory change polling (uSNChanged) interrupted; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// rootDSE reads where the domain controller is: who it is and its highest
// committed USN.
func rootDSE(ctx context.Context, conn *ldap.Conn) (dc, namingContext string, usn int64, err error) {
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

func (w *USNWatcher) session(ctx context.Context, conn *ldap.Conn, m *Model) error {
	dc, nc, usn, err := rootDSE(ctx, conn)
	if err != nil {
		return err
	}
	searches := streams(w.cfg)
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
		if err := w.poll(ctx, conn, m, searches, nc, from); err != nil {
			return err
		}
		for name, search := range searches {
			if err := m.endRefresh(name); err != nil {
				if errors.Is(err, ErrNoEntries) {
					// The next try reads whole (see Watcher.live).
					for name := range searches {
						m.dropCookie(name)
					}
					err = refreshEmpty(search, true)
					w.events.RefreshFailed(string(name), "no_entries", err)
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
	refresh := m.refreshRequired()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh:
			// The full reconcile found the model wrong; its cookies are gone.
			return fmt.Errorf("%w: the live model differed from a full read", errCookieRejected)
		case <-t.C:
		}
		cdc, now, err := func() (string, int64, error) { dc, _, usn, err := rootDSE(ctx, conn); return dc, usn, err }()
		if err != nil {
			return err
		}
		if cdc != dc || now < from {
			return fmt.Errorf("the domain controller changed (%s, USN %d, was %s, %d): reading the directory whole", cdc, now, dc, from)
		}
		if now == from {
			continue // nothing committed since
		}
		if err := w.poll(ctx, conn, m, searches, nc, from); err != nil {
			return err
		}
		from = now
		for name := range searches {
			m.saveCookie(name, position(dc, now))
		}
	}
}

// fullRead builds the model from paged reads of every search.
func (w *USNWatcher) fullRead(ctx context.Context, conn *ldap.Conn, m *Model, searches map[StreamName]config.Search) error {
	for _, r := range readOrder {
		search, ok := searches[r.stream]
		if !ok {
			continue
		}
		m.beginRefresh(r.stream, false)
		err := Stream(ctx, conn, searchRequest(search, append(m.em.attributes(r.stream), "objectGUID")), uint32(w.cfg.PageSize),
			func(e *ldap.Entry) error {
				key, err := guidKey(e)
				if err == nil {
					err = completeRanges(ctx, conn, e)
				}
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
			if errors.Is(err, ErrNoEntries) {
				err = fmt.Errorf("read %s: %w", r.what, noEntries(search))
				w.events.RefreshFailed(string(r.stream), "no_entries", err)
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
func (w *USNWatcher) poll(ctx context.Context, conn *ldap.Conn, m *Model, searches map[StreamName]config.Search, nc string, from int64) error {
	since := fmt.Sprintf("(uSNChanged>=%d)", from+1)
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
		req := searchRequest(search, append(m.em.attributes(r.stream), "objectGUID"))
		req.Filter = And(search.Filter, since)
		still := map[string]bool{}
		err := Stream(ctx, conn, req, uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
			key, err := guidKey(e)
			if err == nil {
				err = completeRanges(ctx, conn, e)
			}
			if err != nil {
				return err
			}
			still[key] = true
			m.put(r.stream, key, e)
			w.events.SyncEvent(string(r.stream), "modify")
			return nil
		})
		if err != nil {
			return fmt.Errorf("read changed %s: %w", r.what, err)
		}
		for key := range changed {
			if !still[key] {
				m.remove(r.stream, key)
			}
		}
	}
	// Tombstones: deleted objects are in CN=Deleted Objects, seen only
	// with the show-deleted control.
	deleted := ldap.NewSearchRequest(nc, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		And("(isDeleted=TRUE)", since), []string{"objectGUID"}, []ldap.Control{ldap.NewControlString(controlShowDeleted, true, "")})
	err := Stream(ctx, conn, deleted, uint32(w.cfg.PageSize), func(e *ldap.Entry) error {
		key, err := guidKey(e)
		if err != nil {
			return nil
		}
		for name := range searches {
			m.remove(name, key)
		}
		w.events.SyncEvent("deleted", "delete")
		return nil
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		// Deletions then wait for the full reconcile: say so, keep polling.
		w.log.Warn("the bind account may not read deleted objects (CN=Deleted Objects): deletions reach the targets only at the next full reconcile; "+
			"grant it List Contents and Read Property there (docs/SERVERS.md)", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read deleted objects: %w", err)
	}
	return nil
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
