package ldapx

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/config"
	"github.com/collabsync/collabsync/internal/directory"
)

// Source reads a full snapshot of the directory (it is an engine.Source).
type Source struct {
	client *Client
	mapper *Mapper
	cfg    config.LDAP
	log    *slog.Logger
	// byDN: some mapped value may be a user DN, so user DNs are indexed
	// (normalizing 100k DNs is not free).
	byDN bool
}

// NewSource returns a Source for the configured directory.
func NewSource(cfg config.LDAP, log *slog.Logger) *Source {
	g := cfg.Collaborations
	byDN := g.Membership == config.MembershipDN || g.Contacts.Groups != nil ||
		len(g.Contacts.Attributes) > 0 || cfg.Users.Attributes.ValidatedBy != ""
	return &Source{client: NewClient(cfg, log), mapper: NewMapper(cfg), cfg: cfg, log: log, byDN: byDN}
}

// Snapshot connects, reads users, collaborations, role groups and
// production accounts with streaming paged searches, and maps them.
// Entries that cannot be mapped become Problems; any LDAP error fails the
// whole snapshot, so a half-read directory is never mistaken for a
// shrunken one.
func (s *Source) Snapshot(ctx context.Context) (*directory.Snapshot, error) {
	conn, err := s.client.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return s.read(ctx, conn)
}

// reader is the work area of one snapshot.
type reader struct {
	s    *Source
	snap *directory.Snapshot
	// uidByDN maps normalized user DNs to uids; known holds every uid.
	uidByDN map[string]string
	known   map[string]bool
	// collabByDN maps normalized collaboration DNs to names.
	collabByDN map[string]string
	collabs    []RawCollaboration
}

func (r *reader) problem(dn, format string, args ...any) {
	r.snap.Problems = append(r.snap.Problems, directory.Problem{DN: dn, Reason: fmt.Sprintf(format, args...)})
}

// dangling records a reference to a user that does not exist.
func (r *reader) dangling(dn, format string, args ...any) {
	r.snap.Problems = append(r.snap.Problems, directory.Problem{DN: dn, Reason: fmt.Sprintf(format, args...), Reference: true})
}

// uidOf resolves a DN or a uid to a known uid.
func (r *reader) uidOf(v string) (string, bool) {
	if strings.Contains(v, "=") {
		uid, ok := r.uidByDN[NormalizeDN(v)]
		return uid, ok
	}
	return v, r.known[v]
}

func (s *Source) read(ctx context.Context, conn Conn) (*directory.Snapshot, error) {
	r := &reader{s: s, snap: &directory.Snapshot{}, uidByDN: map[string]string{}, known: map[string]bool{}, collabByDN: map[string]string{}}
	pageSize := uint32(s.cfg.PageSize)
	type pending struct {
		index     int
		validator string // DN or uid
	}
	var validated []pending
	err := Stream(ctx, conn, searchRequest(s.cfg.Users.Search, s.mapper.UserAttributes()), pageSize, func(e *ldap.Entry) error {
		u, err := s.mapper.User(e)
		if err != nil {
			r.problem(e.DN, "%v", err)
			return nil
		}
		if s.byDN {
			r.uidByDN[NormalizeDN(u.DN)] = u.UID
		}
		r.known[u.UID] = true
		if u.ValidatedBy != "" {
			validated = append(validated, pending{len(r.snap.Users), u.ValidatedBy})
		}
		r.snap.Users = append(r.snap.Users, u.User)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	// Validators can only be resolved once every user is known.
	for _, v := range validated {
		u := &r.snap.Users[v.index]
		if uid, ok := r.uidOf(v.validator); ok {
			u.ValidatedBy = uid
		} else {
			r.dangling(u.DN, "validator %q is not a known user; the account counts as not validated", v.validator)
		}
	}

	err = Stream(ctx, conn, searchRequest(s.cfg.Collaborations.Search, s.mapper.CollaborationAttributes()), pageSize, func(e *ldap.Entry) error {
		c, err := s.mapper.Collaboration(e)
		if err != nil {
			r.problem(e.DN, "%v", err)
			return nil
		}
		r.collabByDN[NormalizeDN(c.DN)] = c.Name
		r.collabs = append(r.collabs, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read collaborations: %w", err)
	}
	if err := r.readRoleGroups(ctx, conn); err != nil {
		return nil, fmt.Errorf("read role groups: %w", err)
	}
	r.resolveCollaborations()

	if s.cfg.ProductionAccounts != nil {
		if err := r.readProduction(ctx, conn); err != nil {
			return nil, fmt.Errorf("read production accounts: %w", err)
		}
	}
	r.snap.Sort()
	return r.snap, nil
}

// resolveCollaborations turns member and contact values into uids.
func (r *reader) resolveCollaborations() {
	for _, raw := range r.collabs {
		c := raw.Collaboration
		var unknown []string
		c.Members, unknown = Members(raw.MemberValues, r.uidOf)
		for _, v := range unknown {
			r.dangling(c.DN, "member %q is not a known user; left out", v)
		}
		c.Contacts = map[directory.Role][]string{}
		for role, values := range raw.ContactValues {
			uids, unknown := Members(values, r.uidOf)
			for _, v := range unknown {
				r.dangling(c.DN, "%s contact %q is not a known user; left out", role, v)
			}
			if len(uids) > 0 {
				c.Contacts[role] = uids
			}
		}
		r.snap.Collaborations = append(r.snap.Collaborations, c)
	}
}

// readRoleGroups adds contacts from groups named after the configured
// pattern, e.g. cn=atlas-computing,ou=roles,...
func (r *reader) readRoleGroups(ctx context.Context, conn Conn) error {
	rg := r.s.cfg.Collaborations.Contacts.Groups
	if rg == nil {
		return nil
	}
	byName := make(map[string]int, len(r.collabs))
	for i, c := range r.collabs {
		byName[c.Name] = i
	}
	pattern := roleGroupPattern(rg.Name)
	return Stream(ctx, conn, searchRequest(rg.Search, []string{rg.NameAttribute, rg.Members}), uint32(r.s.cfg.PageSize), func(e *ldap.Entry) error {
		name, err := rdnPreferred(e, rg.NameAttribute)
		if err != nil {
			r.problem(e.DN, "role group: %v", err)
			return nil
		}
		m := pattern.FindStringSubmatch(name)
		if m == nil {
			r.problem(e.DN, "role group name %q does not match %q", name, rg.Name)
			return nil
		}
		collab, role := m[pattern.SubexpIndex("collab")], directory.Role(m[pattern.SubexpIndex("role")])
		i, ok := byName[collab]
		if !ok {
			r.problem(e.DN, "role group for unknown collaboration %q", collab)
			return nil
		}
		c := &r.collabs[i]
		c.ContactValues[role] = append(c.ContactValues[role], e.GetEqualFoldAttributeValues(rg.Members)...)
		return nil
	})
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

func (r *reader) readProduction(ctx context.Context, conn Conn) error {
	pm := r.s.cfg.ProductionAccounts
	return Stream(ctx, conn, searchRequest(pm.Search, r.s.mapper.ProductionAttributes()), uint32(r.s.cfg.PageSize), func(e *ldap.Entry) error {
		p, err := r.s.mapper.Production(e)
		if err != nil {
			r.problem(e.DN, "%v", err)
			return nil
		}
		if p.Owner != "" {
			if strings.Contains(p.Owner, "=") {
				name, ok := r.collabByDN[NormalizeDN(p.Owner)]
				if !ok {
					r.problem(e.DN, "owner %q is not a known collaboration", p.Owner)
					return nil
				}
				p.Collaboration = name
			} else {
				p.Collaboration = p.Owner
			}
		}
		r.snap.ProductionAccounts = append(r.snap.ProductionAccounts, p.ProductionAccount)
		return nil
	})
}

func searchRequest(s config.Search, attrs []string) *ldap.SearchRequest {
	scope := ldap.ScopeWholeSubtree
	switch s.Scope {
	case "one":
		scope = ldap.ScopeSingleLevel
	case "base":
		scope = ldap.ScopeBaseObject
	}
	return ldap.NewSearchRequest(s.BaseDN, scope, ldap.NeverDerefAliases, 0, 0, false, s.Filter, attrs, nil)
}
