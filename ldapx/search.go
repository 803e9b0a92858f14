package ldapx

import (
	"context"
	"errors"
	"fmt"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/go-ldap/ldap/v3"
)

// Stream runs a paged search (RFC 2696) and hands each entry to fn as it
// arrives. Only one page is ever in flight, so memory does not grow with the
// size of the result (go-ldap's SearchWithPaging buffers it all).
//
// The paging control is sent as critical, so a server must either page or
// refuse; then every complete page ends with a paging control, and a page
// without one means the result was cut short (go-ldap ends a search on a
// closing connection without an error).
func Stream(ctx context.Context, conn Conn, req *ldap.SearchRequest, pageSize uint32, fn func(*ldap.Entry) error) error {
	return StreamMapped(ctx, conn, req, pageSize, nil, func(e *ldap.Entry, _ any) error { return fn(e) })
}

// entryMapping is a connection that maps entries as it reads them
// (Connection.SearchMapped).
type entryMapping interface {
	SearchMapped(ctx context.Context, req *ldap.SearchRequest, bufferSize int, mapEntry func(*ldap.Entry) any) MappedResponse
}

// MappedResponse is a search's Response whose entries may come mapped.
type MappedResponse interface {
	ldap.Response
	// Mapped is what the search's mapEntry made of the current message's
	// entry; nil when Entry is the entry, or the message is no entry.
	Mapped() any
}

// StreamMapped is Stream for a caller that maps each entry with mapEntry
// (nil: none): on a connection that maps as it reads, fn gets what
// mapEntry made of an entry, or the entry (mapped nil) when it was not
// mapped (it has ranged attributes, or the connection cannot); fn maps
// that one itself. mapEntry follows SearchMapped's rules.
func StreamMapped(ctx context.Context, conn Conn, req *ldap.SearchRequest, pageSize uint32, mapEntry func(*ldap.Entry) any, fn func(e *ldap.Entry, mapped any) error) error {
	paging := &criticalPaging{ControlPaging: ldap.ControlPaging{PagingSize: pageSize}}
	page := *req
	page.Controls = append(append([]ldap.Control(nil), req.Controls...), paging)
	for {
		cookie, err := streamPage(ctx, conn, &page, mapEntry, fn)
		if errors.Is(err, errCutShort) && missingBase(ctx, conn, req.BaseDN) {
			// 389-ds answers a paged search under a base that does not
			// exist with a bare success.
			err = fmt.Errorf("%w: %q does not exist", errNoBase, req.BaseDN)
		}
		if err != nil {
			return fmt.Errorf("search %q under %q: %w", req.Filter, req.BaseDN, limitHint(err))
		}
		if len(cookie) == 0 {
			return nil
		}
		paging.SetCookie(cookie)
	}
}

// streamPage returns the cookie for the next page, empty after the last.
func streamPage(ctx context.Context, conn Conn, req *ldap.SearchRequest, mapEntry func(*ldap.Entry) any, fn func(*ldap.Entry, any) error) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var resp ldap.Response
	mapped := func() any { return nil }
	if m, ok := conn.(entryMapping); ok && mapEntry != nil {
		r := m.SearchMapped(ctx, req, 64, mapEntry)
		resp, mapped = r, r.Mapped
	} else {
		resp = conn.SearchAsync(ctx, req, 64)
	}
	var cookie []byte
	sawDone := false
	for resp.Next() {
		if e, m := resp.Entry(), mapped(); e != nil || m != nil {
			if err := fn(e, m); err != nil {
				return nil, err
			}
			continue
		}
		if c, ok := ldap.FindControl(resp.Controls(), ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
			cookie, sawDone = c.Cookie, true
		}
	}
	if err := resp.Err(); err != nil {
		return nil, err
	}
	// go-ldap reports a cancelled search as a clean end: say it was not.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !sawDone {
		return nil, errCutShort
	}
	return cookie, nil
}

// errCutShort: a page ended without its paging control.
var errCutShort = errors.New("result cut short: the page ended without its paging control (connection lost?)")

// errNoBase: a search's base DN does not exist.
var errNoBase = errors.New("no such base DN")

// missingBase reports whether the server says base does not exist (a
// base-scope read of it answers noSuchObject).
func missingBase(ctx context.Context, conn Conn, base string) bool {
	req := ldap.NewSearchRequest(base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{noAttributes}, nil)
	resp := conn.SearchAsync(ctx, req, 1)
	found := false
	for resp.Next() {
		found = found || resp.Entry() != nil
	}
	return !found && ldap.IsErrorWithCode(resp.Err(), ldap.LDAPResultNoSuchObject)
}

// criticalPaging is go-ldap's paging control marked critical (RFC 2696
// allows either; go-ldap always sends it non-critical).
type criticalPaging struct {
	ldap.ControlPaging
}

func (c *criticalPaging) Encode() *ber.Packet {
	inner := c.ControlPaging.Encode() // SEQUENCE { type, value }
	packet := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	packet.AppendChild(inner.Children[0])
	packet.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, "Criticality"))
	packet.AppendChild(inner.Children[1])
	return packet
}

// limitHint names the server settings behind a limit error: the directory
// refused to return all entries to this bind user.
func limitHint(err error) error {
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || ldap.IsErrorWithCode(err, ldap.LDAPResultAdminLimitExceeded) {
		return fmt.Errorf("%w; a server limit on the bind user cut the search: on 389-ds/FreeIPA give the bind entry "+
			"nsSizeLimit: -1 and nsLookThroughLimit: -1; on OpenLDAP raise olcLimits (size, size.pr) for the bind DN", err)
	}
	return err
}
