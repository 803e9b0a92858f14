package ldapx

import (
	"context"
	"fmt"

	"github.com/go-ldap/ldap/v3"
)

// Stream runs a paged search (RFC 2696) and hands each entry to fn as it
// arrives. Only one page is ever in flight, so memory does not grow with the
// size of the result (go-ldap's SearchWithPaging buffers it all).
func Stream(ctx context.Context, conn Conn, req *ldap.SearchRequest, pageSize uint32, fn func(*ldap.Entry) error) error {
	paging := ldap.NewControlPaging(pageSize)
	page := *req
	page.Controls = append(append([]ldap.Control(nil), req.Controls...), paging)
	for {
		cookie, err := streamPage(ctx, conn, &page, fn)
		if err != nil {
			return fmt.Errorf("search %q under %q: %w", req.Filter, req.BaseDN, err)
		}
		if len(cookie) == 0 {
			return nil
		}
		paging.SetCookie(cookie)
	}
}

// streamPage returns the cookie for the next page, empty after the last.
func streamPage(ctx context.Context, conn Conn, req *ldap.SearchRequest, fn func(*ldap.Entry) error) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp := conn.SearchAsync(ctx, req, 64)
	var cookie []byte
	sawPaging := false
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			if err := fn(e); err != nil {
				return nil, err
			}
			continue
		}
		if c, ok := ldap.FindControl(resp.Controls(), ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
			cookie, sawPaging = c.Cookie, true
		}
	}
	if err := resp.Err(); err != nil {
		return nil, err
	}
	// go-ldap reports a cancelled search as a clean end: say it was not.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !sawPaging && req.Controls != nil {
		// A server that ignores the (non-critical) paging control returns
		// everything in one go; that is complete, not truncated.
		return nil, nil
	}
	return cookie, nil
}
