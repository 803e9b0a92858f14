package ldapx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/config"
)

// ErrNoSyncrepl says the server does not offer RFC 4533 syncrepl (no
// syncprov overlay, or access to it denied).
var ErrNoSyncrepl = errors.New("the directory does not offer syncrepl (RFC 4533)")

// errCookieRejected: the server refused a stream's stored cookie (restarted
// after a crash before checkpointing, restored from an older backup,
// another server): the cookie is dropped and the stream starts over with a
// full refresh, at once.
var errCookieRejected = errors.New("the directory rejected the stored syncrepl cookie")

// CookieStore keeps each stream's syncrepl cookie across restarts.
type CookieStore interface {
	Cookie(ctx context.Context, stream string) ([]byte, error)
	SaveCookie(ctx context.Context, stream string, cookie []byte) error
}

// WatchEvents receives what the watcher sees, for metrics and status.
type WatchEvents interface {
	Connected(bool)
	SyncEvent(stream, kind string) // add, modify, delete, present, info
	Live(stream string, resumed bool)
}

// Watcher notices directory changes with syncrepl refreshAndPersist, one
// stream per configured search, and calls changed for each. It reconnects
// with backoff across the configured URIs; it never reads attributes (1.1):
// the reconcile that follows reads the directory itself.
type Watcher struct {
	client  *Client
	cfg     config.LDAP
	log     *slog.Logger
	cookies CookieStore
	events  WatchEvents
	// CatchUp makes the first connection call changed too, as every
	// reconnect does: for a caller whose view may be older than the
	// stream's start (coming back from polling).
	CatchUp bool
}

// NewWatcher returns a watcher for the configured directory.
func NewWatcher(cfg config.LDAP, log *slog.Logger, cookies CookieStore, events WatchEvents) *Watcher {
	return &Watcher{client: NewClient(cfg, log), cfg: cfg, log: log, cookies: cookies, events: events}
}

// streams are the searches watched, by name.
func (w *Watcher) streams() map[string]config.Search {
	s := map[string]config.Search{"users": w.cfg.Users.Search, "collaborations": w.cfg.Collaborations.Search}
	if rg := w.cfg.Collaborations.Contacts.Groups; rg != nil {
		s["role_groups"] = rg.Search
	}
	if p := w.cfg.ProductionAccounts; p != nil {
		s["production_accounts"] = p.Search
	}
	return s
}

// Run watches until ctx ends (then it returns nil), or until it learns the
// server has no syncrepl (ErrNoSyncrepl). After each reconnect it calls
// changed once, since changes may have been missed while down.
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	const minBackoff, maxBackoff = time.Second, time.Minute
	backoff := minBackoff
	for first := true; ; first = false {
		conn, err := w.client.Connect(ctx)
		if err == nil {
			w.events.Connected(true)
			if !first || w.CatchUp {
				changed()
			}
			start := time.Now()
			err = w.session(ctx, conn, changed)
			conn.Close()
			w.events.Connected(false)
			if time.Since(start) > 30*time.Second {
				backoff = minBackoff // it had been working: retry soon
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNoSyncrepl) {
			return err
		}
		if errors.Is(err, errCookieRejected) {
			w.log.Warn("directory change stream restarting with a full refresh", "err", err)
			backoff = minBackoff
			continue // the server is up and answering: at once
		}
		// Jitter keeps many daemons from hammering a recovering server together.
		wait := backoff/2 + rand.N(backoff/2+1)
		w.log.Warn("directory change stream down; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session runs every stream on one connection until the first fails.
func (w *Watcher) session(ctx context.Context, conn *ldap.Conn, changed func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := w.streams()
	errs := make(chan error, len(streams))
	var wg sync.WaitGroup
	for name, search := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := w.stream(ctx, conn, name, search, changed)
			if err != nil {
				err = fmt.Errorf("stream %s: %w", name, err)
			}
			errs <- err
			cancel() // one stream down: reconnect all
		}()
	}
	wg.Wait()
	close(errs)
	// A stream that ended because another failed reports the context's
	// end; the cause is the other's error. No syncrepl weighs most, then
	// a rejected cookie (restart at once).
	rank := func(err error) int {
		switch {
		case err == nil:
			return 0
		case errors.Is(err, ErrNoSyncrepl):
			return 3
		case errors.Is(err, errCookieRejected):
			return 2
		}
		return 1
	}
	var first error
	for err := range errs {
		if rank(err) > rank(first) {
			first = err
		}
	}
	return first
}

// Result codes syncrepl consumers must handle.
const (
	resultSyncRefreshRequired = 4096 // RFC 4533: start again without a cookie
)

func (w *Watcher) stream(ctx context.Context, conn *ldap.Conn, name string, search config.Search, changed func()) error {
	cookie, err := w.cookies.Cookie(ctx, name)
	if err != nil {
		return fmt.Errorf("load cookie: %w", err)
	}
	resumed := len(cookie) > 0
	req := searchRequest(search, []string{"1.1"})
	resp := conn.Syncrepl(ctx, req, 64, ldap.SyncRequestModeRefreshAndPersist, cookie, false)
	refreshing := true
	save := func(c []byte) error {
		if len(c) == 0 {
			return nil
		}
		return w.cookies.SaveCookie(ctx, name, c)
	}
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			st, _ := ldap.FindControl(resp.Controls(), ldap.ControlTypeSyncState).(*ldap.ControlSyncState)
			kind := "present"
			if st != nil {
				kind = syncStateName(st.State)
				if err := save(st.Cookie); err != nil {
					return err
				}
			}
			w.events.SyncEvent(name, kind)
			// Entries of a first refresh are the directory as it is, not
			// changes; everything else is.
			if !refreshing || resumed {
				changed()
			}
			continue
		}
		info, ok := ldap.FindControl(resp.Controls(), ldap.ControlTypeSyncInfo).(*ldap.ControlSyncInfo)
		if !ok {
			continue
		}
		w.events.SyncEvent(name, "info")
		switch {
		case info.NewCookie != nil:
			err = save(info.NewCookie.Cookie)
		case info.RefreshDelete != nil:
			err = save(info.RefreshDelete.Cookie)
			if info.RefreshDelete.RefreshDone {
				refreshing = false
				w.events.Live(name, resumed)
			}
		case info.RefreshPresent != nil:
			err = save(info.RefreshPresent.Cookie)
			if info.RefreshPresent.RefreshDone {
				refreshing = false
				w.events.Live(name, resumed)
			}
		case info.SyncIdSet != nil:
			err = save(info.SyncIdSet.Cookie)
			if info.SyncIdSet.RefreshDeletes || !refreshing || resumed {
				changed()
			}
		}
		if err != nil {
			return err
		}
	}
	err = resp.Err()
	switch {
	case ctx.Err() != nil:
		return nil
	case ldap.IsErrorWithCode(err, resultSyncRefreshRequired),
		resumed && ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform):
		// e-syncRefreshRequired, or slapd's 53 "consumer state is newer
		// than provider!" (restarted before checkpointing its contextCSN,
		// restored from an older backup): a 53 with a cookie is about the
		// cookie. Without one, a 53 says no syncrepl (below).
		w.log.Warn("the directory rejected the stored syncrepl cookie; dropping it for a full refresh", "stream", name, "err", err)
		if err := w.cookies.SaveCookie(ctx, name, nil); err != nil {
			return err
		}
		if !resumed {
			// No cookie was sent (one saved since is dropped): reconnect
			// with backoff, never in a loop.
			return fmt.Errorf("full refresh required: %v", err)
		}
		return fmt.Errorf("%w: %v", errCookieRejected, err)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension),
		ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform):
		return fmt.Errorf("%w: %v", ErrNoSyncrepl, err)
	case err != nil:
		return err
	}
	return errors.New("the server ended the change stream")
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
