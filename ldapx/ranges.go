package ldapx

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// completeRanges fetches the rest of the attributes Active Directory sent
// in ranges (a group of more than 1,500 members comes as
// member;range=0-1499): it asks for the next range until the server says
// "*", and keeps the values under the attribute's own name. An entry
// without ranged attributes costs a look at its attribute names.
func completeRanges(ctx context.Context, conn Conn, e *ldap.Entry) error {
	for i, a := range e.Attributes {
		name, rng, ok := strings.Cut(a.Name, ";range=")
		if !ok {
			continue
		}
		values := append([]string(nil), a.Values...)
		_, hi, _ := strings.Cut(rng, "-")
		for hi != "*" {
			last, err := strconv.Atoi(hi)
			if err != nil {
				return fmt.Errorf("%s: attribute %s has range %q", e.DN, a.Name, rng)
			}
			got, err := nextRange(ctx, conn, e.DN, name, last+1)
			if err != nil {
				return err
			}
			values = append(values, got.Values...)
			_, r, _ := strings.Cut(got.Name, ";range=")
			lo, next, _ := strings.Cut(r, "-")
			if n, err := strconv.Atoi(lo); err != nil || n != last+1 {
				return fmt.Errorf("%s: asked for %s from %d, the server sent %s", e.DN, name, last+1, got.Name)
			}
			hi = next
		}
		e.Attributes[i] = &ldap.EntryAttribute{Name: name, Values: values}
	}
	return nil
}

// nextRange reads one more range of an attribute of the entry at dn.
func nextRange(ctx context.Context, conn Conn, dn, name string, from int) (*ldap.EntryAttribute, error) {
	want := fmt.Sprintf("%s;range=%d-*", name, from)
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{want}, nil)
	resp := conn.SearchAsync(ctx, req, 1)
	var got *ldap.EntryAttribute
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			for _, a := range e.Attributes {
				if strings.HasPrefix(strings.ToLower(a.Name), strings.ToLower(name)+";range=") {
					got = a
				}
			}
		}
	}
	if err := resp.Err(); err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", dn, want, err)
	}
	if got == nil {
		return nil, fmt.Errorf("%s: the server sent %s in ranges and then nothing from %d", dn, name, from)
	}
	return got, nil
}
