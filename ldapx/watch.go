package ldapx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// errNoSyncrepl says the server does not offer RFC 4533 syncrepl (no
// syncprov overlay, or access to it denied).
var errNoSyncrepl = errors.New("the directory does not offer syncrepl (RFC 4533)")

// errCookieRejected: the server refused a stream's stored cookie (restarted
// after a crash before checkpointing, restored from an older backup,
// another server): the cookie is dropped and the stream starts over with a
// full refresh, at once.
var errCookieRejected = errors.New("the directory rejected the stored syncrepl cookie")

// WatchEvents receives what the watcher sees, for metrics and status.
type WatchEvents interface {
	Connected(bool)
	// ConnectFailed: no configured server could be connected to and bound.
	ConnectFailed(err error)
	SyncEvent(stream, kind string) // add, modify, delete, present, info
	Live(stream string, resumed bool)
	// RefreshFailed: a stream's refresh did not complete (reason: stalled).
	RefreshFailed(stream, reason string, err error)
	// Deletions says how deletions are seen on Active Directory
	// (tombstones, or a scan of the GUIDs) and their worst-case delay.
	Deletions(mechanism string, worst time.Duration)
}

// errRefreshStalled: a refresh received nothing for the refresh timeout.
var errRefreshStalled = errors.New("refresh stalled")

// Watcher keeps a Model live with syncrepl refreshAndPersist, one stream
// per configured search, all on one connection. It reconnects with backoff
// across the configured URIs, resuming each stream from the model's
// cookie: after a short outage only what changed is sent again.
type Watcher struct {
	client *Client
	cfg    Config
	log    *slog.Logger
	events WatchEvents
}

// NewWatcher returns a watcher for the configured directory.
func NewWatcher(cfg Config, log *slog.Logger, events WatchEvents) *Watcher {
	return &Watcher{client: NewClient(cfg, log), cfg: cfg, log: log, events: events}
}

// Run keeps m live until ctx ends (then it returns nil), or until it
// learns the server has no syncrepl (errNoSyncrepl).
func (w *Watcher) Run(ctx context.Context, m *Model) error {
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
				backoff = minBackoff // it had been working: retry soon
			}
		} else {
			w.events.ConnectFailed(err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errNoSyncrepl) {
			return err
		}
		if errors.Is(err, errCookieRejected) {
			w.log.Warn("directory change stream restarting with a full refresh", "err", err)
			backoff = minBackoff
			continue // the server is up and answering: at once
		}
		// Jitter keeps many daemons from hammering a recovering server together.
		wait := backoff/2 + rand.N(backoff/2+1)
		if errors.Is(err, errRefreshStalled) || errors.Is(err, errNoEntries) {
			// Not an outage: it will not heal by itself.
			w.log.Error("directory change stream cannot complete its refresh; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			w.log.Warn("directory change stream down; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		if !w.client.pause(ctx, wait, unreachable) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session runs every stream on one connection until the first fails, or
// the model asks for a full refresh.
func (w *Watcher) session(ctx context.Context, conn *Connection, m *Model) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	search := streams(w.cfg)
	refresh := m.refreshRequired() // before the streams take their cookies
	errs := make(chan error, len(search)+1)
	var wg sync.WaitGroup
	for name, s := range search {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.stream(ctx, conn, name, s, m)
			if err != nil {
				err = fmt.Errorf("stream %s: %w", name, err)
			}
			errs <- err
			cancel() // one stream down: reconnect all
		}()
	}
	go func() {
		select {
		case <-refresh:
			errs <- fmt.Errorf("%w: the live model differed from a full read", errCookieRejected)
			cancel()
		case <-ctx.Done():
		}
	}()
	wg.Wait()
	cancel()
	// A stream that ended because another failed reports the context's
	// end; the cause is the other's error. No syncrepl weighs most, then
	// a rejected cookie (restart at once).
	rank := func(err error) int {
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errNoSyncrepl):
			return 3
		case errors.Is(err, errCookieRejected):
			return 2
		}
		return 1
	}
	var first error
	for len(errs) > 0 {
		if err := <-errs; rank(err) > rank(first) {
			first = err
		}
	}
	return first
}

// Result codes syncrepl consumers must handle.
const (
	resultSyncRefreshRequired = 4096 // RFC 4533: start again without a cookie
)

func (w *Watcher) stream(ctx context.Context, conn *Connection, name StreamName, search Search, m *Model) error {
	cookie := m.cookie(name)
	resumed := len(cookie) > 0
	req := searchRequest(search, m.em.attributes(name))
	// A refresh that goes quiet has been cut: 389-ds ends one at its size
	// limit without a result or an error. Every message until the refresh
	// is done restarts the clock.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	timeout := time.Duration(w.cfg.RefreshTimeout)
	quiet := time.AfterFunc(timeout, func() { stalled.Store(true); cancel() })
	defer quiet.Stop()
	refreshing := true
	received := 0
	resp := conn.Syncrepl(sctx, req, 64, ldap.SyncRequestModeRefreshAndPersist, cookie, false)
	m.beginRefresh(name, resumed)
	warned := false
	// A refresh's cookies are kept only once the model accepts the
	// refresh: a retry after a refused one starts from where the model
	// was accepted last, so it is refused again rather than resumed past.
	var refreshCookie []byte
	save := func(c []byte) {
		if len(c) == 0 {
			return
		}
		if refreshing {
			refreshCookie = c
		} else {
			m.saveCookie(name, c)
		}
		if !warned && unresumable(c) {
			warned = true
			w.warnUnresumable(name, c)
		}
	}
	live := func() error {
		refreshing = false
		quiet.Stop()
		if err := w.live(m, name, search, resumed); err != nil {
			return err
		}
		m.saveCookie(name, refreshCookie)
		return nil
	}
	var err error
	for resp.Next() {
		if refreshing {
			quiet.Reset(timeout)
		}
		if e := resp.Entry(); e != nil {
			received++
			st, _ := ldap.FindControl(resp.Controls(), ldap.ControlTypeSyncState).(*ldap.ControlSyncState)
			if st == nil {
				return fmt.Errorf("%w: entry %s came without a sync state control", errNoSyncrepl, e.DN)
			}
			key := entryKey(st.EntryUUID)
			switch {
			case st.State == ldap.SyncStateDelete:
				m.remove(name, key)
			case st.State == ldap.SyncStatePresent && len(e.Attributes) == 0:
				m.present(name, key)
			default: // add, modify (a rename is a modify), or present with its attributes
				m.put(name, key, e)
			}
			save(st.Cookie)
			w.events.SyncEvent(string(name), syncStateName(st.State))
			continue
		}
		info, ok := ldap.FindControl(resp.Controls(), ldap.ControlTypeSyncInfo).(*ldap.ControlSyncInfo)
		if !ok {
			continue
		}
		w.events.SyncEvent(string(name), "info")
		switch {
		case info.NewCookie != nil:
			save(info.NewCookie.Cookie)
		case info.RefreshDelete != nil:
			save(info.RefreshDelete.Cookie)
			if info.RefreshDelete.RefreshDone {
				if err := live(); err != nil {
					return err
				}
			}
		case info.RefreshPresent != nil:
			save(info.RefreshPresent.Cookie)
			m.endPresent(name)
			if info.RefreshPresent.RefreshDone {
				if err := live(); err != nil {
					return err
				}
			}
		case info.SyncIdSet != nil:
			for _, id := range info.SyncIdSet.SyncUUIDs {
				if info.SyncIdSet.RefreshDeletes {
					m.remove(name, entryKey(id))
				} else {
					m.present(name, entryKey(id))
				}
			}
			save(info.SyncIdSet.Cookie)
		}
	}
	err = resp.Err()
	switch {
	case ctx.Err() != nil:
		return nil
	case stalled.Load() && missingBase(ctx, conn, search.BaseDN):
		err := fmt.Errorf("%w after %d entries: the base DN %q does not exist (%w): check ldap.*.base_dn", errRefreshStalled, received, search.BaseDN, errNoBase)
		w.events.RefreshFailed(string(name), "no_base", err)
		return err
	case stalled.Load():
		err := fmt.Errorf("%w after %d entries: nothing came for %v and the server never said the refresh was done. "+
			"A server limit may have cut it: on 389-ds/FreeIPA give the bind entry nsSizeLimit: -1 and nsLookThroughLimit: -1 "+
			"(the default nsslapd-sizelimit is 2000); on OpenLDAP raise olcLimits for the bind DN; "+
			"or raise ldap.refresh_timeout for a very slow server", errRefreshStalled, received, timeout)
		w.events.RefreshFailed(string(name), "stalled", err)
		return err
	case ldap.IsErrorWithCode(err, resultSyncRefreshRequired),
		resumed && ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform):
		// e-syncRefreshRequired, or slapd's 53 "consumer state is newer
		// than provider!" (restarted before checkpointing its contextCSN,
		// restored from an older backup): a 53 with a cookie is about the
		// cookie. Without one, a 53 says no syncrepl (below).
		w.log.Warn("the directory rejected the syncrepl cookie; dropping it for a full refresh", "stream", name, "err", err)
		m.dropCookie(name)
		if !resumed {
			// No cookie was sent: reconnect with backoff, never in a loop.
			return fmt.Errorf("full refresh required: %v", err)
		}
		return fmt.Errorf("%w: %v", errCookieRejected, err)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension),
		ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform):
		return fmt.Errorf("%w: %v", errNoSyncrepl, err)
	case err != nil:
		return limitHint(err)
	}
	return errors.New("the server ended the change stream")
}

// live ends a stream's refresh.
func (w *Watcher) live(m *Model, name StreamName, search Search, resumed bool) error {
	err := m.endRefresh(name)
	switch {
	case errors.Is(err, errNoEntries):
		// The next try reads whole: a saved model that was wrong is put
		// right, and an empty directory is refused again.
		m.dropCookie(name)
		return refusedEmpty(w.events, name, search, resumed)
	case err != nil:
		m.dropCookie(name)
		return fmt.Errorf("%w: %v", errCookieRejected, err)
	}
	w.events.Live(string(name), resumed)
	return nil
}

// refusedEmpty says why a refresh that would leave a stream empty was
// refused, and tells the events.
func refusedEmpty(events WatchEvents, name StreamName, search Search, resumed bool) error {
	err := fmt.Errorf("refresh: %w", noEntries(search))
	if resumed {
		err = fmt.Errorf("refresh resumed from the saved cookie would leave no entry (every one deleted, moved, or no longer readable): %w", noEntries(search))
	}
	events.RefreshFailed(string(name), "no_entries", err)
	return err
}

// unresumable reports a 389-ds cookie that names no change: its Retro
// Changelog lacks nsuniqueid, so every reconnect and restart costs a full
// refresh (the server answers the cookie with e-syncRefreshRequired).
func unresumable(cookie []byte) bool { return strings.HasSuffix(string(cookie), "#4294967295") }

func (w *Watcher) warnUnresumable(name StreamName, cookie []byte) {
	w.log.Warn("the directory's syncrepl cookie cannot be resumed from: every restart will read the directory whole. "+
		"On 389-ds/FreeIPA add nsslapd-attribute: nsuniqueid:targetUniqueId to cn=Retro Changelog Plugin,cn=plugins,cn=config "+
		"and restart the server", "stream", name, "cookie", string(cookie))
}

func syncStateName(s ldap.ControlSyncStateState) string {
	switch s {
	case ldap.SyncStatePresent:
		return "present"
	case ldap.SyncStateAdd:
		return "add"
	case ldap.SyncStateModify:
		return "modify"
	case ldap.SyncStateDelete:
		return "delete"
	}
	return "unknown"
}
