package ldapx

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/config"
	"github.com/collabsync/collabsync/internal/directory"
)

// Mapper turns LDAP entries into model objects according to the configured
// attribute mapping. Every problem names the entry's DN.
type Mapper struct {
	cfg config.LDAP
}

// NewMapper returns a mapper for the configured attribute names.
func NewMapper(cfg config.LDAP) *Mapper { return &Mapper{cfg: cfg} }

// UserAttributes lists the attributes to request for users: only the mapped ones.
func (m *Mapper) UserAttributes() []string {
	a := m.cfg.Users.Attributes
	return nonEmpty(a.UID, a.UIDNumber, a.GIDNumber, a.Name, a.Mail, a.Home, a.Shell)
}

// CollaborationAttributes lists the attributes to request for collaborations.
func (m *Mapper) CollaborationAttributes() []string {
	a := m.cfg.Collaborations.Attributes
	return nonEmpty(a.Name, a.GIDNumber, a.Members)
}

// namePattern is what a Unix user or group name may look like: portable
// characters, not all digits (that would read as a number), at most 32 bytes.
var namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)

// ValidName reports whether s can be a Unix user or group name.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// User maps a user entry.
func (m *Mapper) User(e *ldap.Entry) (directory.User, error) {
	a := m.cfg.Users.Attributes
	u := directory.User{DN: e.DN}
	var err error
	if u.UID, err = rdnPreferred(e, a.UID); err != nil {
		return u, err
	}
	if !ValidName(u.UID) {
		return u, fmt.Errorf("%s %q is not a valid user name", a.UID, u.UID)
	}
	if u.UIDNumber, err = idNumber(e, a.UIDNumber); err != nil {
		return u, err
	}
	if u.GIDNumber, err = idNumber(e, a.GIDNumber); err != nil {
		return u, err
	}
	if u.Name, err = optionalSingle(e, a.Name); err != nil {
		return u, err
	}
	if u.Mail, err = optionalSingle(e, a.Mail); err != nil {
		return u, err
	}
	if u.Home, err = optionalSingle(e, a.Home); err != nil {
		return u, err
	}
	if u.Home == "" {
		u.Home = strings.ReplaceAll(m.cfg.Users.DefaultHome, "{uid}", u.UID)
	}
	if err := checkPath(a.Home, u.Home); err != nil {
		return u, err
	}
	if u.Shell, err = optionalSingle(e, a.Shell); err != nil {
		return u, err
	}
	if u.Shell == "" {
		u.Shell = m.cfg.Users.DefaultShell
	}
	if err := checkPath(a.Shell, u.Shell); err != nil {
		return u, err
	}
	return u, nil
}

// RawCollaboration is a collaboration whose member values are not resolved
// to uids yet (member DNs need the users read first).
type RawCollaboration struct {
	directory.Collaboration
	MemberValues []string
}

// Collaboration maps a collaboration entry.
func (m *Mapper) Collaboration(e *ldap.Entry) (RawCollaboration, error) {
	a := m.cfg.Collaborations.Attributes
	c := RawCollaboration{Collaboration: directory.Collaboration{DN: e.DN}}
	var err error
	if c.Name, err = rdnPreferred(e, a.Name); err != nil {
		return c, err
	}
	if !ValidName(c.Name) {
		return c, fmt.Errorf("%s %q is not a valid group name", a.Name, c.Name)
	}
	if c.GIDNumber, err = idNumber(e, a.GIDNumber); err != nil {
		return c, err
	}
	c.MemberValues = e.GetEqualFoldAttributeValues(a.Members)
	return c, nil
}

// Members resolves member values to sorted, unique uids. uidOf maps a member
// DN (member_dn) or a uid (member_uid) to a known uid; values it does not
// know are returned as unknown.
func Members(values []string, uidOf func(string) (string, bool)) (uids, unknown []string) {
	seen := make(map[string]bool, len(values))
	for _, v := range values {
		uid, ok := uidOf(v)
		if !ok {
			unknown = append(unknown, v)
			continue
		}
		if !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	sort.Strings(uids)
	return uids, unknown
}

// rdnPreferred returns the single value of attr; when the attribute has
// several values (uid and cn are multi-valued in the standard schemas) the
// one used in the entry's RDN wins.
func rdnPreferred(e *ldap.Entry, attr string) (string, error) {
	vals := e.GetEqualFoldAttributeValues(attr)
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("missing %s", attr)
	case 1:
		return vals[0], nil
	}
	if dn, err := ldap.ParseDN(e.DN); err == nil && len(dn.RDNs) > 0 {
		for _, ava := range dn.RDNs[0].Attributes {
			if strings.EqualFold(ava.Type, attr) {
				for _, v := range vals {
					if v == ava.Value {
						return v, nil
					}
				}
			}
		}
	}
	return "", fmt.Errorf("%s has %d values and none is the RDN", attr, len(vals))
}

func optionalSingle(e *ldap.Entry, attr string) (string, error) {
	if attr == "" {
		return "", nil
	}
	vals := e.GetEqualFoldAttributeValues(attr)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
		return vals[0], nil
	}
	return "", fmt.Errorf("%s has %d values, want one", attr, len(vals))
}

// idNumber parses a uid or gid number. 0 (root) and 2^32-1 (the (uid_t)-1
// sentinel) are never provisioned.
func idNumber(e *ldap.Entry, attr string) (uint32, error) {
	vals := e.GetEqualFoldAttributeValues(attr)
	switch len(vals) {
	case 0:
		return 0, fmt.Errorf("missing %s", attr)
	case 1:
	default:
		return 0, fmt.Errorf("%s has %d values, want one", attr, len(vals))
	}
	n, err := strconv.ParseUint(vals[0], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number between 1 and 4294967294", attr, vals[0])
	}
	if n == 0 || n == 1<<32-1 {
		return 0, fmt.Errorf("%s %d is reserved", attr, n)
	}
	return uint32(n), nil
}

func checkPath(attr, p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ":\n\r\x00") {
		return fmt.Errorf("%s %q is not an absolute path usable in passwd", attr, p)
	}
	return nil
}

func nonEmpty(names ...string) []string {
	out := names[:0:0]
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}
