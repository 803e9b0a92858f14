package ldapx

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
)

// Mapper turns LDAP entries into model objects according to the configured
// attribute mapping. Every problem names the entry's DN.
type Mapper struct {
	cfg Config
}

// NewMapper returns a mapper for the configured attribute names.
func NewMapper(cfg Config) *Mapper { return &Mapper{cfg: cfg} }

// UserAttributes lists the attributes to request for users: only the mapped ones.
func (m *Mapper) UserAttributes() []string {
	a := m.cfg.Users.Attributes
	return nonEmpty(a.UID, a.UIDNumber, a.GIDNumber, a.Name, a.Mail, a.Home, a.Shell,
		a.Status, a.Affiliation, a.ValidatedBy, a.OptOuts, a.Expires, a.PrivateGroup)
}

// CollaborationAttributes lists the attributes to request for collaborations.
func (m *Mapper) CollaborationAttributes() []string {
	a := m.cfg.Collaborations.Attributes
	attrs := nonEmpty(a.Name, a.GIDNumber, a.Members, a.Kind, a.Status, a.ReviewedUntil, a.Fairshare, a.Lists, a.Activity, a.Allocation, a.GPUAllocation)
	for _, role := range directory.Roles() {
		if attr := m.cfg.Collaborations.Contacts.Attributes[role]; attr != "" {
			attrs = append(attrs, attr)
		}
	}
	return attrs
}

// ProductionAttributes lists the attributes to request for production accounts.
func (m *Mapper) ProductionAttributes() []string {
	a := m.cfg.ProductionAccounts.Attributes
	return nonEmpty(a.Name, a.UIDNumber, a.GIDNumber, a.Home, a.Shell, a.Collaboration, a.Managers)
}

// listName is what a collaboration may name a list: a mail local part,
// alone or with its domain (docs: csListName).
var listName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}(@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)?$`)

// validName reports whether s can be a Unix user or group name: portable
// characters, not all digits (that would read as a number), at most 32
// bytes; ^[A-Za-z_][A-Za-z0-9_.-]{0,31}$ without a regular expression
// (which was 2 % of plan's CPU at 100k users).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !nameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !nameStart(c) && !('0' <= c && c <= '9') && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func nameStart(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }

// rawUser is a user whose validator is not resolved to a uid yet: its
// ValidatedBy is the entry's value, a DN or a uid (resolving makes a copy
// with the uid, or none; a field of its own cost 16 bytes per user).
type rawUser struct {
	directory.User
}

// User maps a user entry.
func (m *Mapper) User(e *ldap.Entry) (rawUser, error) {
	u, err := m.user(e)
	if err != nil {
		return rawUser{}, err
	}
	a := m.cfg.Users.Attributes
	raw := rawUser{User: u}
	if raw.ValidatedBy, err = optionalSingle(e, a.ValidatedBy); err != nil {
		return rawUser{}, err
	}
	if a.OptOuts != "" {
		raw.OptOuts = e.GetEqualFoldAttributeValues(a.OptOuts)
	}
	if raw.Affiliation, err = optionalSingle(e, a.Affiliation); err != nil {
		return rawUser{}, err
	}
	status, err := optionalSingle(e, a.Status)
	if err != nil {
		return rawUser{}, err
	}
	for _, v := range m.cfg.Users.SuspendedValues {
		if status != "" && strings.EqualFold(v, status) {
			raw.Suspended = true
		}
	}
	if v, err := optionalSingle(e, a.PrivateGroup); err != nil {
		return rawUser{}, err
	} else if v != "" {
		if raw.PrivateGroup, err = rdnValue(v); err != nil || !validName(raw.PrivateGroup) {
			return rawUser{}, fmt.Errorf("%s %q does not name a valid group", a.PrivateGroup, v)
		}
	}
	if v, err := optionalSingle(e, a.Expires); err != nil {
		return rawUser{}, err
	} else if raw.Expires, err = parseExpiry(v, m.cfg.Users.ExpiresFormat); err != nil {
		return rawUser{}, fmt.Errorf("%s: %w", a.Expires, err)
	}
	return raw, nil
}

// rdnValue is a DN's first RDN value, or v itself when it is no DN.
func rdnValue(v string) (string, error) {
	if !strings.Contains(v, "=") {
		return v, nil
	}
	dn, err := ldap.ParseDN(v)
	if err != nil || len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) != 1 {
		return "", fmt.Errorf("not a DN with a single-valued RDN")
	}
	return dn.RDNs[0].Attributes[0].Value, nil
}

// parseExpiry reads an account's expiry as Unix seconds (0: never).
func parseExpiry(v, format string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	switch format {
	case ExpiresFileTime:
		// 100 ns intervals since 1601-01-01; 0 and 2^63-1 mean never.
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a FILETIME (100 ns intervals since 1601)", v)
		}
		if n == 0 || n == math.MaxInt64 {
			return 0, nil
		}
		const epochDiff = 11644473600 // seconds from 1601 to 1970
		return expiry(n/10_000_000 - epochDiff), nil
	case ExpiresDays:
		// shadowExpire: days since 1970; -1 (or empty) means never; as
		// pam_unix, 0 is an account that expired on 1970-01-01.
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n > math.MaxInt64/86400 {
			return 0, fmt.Errorf("%q is not a number of days since 1970", v)
		}
		if n == -1 {
			return 0, nil
		}
		return expiry(n * 86400), nil
	default: // generalized_time
		t, err := parseDate(v)
		if err != nil {
			return 0, err
		}
		return expiry(t.Unix()), nil
	}
}

// expiry is an expiry in Unix seconds as User.Expires holds it: 0 means
// never, so the epoch itself is a second earlier.
func expiry(unix int64) int64 {
	if unix == 0 {
		return -1
	}
	return unix
}

func (m *Mapper) user(e *ldap.Entry) (directory.User, error) {
	a := m.cfg.Users.Attributes
	u := directory.User{DN: e.DN}
	var err error
	if u.UID, err = rdnPreferred(e, a.UID); err != nil {
		return u, err
	}
	if !validName(u.UID) {
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

// rawCollaboration is a collaboration whose member and contact values are
// not resolved to uids yet (DNs need the users read first).
type rawCollaboration struct {
	directory.Collaboration
	// expandNested: members that are collaborations' groups count with
	// their members (ldap.collaborations.nested: expand).
	expandNested bool
	// badValues say which values were left out, and why.
	badValues    []string
	MemberValues []string
	// ContactValues are DNs or uids by role.
	ContactValues map[directory.Role][]string
}

// Collaboration maps a collaboration entry.
func (m *Mapper) Collaboration(e *ldap.Entry) (rawCollaboration, error) {
	a := m.cfg.Collaborations.Attributes
	c := rawCollaboration{Collaboration: directory.Collaboration{DN: e.DN}, expandNested: m.cfg.Collaborations.Nested == NestedExpand}
	var err error
	if c.Name, err = rdnPreferred(e, a.Name); err != nil {
		return c, err
	}
	if !validName(c.Name) {
		return c, fmt.Errorf("%s %q is not a valid group name", a.Name, c.Name)
	}
	if c.GIDNumber, err = idNumber(e, a.GIDNumber); err != nil {
		return c, err
	}
	// Sorted, memberUid values that are all known uids are the members
	// as they are (Members shares them).
	c.MemberValues = e.GetEqualFoldAttributeValues(a.Members)
	slices.Sort(c.MemberValues)

	g := m.cfg.Collaborations
	c.Kind = g.DefaultKind
	if v, err := optionalSingle(e, a.Kind); err != nil {
		return c, err
	} else if v != "" {
		if c.Kind = lookupValue(g.KindValues, v, directory.CollaborationKinds()); c.Kind == "" {
			return c, fmt.Errorf("%s %q is not a known kind (kind_values)", a.Kind, v)
		}
	}
	c.Status = directory.StatusActive
	if v, err := optionalSingle(e, a.Status); err != nil {
		return c, err
	} else if v != "" {
		if c.Status = lookupValue(g.StatusValues, v, directory.CollaborationStatuses()); c.Status == "" {
			return c, fmt.Errorf("%s %q is not a known status (status_values)", a.Status, v)
		}
	}
	if v, err := optionalSingle(e, a.ReviewedUntil); err != nil {
		return c, err
	} else if v != "" {
		if c.ReviewedUntil, err = parseDate(v); err != nil {
			return c, fmt.Errorf("%s: %w", a.ReviewedUntil, err)
		}
	}
	c.Fairshare = g.DefaultFairshare
	if v, err := optionalSingle(e, a.Fairshare); err != nil {
		return c, err
	} else if v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, fmt.Errorf("%s %q is not a non-negative number", a.Fairshare, v)
		}
		c.Fairshare = n
	}
	if a.Lists != "" {
		// A value that is no list name is left out alone (named by the
		// resolver): the collaboration stays, with its other lists.
		for _, l := range e.GetEqualFoldAttributeValues(a.Lists) {
			if listName.MatchString(l) {
				c.Lists = append(c.Lists, l)
			} else {
				c.badValues = append(c.badValues, fmt.Sprintf("%s %q is not a list name (a local part, or local@domain); left out", a.Lists, l))
			}
		}
	}
	if c.Activity, err = optionalSingle(e, a.Activity); err != nil {
		return c, err
	}
	if c.Allocation.CoreHours, err = hours(e, a.Allocation); err != nil {
		return c, err
	}
	if c.Allocation.GPUHours, err = hours(e, a.GPUAllocation); err != nil {
		return c, err
	}
	c.ContactValues = map[directory.Role][]string{}
	for role, attr := range g.Contacts.Attributes {
		if vals := e.GetEqualFoldAttributeValues(attr); len(vals) > 0 {
			c.ContactValues[role] = vals
		}
	}
	return c, nil
}

// lookupValue maps an LDAP value to the model value whose list in m holds
// it. A model value that m does not remap stands for itself, so the shipped
// schema's values need no mapping. "" means unknown.
func lookupValue[M ~string](m map[M][]string, v string, models []M) M {
	for model, values := range m {
		for _, x := range values {
			if strings.EqualFold(x, v) {
				return model
			}
		}
	}
	lv := M(strings.ToLower(v))
	if _, remapped := m[lv]; !remapped && slices.Contains(models, lv) {
		return lv
	}
	return ""
}

// parseDate reads a GeneralizedTime (20261231000000Z) or a plain date
// (2026-12-31, taken as the end of that day in UTC).
func parseDate(v string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t.Add(24*time.Hour - time.Second), nil
	}
	for _, layout := range []string{"20060102150405Z0700", "20060102150405Z", "20060102150405.999999Z0700"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a GeneralizedTime nor YYYY-MM-DD", v)
}

// rawProduction is a production account whose owner is not resolved yet.
type rawProduction struct {
	directory.ProductionAccount
	Owner string // a DN or a name
}

// Production maps a production account entry.
func (m *Mapper) Production(e *ldap.Entry) (rawProduction, error) {
	a := m.cfg.ProductionAccounts.Attributes
	p := rawProduction{ProductionAccount: directory.ProductionAccount{DN: e.DN}}
	var err error
	if p.Name, err = rdnPreferred(e, a.Name); err != nil {
		return p, err
	}
	if !validName(p.Name) {
		return p, fmt.Errorf("%s %q is not a valid user name", a.Name, p.Name)
	}
	if p.UIDNumber, err = idNumber(e, a.UIDNumber); err != nil {
		return p, err
	}
	if p.GIDNumber, err = idNumber(e, a.GIDNumber); err != nil {
		return p, err
	}
	if p.Home, err = optionalSingle(e, a.Home); err != nil {
		return p, err
	}
	if p.Home == "" {
		p.Home = strings.ReplaceAll(m.cfg.Users.DefaultHome, "{uid}", p.Name)
	}
	if err := checkPath(a.Home, p.Home); err != nil {
		return p, err
	}
	if p.Shell, err = optionalSingle(e, a.Shell); err != nil {
		return p, err
	}
	if p.Shell == "" {
		p.Shell = m.cfg.Users.DefaultShell
	}
	if err := checkPath(a.Shell, p.Shell); err != nil {
		return p, err
	}
	if p.Owner, err = optionalSingle(e, a.Collaboration); err != nil {
		return p, err
	}
	if a.Managers != "" {
		p.Managers = e.GetEqualFoldAttributeValues(a.Managers)
		sort.Strings(p.Managers)
	}
	return p, nil
}

// Members resolves member values to sorted, unique uids. uidOf maps a member
// DN (member_dn) or a uid (member_uid) to a known uid; values it does not
// know are returned as unknown.
//
// Values that are already sorted, unique, known uids are returned as they
// are (capped, so that an append copies): at 100k users in 10k groups that
// is 5 MB the live model does not hold twice.
func Members(values []string, uidOf func(string) (string, bool)) (uids, unknown []string) {
	if asIs := func() bool {
		for i, v := range values {
			if uid, ok := uidOf(v); !ok || uid != v || i > 0 && values[i-1] >= v {
				return false
			}
		}
		return true
	}(); asIs {
		return values[:len(values):len(values)], nil
	}
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

// hours reads an optional allocation: a whole number of hours, 0 without.
func hours(e *ldap.Entry, attr string) (int64, error) {
	v, err := optionalSingle(e, attr)
	if err != nil || v == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q is not a whole, non-negative number of hours", attr, v)
	}
	return n, nil
}
