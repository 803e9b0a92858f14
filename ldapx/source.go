package ldapx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
)

// Source reads a full snapshot of the directory (it is an engine.Source).
type Source struct {
	client *Client
	mapper *Mapper
	em     *entryMapper
	cfg    Config
	log    *slog.Logger
}

// NewSource returns a Source for the configured directory.
func NewSource(cfg Config, log *slog.Logger) *Source {
	return &Source{client: NewClient(cfg, log), mapper: NewMapper(cfg), em: newEntryMapper(cfg), cfg: cfg, log: log}
}

// Snapshot connects, reads users, collaborations, role groups and
// production accounts with streaming paged searches, and maps them.
// Entries that cannot be mapped become Problems; any LDAP error fails the
// whole snapshot, so a half-read directory is never mistaken for a
// shrunken one.
func (s *Source) Snapshot(ctx context.Context) (*directory.Snapshot, error) {
	entries, users, err := s.readAll(ctx)
	if err != nil {
		return nil, err
	}
	return resolveWith(entries, resolveUsersInOrder(entries[StreamUsers], users, entries[StreamDisabled]), nil), nil
}

// Entries reads the whole directory as mapped entries, keyed by DN. The
// users are read on one connection and the other streams beside them on
// a second, to the same server (a paged search per connection: OpenLDAP
// keeps one paging state per connection).
func (s *Source) Entries(ctx context.Context) (Entries, error) {
	entries, _, err := s.readAll(ctx)
	return entries, err
}

// readAll is Entries, with the users' entries in the order they were read.
func (s *Source) readAll(ctx context.Context) (Entries, []*Mapped, error) {
	conn, err := s.client.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	return s.read(ctx, conn, func(ctx context.Context) (Conn, error) { return s.client.connect(ctx, conn.uri) })
}

// readOrder is the order a full read takes the streams in (and names them
// in errors).
var readOrder = [...]struct {
	stream StreamName
	what   string
}{{StreamUsers, "users"}, {StreamDisabled, "disabled users"}, {StreamCollaborations, "collaborations"}, {StreamRoleGroups, "role groups"},
	{StreamProduction, "production accounts"}}

// StreamOrder lists every stream in the order reads take them.
func StreamOrder() []StreamName {
	out := make([]StreamName, len(readOrder))
	for i, r := range readOrder {
		out[i] = r.stream
	}
	return out
}

// read reads every configured stream: the users on conn, the others on
// a connection from another, beside them (nil, or no connection made: on
// conn, after them). Any stream's failure fails the read and stops the
// other connection's: the error named is the first stream's, in
// readOrder, that failed on its own. users are the users' entries in the
// order they were read.
func (s *Source) read(ctx context.Context, conn Conn, another func(context.Context) (Conn, error)) (_ Entries, users []*Mapped, _ error) {
	searches := streams(s.cfg)
	var first, beside []int // of readOrder
	for i, r := range readOrder {
		switch _, ok := searches[r.stream]; {
		case !ok:
		case r.stream == StreamUsers || another == nil:
			first = append(first, i)
		default:
			beside = append(beside, i)
		}
	}
	read := make([]map[string]*Mapped, len(readOrder))
	lists := make([][]*Mapped, len(readOrder))
	errs := make([]error, len(readOrder))
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	readAll := func(c Conn, order []int) {
		for _, i := range order {
			r := readOrder[i]
			if read[i], lists[i], errs[i] = s.readStream(stop, c, r.stream, searches[r.stream]); errs[i] != nil {
				errs[i] = fmt.Errorf("read %s: %w", r.what, errs[i])
				cancel()
				return
			}
		}
	}
	var wg sync.WaitGroup
	var alone error // why there is no second connection
	if len(beside) > 0 {
		wg.Go(func() {
			c, err := another(stop)
			if err != nil {
				alone = err
				return
			}
			defer c.Close()
			readAll(c, beside)
		})
	}
	readAll(conn, first)
	wg.Wait()
	if alone != nil && stop.Err() == nil {
		// A server that takes one connection at a time still gets read.
		s.log.Info("no second LDAP connection; the other searches follow the users' on the first", "err", alone)
		readAll(conn, beside)
	}
	var failed error
	for _, err := range errs {
		if err != nil && (failed == nil || errors.Is(failed, context.Canceled) && !errors.Is(err, context.Canceled)) {
			failed = err
		}
	}
	if failed == nil {
		failed = ctx.Err() // never a partial read
	}
	if failed != nil {
		return nil, nil, failed
	}
	entries := Entries{}
	for _, i := range append(first, beside...) {
		if read[i] == nil { // not expected: never a partial read
			return nil, nil, fmt.Errorf("read %s: not read", readOrder[i].what)
		}
		entries[readOrder[i].stream] = read[i]
		if readOrder[i].stream == StreamUsers {
			users = lists[i]
		}
	}
	return entries, users, nil
}

// readStream reads one stream's entries, mapped, by DN and in the order
// they were read. A user is mapped as the connection reads it, from the
// receive buffer (mapTransient). The entries are gathered in a list and
// put in a map of their number at the end: a map grown entry by entry was
// rehashed on the way (at 1M users a tenth of the read's CPU, on its
// critical path).
func (s *Source) readStream(ctx context.Context, conn Conn, stream StreamName, search Search) (_ map[string]*Mapped, inOrder []*Mapped, _ error) {
	var read []*Mapped
	var onRead func(*ldap.Entry) any
	if transientStream(stream) {
		onRead = func(e *ldap.Entry) any { return s.em.mapTransient(stream, e) }
	}
	err := StreamMapped(ctx, conn, searchRequest(search, s.em.attributes(stream)), uint32(s.cfg.PageSize), onRead, func(e *ldap.Entry, mapped any) error {
		if mapped != nil {
			read = append(read, mapped.(*Mapped))
			return nil
		}
		if err := completeRanges(ctx, conn, e); err != nil {
			return err
		}
		read = append(read, s.em.mapEntry(stream, e))
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(read) == 0 && mustMatch(stream) {
		return nil, nil, noEntries(search)
	}
	byKey := make(map[string]*Mapped, len(read))
	for _, m := range read {
		byKey[m.DN] = m // mapEntry keeps the entry's DN; a DN read twice is its last
	}
	return byKey, read, nil
}

// Count connects and counts each configured search's entries (no
// attributes read). A users or collaborations search that matches nothing
// is an error (errNoEntries), after every search was counted.
func (s *Source) Count(ctx context.Context) (map[StreamName]int, error) {
	conn, err := s.client.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	searches := streams(s.cfg)
	counts := map[StreamName]int{}
	var errs []error
	for _, r := range readOrder {
		search, ok := searches[r.stream]
		if !ok {
			continue
		}
		n := 0
		err := Stream(ctx, conn, searchRequest(search, []string{"1.1"}), uint32(s.cfg.PageSize), func(*ldap.Entry) error { n++; return nil })
		if err != nil {
			return counts, fmt.Errorf("count %s: %w", r.what, err)
		}
		counts[r.stream] = n
		if n == 0 && mustMatch(r.stream) {
			errs = append(errs, fmt.Errorf("%s: %w", r.what, noEntries(search)))
		}
	}
	return counts, errors.Join(errs...)
}

// errNoEntries: a search for users or collaborations matched nothing, which
// is a wrong base DN or filter (or a bind user that may not read them)
// far more often than an empty centre.
var errNoEntries = errors.New("matched no entries")

// mustMatch: a directory without users or without collaborations is taken
// to be misconfigured; one without production accounts or role groups is not.
func mustMatch(s StreamName) bool { return s == StreamUsers || s == StreamCollaborations }

func noEntries(s Search) error {
	return fmt.Errorf("base %q, scope %s, filter %q %w: check the base DN and filter (ldap.schema presets a standard layout), "+
		"and that the bind user may read them", s.BaseDN, s.Scope, s.Filter, errNoEntries)
}

// roleGroupPattern turns "{collaboration}-{role}" into a regexp with the
// named groups "collab" and "role".
func roleGroupPattern(tmpl string) *regexp.Regexp {
	q := regexp.QuoteMeta(tmpl)
	q = strings.Replace(q, regexp.QuoteMeta("{collaboration}"), "(?P<collab>.+)", 1)
	roles := make([]string, 0, len(directory.Roles()))
	for _, r := range directory.Roles() {
		roles = append(roles, regexp.QuoteMeta(string(r)))
	}
	q = strings.Replace(q, regexp.QuoteMeta("{role}"), "(?P<role>"+strings.Join(roles, "|")+")", 1)
	return regexp.MustCompile("^" + q + "$")
}

func searchRequest(s Search, attrs []string) *ldap.SearchRequest {
	scope := ldap.ScopeWholeSubtree
	switch s.Scope {
	case "one":
		scope = ldap.ScopeSingleLevel
	case "base":
		scope = ldap.ScopeBaseObject
	}
	return ldap.NewSearchRequest(s.BaseDN, scope, ldap.NeverDerefAliases, 0, 0, false, s.Filter, attrs, nil)
}
