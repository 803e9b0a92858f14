package ldapx

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
)

// ErrNotFound says a looked-up object is not in the directory.
var ErrNotFound = errors.New("not found")

// Contacts looks up one collaboration's contacts by role with targeted
// searches (not a full read), like the centre's laboinfo command. The name
// comes from a user, so it only ever reaches LDAP escaped.
func (s *Source) Contacts(ctx context.Context, collaboration string) (map[directory.Role][]directory.User, error) {
	conn, err := s.client.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	g := s.cfg.Collaborations
	req := searchRequest(g.Search, s.mapper.CollaborationAttributes())
	req.Filter = andFilter(g.Filter, equalityFilter(g.Attributes.Name, collaboration))
	var found []rawCollaboration
	err = Stream(ctx, conn, req, uint32(s.cfg.PageSize), func(e *ldap.Entry) error {
		c, err := s.mapper.Collaboration(e)
		if err != nil {
			return fmt.Errorf("%s: %w", e.DN, err)
		}
		found = append(found, c)
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case len(found) == 0:
		return nil, fmt.Errorf("collaboration %q: %w", collaboration, ErrNotFound)
	case len(found) > 1:
		return nil, fmt.Errorf("collaboration %q: %d entries have that name (%s, %s)", collaboration, len(found), found[0].DN, found[1].DN)
	}
	values := found[0].ContactValues
	if rg := g.Contacts.Groups; rg != nil {
		for _, role := range directory.Roles() {
			name := strings.NewReplacer("{collaboration}", collaboration, "{role}", string(role)).Replace(rg.Name)
			req := searchRequest(rg.Search, []string{rg.Members})
			req.Filter = andFilter(rg.Filter, equalityFilter(rg.NameAttribute, name))
			err := Stream(ctx, conn, req, uint32(s.cfg.PageSize), func(e *ldap.Entry) error {
				values[role] = append(values[role], e.GetEqualFoldAttributeValues(rg.Members)...)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("role group %s: %w", name, err)
			}
		}
	}
	// Resolve every value once, then apply the reporting rule on uids.
	users := map[string]directory.User{}
	byRole := map[directory.Role][]string{}
	for role, vals := range values {
		for _, v := range vals {
			u, err := s.lookupUser(ctx, conn, v)
			if errors.Is(err, ErrNotFound) {
				s.log.Warn("contact is not a known user", "collaboration", collaboration, "role", role, "value", v)
				continue
			}
			if err != nil {
				return nil, err
			}
			users[u.UID] = u
			byRole[role] = append(byRole[role], u.UID)
		}
	}
	out := map[directory.Role][]directory.User{}
	for role, uids := range directory.EffectiveContacts(byRole) {
		sort.Strings(uids)
		for i, uid := range uids {
			if i > 0 && uids[i-1] == uid {
				continue
			}
			out[role] = append(out[role], users[uid])
		}
	}
	return out, nil
}

// lookupUser finds a user by DN (a base search) or by uid (an escaped
// equality filter), within the configured user search.
func (s *Source) lookupUser(ctx context.Context, conn Conn, v string) (directory.User, error) {
	us := s.cfg.Users
	req := searchRequest(us.Search, s.mapper.UserAttributes())
	if strings.Contains(v, "=") {
		if _, err := ldap.ParseDN(v); err != nil {
			return directory.User{}, fmt.Errorf("%q: %w", v, ErrNotFound)
		}
		req.BaseDN, req.Scope = v, ldap.ScopeBaseObject
	} else {
		req.Filter = andFilter(us.Filter, equalityFilter(us.Attributes.UID, v))
	}
	var user *directory.User
	err := Stream(ctx, conn, req, uint32(s.cfg.PageSize), func(e *ldap.Entry) error {
		u, err := s.mapper.User(e)
		if err != nil {
			return fmt.Errorf("%s: %w", e.DN, err)
		}
		user = &u.User
		return nil
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || err == nil && user == nil {
		return directory.User{}, fmt.Errorf("user %q: %w", v, ErrNotFound)
	}
	if err != nil {
		return directory.User{}, err
	}
	return *user, nil
}
