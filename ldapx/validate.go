package ldapx

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
)

// Problem is one invalid setting of the section.
type Problem struct {
	Key string // relative to the section: "users.base_dn"
	Msg string
}

type configProblems []Problem

func (ps *configProblems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Validate reports every problem of a defaulted section at once, by key
// relative to the section ("uris[1]", "users.base_dn"). It reads no file:
// CheckFiles does, for the commands that reach the directory.
func (l *Config) Validate() []Problem {
	var ps configProblems
	if len(l.URIs) == 0 {
		ps.add("uris", "at least one LDAP URI is required")
	}
	for i, raw := range l.URIs {
		path := fmt.Sprintf("uris[%d]", i)
		u, err := ParseURI(raw)
		if err != nil {
			ps.add(path, "%v", err)
			continue
		}
		if l.TLS.StartTLS && u.Scheme != "ldap" {
			ps.add(path, "start_tls applies to ldap:// only, not %s://", u.Scheme)
		}
		if l.Bind.Method == BindExternal && u.Scheme == "ldap" && !l.TLS.StartTLS {
			ps.add(path, "SASL EXTERNAL needs ldapi://, ldaps:// or start_tls")
		}
	}
	switch l.Bind.Method {
	case BindSimple:
		if l.Bind.DN == "" {
			ps.add("bind.dn", "simple bind needs a bind DN")
		} else if _, err := ldap.ParseDN(l.Bind.DN); err != nil {
			ps.add("bind.dn", "not a valid DN: %v", err)
		}
		if l.Bind.PasswordFile == "" {
			ps.add("bind.password_file", "simple bind needs password_file (e.g. a systemd credential)")
		}
	case BindExternal, BindAnonymous:
		if l.Bind.PasswordFile != "" {
			ps.add("bind.password_file", "not used by %s bind", l.Bind.Method)
		}
	default:
		ps.add("bind.method", "unknown method %q (want simple, external or anonymous)", l.Bind.Method)
	}
	if l.Timeout <= 0 {
		ps.add("timeout", "must be positive")
	}
	if !slices.Contains(Schemas(), l.Schema) {
		ps.add("schema", "unknown schema %q (want %s)", l.Schema, strings.Join(Schemas(), ", "))
	}
	if l.RefreshTimeout <= 0 {
		ps.add("refresh_timeout", "must be positive")
	}
	if l.PageSize < 1 || l.PageSize > 1<<20 {
		ps.add("page_size", "must be between 1 and 1048576, got %d", l.PageSize)
	}
	l.Users.Search.validate(&ps, "users")
	l.Collaborations.Search.validate(&ps, "collaborations")
	u := l.Users.Attributes
	for _, a := range []struct{ key, val string }{
		{"uid", u.UID}, {"uid_number", u.UIDNumber}, {"gid_number", u.GIDNumber},
	} {
		if a.val == "" {
			ps.add("users.attributes."+a.key, "required")
		}
	}
	for _, a := range []struct{ key, val string }{
		{"uid", u.UID}, {"uid_number", u.UIDNumber}, {"gid_number", u.GIDNumber},
		{"name", u.Name}, {"mail", u.Mail}, {"home", u.Home}, {"shell", u.Shell},
		{"status", u.Status}, {"affiliation", u.Affiliation}, {"validated_by", u.ValidatedBy}, {"opt_outs", u.OptOuts},
		{"expires", u.Expires}, {"private_group", u.PrivateGroup},
	} {
		validAttr(&ps, "users.attributes."+a.key, a.val)
	}
	if f := l.Users.DisabledFilter; f != "" {
		if _, err := ldap.CompileFilter(f); err != nil {
			ps.add("users.disabled_filter", "invalid LDAP filter %q: %v", f, err)
		}
	}
	if u.Expires != "" {
		switch l.Users.ExpiresFormat {
		case ExpiresFileTime, ExpiresGeneralizedTime, ExpiresDays:
		default:
			ps.add("users.expires_format", "unknown format %q (want %s, %s or %s)", l.Users.ExpiresFormat,
				ExpiresFileTime, ExpiresGeneralizedTime, ExpiresDays)
		}
	}
	if !strings.HasPrefix(l.Users.DefaultHome, "/") {
		ps.add("users.default_home", "must be an absolute path, got %q", l.Users.DefaultHome)
	}
	if !strings.HasPrefix(l.Users.DefaultShell, "/") {
		ps.add("users.default_shell", "must be an absolute path, got %q", l.Users.DefaultShell)
	}
	g := l.Collaborations
	switch g.Membership {
	case MembershipUID, MembershipDN:
	default:
		ps.add("collaborations.membership", "unknown %q (want member_uid or member_dn)", g.Membership)
	}
	if g.Nested != NestedExpand && g.Nested != NestedReport {
		ps.add("collaborations.nested", "unknown %q (want expand or report)", g.Nested)
	}
	ga := g.Attributes
	for _, a := range []struct{ key, val string }{
		{"name", ga.Name}, {"gid_number", ga.GIDNumber}, {"members", ga.Members},
	} {
		if a.val == "" {
			ps.add("collaborations.attributes."+a.key, "required")
		}
	}
	for _, a := range []struct{ key, val string }{
		{"name", ga.Name}, {"gid_number", ga.GIDNumber}, {"members", ga.Members}, {"kind", ga.Kind},
		{"status", ga.Status}, {"reviewed_until", ga.ReviewedUntil}, {"fairshare", ga.Fairshare},
		{"lists", ga.Lists}, {"activity", ga.Activity}, {"allocation", ga.Allocation}, {"gpu_allocation", ga.GPUAllocation},
	} {
		validAttr(&ps, "collaborations.attributes."+a.key, a.val)
	}
	validValueMap(&ps, "collaborations.kind_values", g.KindValues, directory.CollaborationKinds())
	validValueMap(&ps, "collaborations.status_values", g.StatusValues, directory.CollaborationStatuses())
	if kinds := directory.CollaborationKinds(); !slices.Contains(kinds, g.DefaultKind) {
		ps.add("collaborations.default_kind", "unknown kind %q (want %s)", g.DefaultKind, directory.Join(kinds))
	}
	if g.DefaultFairshare < 0 {
		ps.add("collaborations.default_fairshare", "must not be negative")
	}
	for role, attr := range g.Contacts.Attributes {
		path := "collaborations.contacts.attributes." + string(role)
		if !slices.Contains(directory.Roles(), role) {
			ps.add(path, "unknown role %q (want one of %s)", role, directory.Join(directory.Roles()))
		}
		validAttr(&ps, path, attr)
	}
	if rg := g.Contacts.Groups; rg != nil {
		const path = "collaborations.contacts.groups"
		rg.Search.validate(&ps, path)
		if !strings.Contains(rg.Name, "{collaboration}") || !strings.Contains(rg.Name, "{role}") {
			ps.add(path+".name", "must contain {collaboration} and {role}, got %q", rg.Name)
		}
		if rg.Membership != MembershipUID && rg.Membership != MembershipDN {
			ps.add(path+".membership", "unknown %q (want member_uid or member_dn)", rg.Membership)
		}
		validAttr(&ps, path+".name_attribute", rg.NameAttribute)
		validAttr(&ps, path+".members", rg.Members)
	}
	if p := l.ProductionAccounts; p != nil {
		const path = "production_accounts"
		p.Search.validate(&ps, path)
		pa := p.Attributes
		for _, a := range []struct{ key, val string }{
			{"name", pa.Name}, {"uid_number", pa.UIDNumber}, {"gid_number", pa.GIDNumber}, {"home", pa.Home},
			{"shell", pa.Shell}, {"collaboration", pa.Collaboration}, {"managers", pa.Managers},
		} {
			validAttr(&ps, path+".attributes."+a.key, a.val)
		}
	}
	return ps
}

// CheckFiles reports, by key, the files the section names that this
// process cannot use: the bind password file and the CA file.
func (l *Config) CheckFiles() []Problem {
	var ps configProblems
	if l.Bind.Method == BindSimple && l.Bind.PasswordFile != "" {
		if err := readableFile(l.Bind.PasswordFile); err != nil {
			ps.add("bind.password_file", "cannot read: %v", err)
		}
	}
	if l.TLS.CAFile != "" {
		if err := readableFile(l.TLS.CAFile); err != nil {
			ps.add("tls.ca_file", "cannot read: %v", err)
		} else if _, err := ReadCAFile(l.TLS.CAFile); err != nil {
			ps.add("tls.ca_file", "%v", err)
		}
	}
	return ps
}

// validValueMap checks a map from model values to LDAP values.
func validValueMap[K ~string](ps *configProblems, path string, m map[K][]string, keys []K) {
	for k := range m {
		if !slices.Contains(keys, k) {
			ps.add(path, "unknown key %q (want %s)", k, directory.Join(keys))
		}
	}
}

// readableFile checks without opening it (opening a device or FIFO can
// block) that path is a regular file this process may read.
func readableFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if err := syscall.Access(path, 4 /* R_OK */); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (s Search) validate(ps *configProblems, path string) {
	if s.BaseDN == "" {
		ps.add(path+".base_dn", "required")
	} else if _, err := ldap.ParseDN(s.BaseDN); err != nil {
		ps.add(path+".base_dn", "not a valid DN: %v", err)
	}
	switch s.Scope {
	case "sub", "one", "base":
	default:
		ps.add(path+".scope", "unknown scope %q (want sub, one or base)", s.Scope)
	}
	if _, err := ldap.CompileFilter(s.Filter); err != nil {
		ps.add(path+".filter", "invalid LDAP filter %q: %v", s.Filter, err)
	}
}

// attrName is an RFC 4512 attribute description (descr or numeric OID, options).
var attrName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)(;[A-Za-z0-9-]+)*$`)

func validAttr(ps *configProblems, path, name string) {
	if name != "" && !attrName.MatchString(name) {
		ps.add(path, "not an LDAP attribute name: %q", name)
	}
}

// ParseURI checks an LDAP URI: ldap://host[:port], ldaps://host[:port] or
// ldapi://<percent-encoded socket path>.
func ParseURI(raw string) (*url.URL, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("%q is not a URI (want ldap://, ldaps:// or ldapi://)", raw)
	}
	switch scheme {
	case "ldapi":
		host, _, _ := strings.Cut(rest, "/")
		path, err := url.PathUnescape(host)
		if err != nil {
			return nil, fmt.Errorf("%q: bad socket path: %w", raw, err)
		}
		if path != "" && !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("%q: socket path must be absolute (percent-encode / as %%2F)", raw)
		}
		return &url.URL{Scheme: scheme, Host: path}, nil
	case "ldap", "ldaps":
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", raw, err)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("%q: missing host", raw)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%q: bad port %q", raw, p)
			}
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%q: base DN and filters belong in the users/collaborations sections, not the URI", raw)
		}
		return u, nil
	default:
		return nil, fmt.Errorf("%q: unsupported scheme %q (want ldap, ldaps or ldapi)", raw, scheme)
	}
}
