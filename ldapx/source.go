package ldapx

import (
	"context"
	"fmt"
	"log/slog"

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
}

// NewSource returns a Source for the configured directory.
func NewSource(cfg config.LDAP, log *slog.Logger) *Source {
	return &Source{client: NewClient(cfg, log), mapper: NewMapper(cfg), cfg: cfg, log: log}
}

// Snapshot connects, reads every user and collaboration with a streaming
// paged search, and maps them. Entries that cannot be mapped become
// Problems; any LDAP error fails the whole snapshot, so a half-read
// directory is never mistaken for a shrunken one.
func (s *Source) Snapshot(ctx context.Context) (*directory.Snapshot, error) {
	conn, err := s.client.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return s.read(ctx, conn)
}

func (s *Source) read(ctx context.Context, conn Conn) (*directory.Snapshot, error) {
	snap := &directory.Snapshot{}
	byDN := s.cfg.Collaborations.Membership == config.MembershipDN
	uidByDN := make(map[string]string) // normalized user DN → uid, for member_dn
	known := make(map[string]bool)     // uids, for member_uid
	err := Stream(ctx, conn, searchRequest(s.cfg.Users.Search, s.mapper.UserAttributes()), uint32(s.cfg.PageSize),
		func(e *ldap.Entry) error {
			u, err := s.mapper.User(e)
			if err != nil {
				snap.Problems = append(snap.Problems, directory.Problem{DN: e.DN, Reason: err.Error()})
				return nil
			}
			snap.Users = append(snap.Users, u)
			if byDN {
				uidByDN[NormalizeDN(u.DN)] = u.UID
			} else {
				known[u.UID] = true
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}

	uidOf := func(v string) (string, bool) { return v, known[v] }
	if byDN {
		uidOf = func(v string) (string, bool) { uid, ok := uidByDN[NormalizeDN(v)]; return uid, ok }
	}
	err = Stream(ctx, conn, searchRequest(s.cfg.Collaborations.Search, s.mapper.CollaborationAttributes()), uint32(s.cfg.PageSize),
		func(e *ldap.Entry) error {
			raw, err := s.mapper.Collaboration(e)
			if err != nil {
				snap.Problems = append(snap.Problems, directory.Problem{DN: e.DN, Reason: err.Error()})
				return nil
			}
			c := raw.Collaboration
			var unknown []string
			c.Members, unknown = Members(raw.MemberValues, uidOf)
			for _, v := range unknown {
				snap.Problems = append(snap.Problems, directory.Problem{DN: e.DN,
					Reason: fmt.Sprintf("member %q is not a known user; left out", v)})
			}
			snap.Collaborations = append(snap.Collaborations, c)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read collaborations: %w", err)
	}
	snap.Finish()
	return snap, nil
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
