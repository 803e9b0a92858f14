package ldapx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// fakeConn serves scripted pages and can fail mid-page, to test what
// real servers do only rarely.
type fakeConn struct {
	pages    [][]*ldap.Entry
	failPage int // page index whose stream ends in failErr; -1 for none
	failErr  error
	requests []*ldap.SearchRequest
}

type fakeResponse struct {
	items []ldap.SearchSingleResult
	i     int
	cur   ldap.SearchSingleResult
	err   error
}

func (r *fakeResponse) Next() bool {
	if r.i >= len(r.items) {
		return false
	}
	r.cur = r.items[r.i]
	r.i++
	if r.cur.Error != nil {
		r.err = r.cur.Error
		return false
	}
	return true
}
func (r *fakeResponse) Entry() *ldap.Entry       { return r.cur.Entry }
func (r *fakeResponse) Referral() string         { return "" }
func (r *fakeResponse) Controls() []ldap.Control { return r.cur.Controls }
func (r *fakeResponse) Err() error               { return r.err }

func (f *fakeConn) SearchAsync(ctx context.Context, req *ldap.SearchRequest, _ int) ldap.Response {
	cp := *req
	f.requests = append(f.requests, &cp)
	page := 0
	c, ok := ldap.FindControl(req.Controls, ldap.ControlTypePaging).(*criticalPaging)
	if !ok {
		panic("search without the critical paging control")
	}
	if len(c.Cookie) > 0 {
		page = int(c.Cookie[0])
	}
	r := &fakeResponse{}
	for _, e := range f.pages[page] {
		r.items = append(r.items, ldap.SearchSingleResult{Entry: e})
	}
	if page == f.failPage {
		r.items = append(r.items, ldap.SearchSingleResult{Error: f.failErr})
		return r
	}
	pc := ldap.NewControlPaging(0)
	if page+1 < len(f.pages) {
		pc.SetCookie([]byte{byte(page + 1)})
	}
	r.items = append(r.items, ldap.SearchSingleResult{Controls: []ldap.Control{pc}})
	return r
}
func (f *fakeConn) Close() error { return nil }

func entries(prefix string, n int) []*ldap.Entry {
	var out []*ldap.Entry
	for i := 0; i < n; i++ {
		out = append(out, ldap.NewEntry("uid="+prefix+string(rune('a'+i))+",dc=x", nil))
	}
	return out
}

func TestStreamPages(t *testing.T) {
	f := &fakeConn{pages: [][]*ldap.Entry{entries("p", 3), entries("q", 3), entries("r", 1)}, failPage: -1}
	var got []string
	err := Stream(context.Background(), f, ldap.NewSearchRequest("dc=x", 2, 0, 0, 0, false, "(uid=*)", nil, nil), 3,
		func(e *ldap.Entry) error { got = append(got, e.DN); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || len(f.requests) != 3 {
		t.Errorf("got %d entries in %d requests, want 7 in 3", len(got), len(f.requests))
	}
}

func TestStreamFailureMidSearch(t *testing.T) {
	netErr := ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: response channel closed"))
	f := &fakeConn{pages: [][]*ldap.Entry{entries("p", 3), entries("q", 3)}, failPage: 1, failErr: netErr}
	n := 0
	err := Stream(context.Background(), f, ldap.NewSearchRequest("ou=people,dc=x", 2, 0, 0, 0, false, "(uid=*)", nil, nil), 3,
		func(*ldap.Entry) error { n++; return nil })
	if err == nil || !errors.Is(err, netErr) || !strings.Contains(err.Error(), `under "ou=people,dc=x"`) {
		t.Fatalf("err = %v, want the network error wrapped with the base DN", err)
	}
}

// TestSnapshotFailsWhole: a directory read that fails half-way must fail
// the whole snapshot, never return the half that was read (a sync would
// then delete the other half).
func TestSnapshotFailsWhole(t *testing.T) {
	netErr := errors.New("connection reset")
	users := []*ldap.Entry{ldap.NewEntry("uid=alice,dc=x", map[string][]string{"uid": {"alice"}, "uidNumber": {"1000"}, "gidNumber": {"1000"}})}
	f := &fakeConn{pages: [][]*ldap.Entry{users, users}, failPage: 1, failErr: netErr}
	cfg := testLDAPConfig()
	cfg.PageSize = 1
	cfg.Users.Search = Search{BaseDN: "dc=x", Filter: "(uid=*)"}
	s := &Source{mapper: NewMapper(cfg), em: newEntryMapper(cfg), cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	snap, _, err := s.read(context.Background(), f, nil)
	if snap != nil || !errors.Is(err, netErr) {
		t.Fatalf("snapshot %v, err %v: want nil and the error", snap, err)
	}
}

func TestCriticalPagingEncoding(t *testing.T) {
	p := (&criticalPaging{ControlPaging: ldap.ControlPaging{PagingSize: 500}}).Encode()
	if len(p.Children) != 3 || p.Children[1].Value != true {
		t.Fatalf("control is not marked critical: %d children", len(p.Children))
	}
	dec, err := ldap.DecodeControl(p)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := dec.(*ldap.ControlPaging); !ok || c.PagingSize != 500 {
		t.Errorf("decodes to %#v", dec)
	}
}

// stuckConn answers every search with nothing until the search's context
// ends, then with its error.
type stuckConn struct{}

type stuckResponse struct {
	ctx context.Context
	err error
}

func (r *stuckResponse) Next() bool               { <-r.ctx.Done(); r.err = r.ctx.Err(); return false }
func (r *stuckResponse) Entry() *ldap.Entry       { return nil }
func (r *stuckResponse) Referral() string         { return "" }
func (r *stuckResponse) Controls() []ldap.Control { return nil }
func (r *stuckResponse) Err() error               { return r.err }
func (stuckConn) Close() error                    { return nil }
func (stuckConn) SearchAsync(ctx context.Context, _ *ldap.SearchRequest, _ int) ldap.Response {
	return &stuckResponse{ctx: ctx}
}

// TestReadBesideFailsWhole: the streams read on the second connection
// fail the whole read, naming the stream, and stop the users' read; an
// ended context fails it too, never returning what was read. Without a
// second connection the other streams are read on the first, after the
// users.
func TestReadBesideFailsWhole(t *testing.T) {
	cfg := testLDAPConfig()
	cfg.PageSize = 1
	s := &Source{mapper: NewMapper(cfg), em: newEntryMapper(cfg), cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	groupsFail := errors.New("groups unreadable")
	for _, tc := range []struct {
		name    string
		another func(context.Context) (Conn, error)
		want    error
	}{
		{"a stream fails", func(context.Context) (Conn, error) {
			return &fakeConn{pages: [][]*ldap.Entry{nil}, failPage: 0, failErr: groupsFail}, nil
		}, groupsFail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				entries, _, err := s.read(context.Background(), stuckConn{}, tc.another)
				if entries != nil {
					err = fmt.Errorf("entries %v returned with %w", entries, err)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), "read collaborations: ") {
					t.Errorf("err = %v, want %v named for the collaborations", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the users' read went on after the collaborations' failed")
			}
		})
	}
	t.Run("no second connection", func(t *testing.T) {
		users := []*ldap.Entry{ldap.NewEntry("uid=alice,dc=x", map[string][]string{"uid": {"alice"}, "uidNumber": {"1000"}, "gidNumber": {"1000"}})}
		first := &fakeConn{pages: [][]*ldap.Entry{users}, failPage: -1}
		entries, _, err := s.read(context.Background(), first, func(context.Context) (Conn, error) { return nil, errors.New("too many connections") })
		if err != nil {
			t.Fatal(err)
		}
		if len(entries[StreamUsers]) != 1 || entries[StreamCollaborations] == nil {
			t.Errorf("entries %v: want the users and the collaborations", entries)
		}
		var bases []string
		for _, r := range first.requests {
			bases = append(bases, r.BaseDN)
		}
		if want := []string{cfg.Users.Search.BaseDN, cfg.Collaborations.Search.BaseDN}; !slices.Equal(bases, want) {
			t.Errorf("searched %q on the first connection, want %q", bases, want)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		users := []*ldap.Entry{ldap.NewEntry("uid=alice,dc=x", map[string][]string{"uid": {"alice"}, "uidNumber": {"1000"}, "gidNumber": {"1000"}})}
		entries, _, err := s.read(ctx, &fakeConn{pages: [][]*ldap.Entry{users}, failPage: -1},
			func(context.Context) (Conn, error) { return stuckConn{}, nil })
		if entries != nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("entries %v, err %v: want none and the deadline", entries, err)
		}
	})
}
