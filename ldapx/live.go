package ldapx

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/google/uuid"

	"github.com/collabsync/collabsync/internal/directory"
)

// errUnknownPresent: a refresh reported an entry as present that the
// model does not hold and the server did not send: the model and the
// cookie disagree, and only a refresh without the cookie can put them right.
var errUnknownPresent = errors.New("the server reported an unchanged entry the live model does not hold")

// Model is the directory kept in memory and live by syncrepl: every
// stream's mapped entries by entryUUID. A Watcher feeds it: the refresh
// builds it (or, after a reconnect with a cookie, catches it up), and the
// persist phase applies each add, modify, delete and rename as it comes.
// Nothing in it reads the directory.
type Model struct {
	em      *entryMapper
	streams []StreamName
	// changed is called after every change once all streams are live,
	// and when the last stream becomes live (so a refresh is one call).
	changed func()

	mu      sync.Mutex
	entries Entries
	cookies map[StreamName][]byte
	live    map[StreamName]bool
	// seen holds, during a refresh, the keys the server reported; full
	// marks a refresh without a cookie (the model becomes exactly what it
	// reports).
	seen map[StreamName]map[string]bool
	full map[StreamName]bool
	// touched, while a comparison runs, records the DNs changes touched.
	touched map[StreamName]map[string]bool
	// refresh, when closed, asks the watcher to start over without cookies.
	refresh chan struct{}
	// fullRefreshes counts the times the model became live after a
	// refresh without a cookie in at least one stream: whole reads.
	fullRefreshes uint64
	fullPending   bool
	// users is the users' share of the last snapshot, valid while
	// usersChanged is false.
	users        *userPart
	usersChanged bool
	// collabs are the collaborations resolved against users.
	collabs *collabCache

	// With a journal, changes wait in pending until Flush saves them;
	// flushMu keeps flushes in order. digest names the searches and
	// mappings, so a model saved under others is not loaded.
	journal        Journal
	digest         string
	pending        map[journalKey]journalOp
	pendingCookies map[StreamName][]byte
	flushMu        sync.Mutex
	flushNow       chan struct{}
}

// NewModel returns an empty model of the configured streams.
func NewModel(cfg Config, changed func()) *Model {
	m := &Model{em: newEntryMapper(cfg), changed: changed, entries: Entries{}, cookies: map[StreamName][]byte{},
		live: map[StreamName]bool{}, seen: map[StreamName]map[string]bool{}, full: map[StreamName]bool{}, refresh: make(chan struct{})}
	for s := range streams(cfg) {
		m.streams = append(m.streams, s)
		m.entries[s] = map[string]*Mapped{}
	}
	sort.Slice(m.streams, func(i, j int) bool { return m.streams[i] < m.streams[j] })
	search := streams(cfg)
	h := sha256.New()
	// The version of what the journal holds: 3 encodes the attributes in
	// binary (encodeSaved; 2 in JSON), 2 keys entries by their UUID's
	// bytes in hex (1 had the UUID's text form).
	h.Write([]byte("live model 3\x00"))
	for _, st := range m.streams {
		fmt.Fprintf(h, "%s\x00%+v\x00%q\x00", st, search[st], m.em.attributes(st))
	}
	m.digest = hex.EncodeToString(h.Sum(nil))
	m.pending, m.pendingCookies, m.flushNow = map[journalKey]journalOp{}, map[StreamName][]byte{}, make(chan struct{}, 1)
	return m
}

// flushEvery is how often a journal is written; flushBatch how many
// changes make it write at once.
const (
	flushEvery = 500 * time.Millisecond
	flushBatch = 5000
)

// Live reports whether every stream has finished its refresh, so the
// model is the whole directory.
func (m *Model) Live() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.liveLocked()
}

func (m *Model) liveLocked() bool {
	for _, s := range m.streams {
		if !m.live[s] {
			return false
		}
	}
	return true
}

// Snapshot resolves the model into a snapshot; ok is false while the
// model is not live.
func (m *Model) Snapshot() (snap *directory.Snapshot, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.liveLocked() {
		return nil, false
	}
	if m.users == nil || m.usersChanged {
		m.users, m.usersChanged, m.collabs = resolveUsers(m.entries[StreamUsers], m.entries[StreamDisabled]), false, nil
	}
	if m.collabs == nil {
		m.collabs = &collabCache{}
	}
	snap = resolveWith(m.entries, m.users, m.collabs)
	return snap, true
}

// FullRefreshes counts the refreshes without a cookie (whole reads of the
// directory) the model was built or rebuilt by.
func (m *Model) FullRefreshes() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fullRefreshes
}

// Size returns how many entries each stream holds.
func (m *Model) Size() map[StreamName]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[StreamName]int, len(m.entries))
	for s, e := range m.entries {
		out[s] = len(e)
	}
	return out
}

// cookie is where a stream resumes: nil for a full refresh.
func (m *Model) cookie(s StreamName) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cookies[s]
}

// dropCookie forgets a stream's cookie (the server rejected it).
func (m *Model) dropCookie(s StreamName) {
	m.mu.Lock()
	delete(m.cookies, s)
	if m.journal != nil {
		m.pendingCookies[s] = nil
	}
	m.mu.Unlock()
}

func (m *Model) journaled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.journal != nil
}

func (m *Model) saveCookie(s StreamName, c []byte) {
	if len(c) == 0 {
		return
	}
	m.mu.Lock()
	m.cookies[s] = c
	if m.journal != nil {
		m.pendingCookies[s] = c
	}
	m.mu.Unlock()
}

// RequireRefresh drops every cookie and asks the watcher to reconnect for
// a full refresh (the model was found to differ from the directory).
func (m *Model) RequireRefresh() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.cookies {
		if m.journal != nil {
			m.pendingCookies[s] = nil
		}
	}
	clear(m.cookies)
	select {
	case <-m.refresh:
	default:
		close(m.refresh)
	}
}

// refreshRequired returns the channel RequireRefresh closes for the
// session about to start. A request that came while no session ran is
// already served by that session (its streams have no cookie): it gets a
// fresh channel.
func (m *Model) refreshRequired() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.refresh:
		m.refresh = make(chan struct{})
	default:
	}
	return m.refresh
}

// beginRefresh starts a stream's refresh: until it ends the stream is
// not live, and the keys the server reports are remembered (a present
// phase, or a refresh without a cookie, deletes the others).
func (m *Model) beginRefresh(s StreamName, withCookie bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live[s] = false
	m.seen[s] = map[string]bool{}
	m.full[s] = !withCookie
}

// put stores an added or modified entry (a rename is a modify with the
// new DN: the key stays).
func (m *Model) put(s StreamName, key string, e *ldap.Entry) {
	mapped := m.em.mapEntry(s, e)
	var attrs []byte
	if m.journaled() {
		attrs = encodeSaved(e)
	}
	m.mu.Lock()
	m.record(s, key, e.DN, attrs)
	if old := m.entries[s][key]; old != nil {
		m.touch(s, old.DN)
	}
	m.touch(s, e.DN)
	m.entries[s][key] = mapped
	if seen := m.seen[s]; seen != nil {
		seen[key] = true
	}
	m.mu.Unlock()
	m.notify(s)
}

// present marks an entry reported unchanged during a refresh. The server
// may name an entry before sending it (slapd names new entries too in a
// present phase): endRefresh checks that every one arrived.
func (m *Model) present(s StreamName, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seen := m.seen[s]; seen != nil {
		seen[key] = true
	}
}

// remove deletes an entry.
func (m *Model) remove(s StreamName, key string) {
	m.mu.Lock()
	old, ok := m.entries[s][key]
	if ok {
		m.touch(s, old.DN)
		delete(m.entries[s], key)
		m.record(s, key, old.DN, nil)
	}
	delete(m.seen[s], key) // gone: no longer expected to arrive
	m.mu.Unlock()
	if ok {
		m.notify(s)
	}
}

// endPresent ends a present phase: entries the server did not report are
// gone from the directory.
func (m *Model) endPresent(s StreamName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropUnseen(s)
}

func (m *Model) dropUnseen(s StreamName) {
	seen := m.seen[s]
	if seen == nil {
		return
	}
	for key, e := range m.entries[s] {
		if !seen[key] {
			m.touch(s, e.DN)
			delete(m.entries[s], key)
			m.record(s, key, e.DN, nil)
		}
	}
}

// endRefresh makes a stream live; when it is the last, the model is the
// directory and changed is called. An entry the server reported present
// that never arrived means the model and the cookie disagree. A users or
// collaborations stream the refresh leaves empty is refused with
// errNoEntries, resumed or not (a wrong base, a filter matching nothing,
// rights withdrawn, or every entry gone): it stays not live, and nothing
// is planned from it.
func (m *Model) endRefresh(s StreamName) error {
	m.mu.Lock()
	for key := range m.seen[s] {
		if _, ok := m.entries[s][key]; !ok {
			m.mu.Unlock()
			return fmt.Errorf("%w (stream %s, entryUUID %s)", errUnknownPresent, s, keyText(key))
		}
	}
	// A refresh without a cookie keeps only what it reported (every key
	// seen is held: checked above).
	left := len(m.entries[s])
	if m.full[s] {
		left = len(m.seen[s])
	}
	if left == 0 && mustMatch(s) {
		m.mu.Unlock()
		return errNoEntries
	}
	if m.full[s] {
		m.dropUnseen(s)
		m.fullPending = true
	}
	m.live[s] = true
	m.seen[s] = nil
	all := m.liveLocked()
	if all && m.fullPending {
		m.fullRefreshes++
		m.fullPending = false
	}
	m.mu.Unlock()
	if all {
		m.changed()
	}
	return nil
}

// down marks every stream not live (the connection is gone; changes may
// be missed until the next refresh catches up).
func (m *Model) down() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.live)
}

func (m *Model) notify(s StreamName) {
	m.mu.Lock()
	live := m.live[s] && m.liveLocked()
	m.mu.Unlock()
	if live {
		m.changed()
	}
}

// touch records a change of an entry (mu held): for the users' cache, and
// for a comparison in progress.
func (m *Model) touch(s StreamName, dn string) {
	if s == StreamUsers || s == StreamDisabled {
		m.usersChanged = true
	}
	if m.touched != nil {
		if m.touched[s] == nil {
			m.touched[s] = map[string]bool{}
		}
		m.touched[s][dn] = true
	}
}

// Difference is one entry on which the live model and a full read disagree.
type Difference struct {
	Stream StreamName
	DN     string
	Live   string // what the model holds: "absent", or a summary
	Read   string // what the read found
}

// Compare runs read (a full read of the directory) and compares its
// entries with the model's. Entries that changed while read ran are left
// out: either side may have the newer version. It returns the read.
func (m *Model) Compare(read func() (Entries, error)) (Entries, []Difference, error) {
	m.mu.Lock()
	m.touched = map[StreamName]map[string]bool{}
	m.mu.Unlock()
	full, err := read()
	m.mu.Lock()
	defer m.mu.Unlock()
	touched := m.touched
	m.touched = nil
	if err != nil || !m.liveLocked() {
		return full, nil, err
	}
	var diffs []Difference
	for _, s := range m.streams {
		byDN := make(map[string]*Mapped, len(m.entries[s]))
		for _, e := range m.entries[s] {
			byDN[e.DN] = e
		}
		for dn, e := range full[s] {
			if touched[s][dn] {
				continue
			}
			if l, ok := byDN[dn]; !ok {
				diffs = append(diffs, Difference{Stream: s, DN: dn, Live: "absent", Read: "present"})
			} else if !reflect.DeepEqual(l, e) {
				diffs = append(diffs, Difference{Stream: s, DN: dn, Live: fmt.Sprintf("%+v", summary(l)), Read: fmt.Sprintf("%+v", summary(e))})
			}
		}
		for dn := range byDN {
			if _, ok := full[s][dn]; !ok && !touched[s][dn] {
				diffs = append(diffs, Difference{Stream: s, DN: dn, Live: "present", Read: "absent"})
			}
		}
	}
	sort.Slice(diffs, func(i, j int) bool {
		if diffs[i].Stream != diffs[j].Stream {
			return diffs[i].Stream < diffs[j].Stream
		}
		return diffs[i].DN < diffs[j].DN
	})
	return full, diffs, nil
}

// summary is a mapped entry's value, for a difference's log line.
func summary(e *Mapped) any {
	switch {
	case e.User != nil:
		return *e.User
	case e.Collaboration != nil:
		return *e.Collaboration
	case e.RoleGroup != nil:
		return *e.RoleGroup
	case e.Production != nil:
		return *e.Production
	}
	return e.Problem
}

// entryKey is an entry's key in a live model: its entryUUID (or
// objectGUID) as the 16 bytes themselves (as text it took 48 bytes of
// memory per entry rather than 16). The journal keeps keys in hex.
func entryKey(id [16]byte) string { return string(id[:]) }

// keyText is a key as logs name it.
func keyText(key string) string {
	if len(key) == 16 {
		return uuid.UUID([]byte(key)).String()
	}
	return key
}

// dnOf returns the DN the model holds for an entry.
func (m *Model) dnOf(s StreamName, key string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[s][key]
	if !ok {
		return "", false
	}
	return e.DN, true
}

// absent returns the keys of a stream's entries that are not in present.
func (m *Model) absent(s StreamName, present map[string]bool) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for key := range m.entries[s] {
		if !present[key] {
			out = append(out, key)
		}
	}
	return out
}

// ref names an entry of the model.
type ref struct {
	stream  StreamName
	key, dn string
}

// referrers returns the entries whose values name one of the DNs (keys
// lower-cased): members, contacts, role group members, validators and
// owners. Active Directory changes these values itself when an entry they
// name is renamed, moved or deleted, without a new uSNChanged on the
// entries that hold them: a poll never sees them change.
func (m *Model) referrers(dns map[string]bool) []ref {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := func(values ...string) bool {
		for _, v := range values {
			if strings.Contains(v, "=") && dns[strings.ToLower(v)] {
				return true
			}
		}
		return false
	}
	var out []ref
	for _, s := range m.streams {
		for key, e := range m.entries[s] {
			hit := false
			switch {
			case e.User != nil:
				hit = names(e.User.ValidatedBy)
			case e.Collaboration != nil:
				hit = names(e.Collaboration.MemberValues...)
				for _, vs := range e.Collaboration.ContactValues {
					hit = hit || names(vs...)
				}
			case e.RoleGroup != nil:
				hit = names(e.RoleGroup.Values...)
			case e.Production != nil:
				hit = names(e.Production.Owner)
			}
			if hit {
				out = append(out, ref{s, key, e.DN})
			}
		}
	}
	return out
}
