package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/robfig/cron/v3"

	"github.com/collabsync/collabsync/internal/directory"
)

// Problem is one thing wrong with the configuration.
type Problem struct {
	Line int    // 0 when unknown
	Path string // e.g. "ldap.uris[1]"
	Msg  string
}

// FileError lists every problem of one configuration file.
type FileError struct {
	File     string
	Problems []Problem
}

func (e *FileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Validate reports every problem of a defaulted configuration at once.
func (c *Config) validate(formats []string) []Problem {
	var ps problems
	c.LDAP.validate(&ps)
	c.Rules.validate(&ps)
	c.Serve.validate(&ps)
	c.Accounting.validate(&ps, formats)
	if !filepath.IsAbs(c.StateDir) {
		ps.add("state_dir", "must be an absolute path, got %q", c.StateDir)
	} else if fi, err := os.Stat(c.StateDir); err == nil && (!fi.IsDir() || syscall.Access(c.StateDir, 2 /* W_OK */) != nil) {
		ps.add("state_dir", "%s is not a directory this user may write", c.StateDir)
	}
	validateTargets(c.Targets, &ps)
	return ps
}

func (g Guard) validate(ps *problems, path string) {
	if g.MaxDeleteRatio < 0 || g.MaxDeleteRatio > 1 {
		ps.add(path+".max_delete_ratio", "must be between 0 and 1, got %v", g.MaxDeleteRatio)
	}
	if g.MinDeletes < 0 {
		ps.add(path+".min_deletes", "must not be negative, got %d", g.MinDeletes)
	}
}

func (l *LDAP) validate(ps *problems) {
	if len(l.URIs) == 0 {
		ps.add("ldap.uris", "at least one LDAP URI is required")
	}
	for i, raw := range l.URIs {
		path := fmt.Sprintf("ldap.uris[%d]", i)
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
			ps.add("ldap.bind.dn", "simple bind needs a bind DN")
		} else if _, err := ldap.ParseDN(l.Bind.DN); err != nil {
			ps.add("ldap.bind.dn", "not a valid DN: %v", err)
		}
		if l.Bind.PasswordFile == "" {
			ps.add("ldap.bind.password_file", "simple bind needs password_file (e.g. a systemd credential)")
		} else if err := readableFile(l.Bind.PasswordFile); err != nil {
			ps.add("ldap.bind.password_file", "cannot read: %v", err)
		}
	case BindExternal, BindAnonymous:
		if l.Bind.PasswordFile != "" {
			ps.add("ldap.bind.password_file", "not used by %s bind", l.Bind.Method)
		}
	default:
		ps.add("ldap.bind.method", "unknown method %q (want simple, external or anonymous)", l.Bind.Method)
	}
	if l.TLS.CAFile != "" {
		if err := readableFile(l.TLS.CAFile); err != nil {
			ps.add("ldap.tls.ca_file", "cannot read: %v", err)
		} else if _, err := ReadCAFile(l.TLS.CAFile); err != nil {
			ps.add("ldap.tls.ca_file", "%v", err)
		}
	}
	if l.Timeout <= 0 {
		ps.add("ldap.timeout", "must be positive")
	}
	if !slices.Contains(Schemas(), l.Schema) {
		ps.add("ldap.schema", "unknown schema %q (want %s)", l.Schema, strings.Join(Schemas(), ", "))
	}
	if l.RefreshTimeout <= 0 {
		ps.add("ldap.refresh_timeout", "must be positive")
	}
	if l.PageSize < 1 || l.PageSize > 1<<20 {
		ps.add("ldap.page_size", "must be between 1 and 1048576, got %d", l.PageSize)
	}
	l.Users.Search.validate(ps, "ldap.users")
	l.Collaborations.Search.validate(ps, "ldap.collaborations")
	u := l.Users.Attributes
	for _, a := range []struct{ key, val string }{
		{"uid", u.UID}, {"uid_number", u.UIDNumber}, {"gid_number", u.GIDNumber},
	} {
		if a.val == "" {
			ps.add("ldap.users.attributes."+a.key, "required")
		}
	}
	for _, a := range []struct{ key, val string }{
		{"uid", u.UID}, {"uid_number", u.UIDNumber}, {"gid_number", u.GIDNumber},
		{"name", u.Name}, {"mail", u.Mail}, {"home", u.Home}, {"shell", u.Shell},
		{"status", u.Status}, {"affiliation", u.Affiliation}, {"validated_by", u.ValidatedBy}, {"opt_outs", u.OptOuts},
		{"expires", u.Expires}, {"private_group", u.PrivateGroup},
	} {
		validAttr(ps, "ldap.users.attributes."+a.key, a.val)
	}
	if f := l.Users.DisabledFilter; f != "" {
		if _, err := ldap.CompileFilter(f); err != nil {
			ps.add("ldap.users.disabled_filter", "invalid LDAP filter %q: %v", f, err)
		}
	}
	if u.Expires != "" {
		switch l.Users.ExpiresFormat {
		case ExpiresFileTime, ExpiresGeneralizedTime, ExpiresDays:
		default:
			ps.add("ldap.users.expires_format", "unknown format %q (want %s, %s or %s)", l.Users.ExpiresFormat,
				ExpiresFileTime, ExpiresGeneralizedTime, ExpiresDays)
		}
	}
	if !strings.HasPrefix(l.Users.DefaultHome, "/") {
		ps.add("ldap.users.default_home", "must be an absolute path, got %q", l.Users.DefaultHome)
	}
	if !strings.HasPrefix(l.Users.DefaultShell, "/") {
		ps.add("ldap.users.default_shell", "must be an absolute path, got %q", l.Users.DefaultShell)
	}
	g := l.Collaborations
	switch g.Membership {
	case MembershipUID, MembershipDN:
	default:
		ps.add("ldap.collaborations.membership", "unknown %q (want member_uid or member_dn)", g.Membership)
	}
	if g.Nested != NestedExpand && g.Nested != NestedReport {
		ps.add("ldap.collaborations.nested", "unknown %q (want expand or report)", g.Nested)
	}
	ga := g.Attributes
	for _, a := range []struct{ key, val string }{
		{"name", ga.Name}, {"gid_number", ga.GIDNumber}, {"members", ga.Members},
	} {
		if a.val == "" {
			ps.add("ldap.collaborations.attributes."+a.key, "required")
		}
	}
	for _, a := range []struct{ key, val string }{
		{"name", ga.Name}, {"gid_number", ga.GIDNumber}, {"members", ga.Members}, {"kind", ga.Kind},
		{"status", ga.Status}, {"reviewed_until", ga.ReviewedUntil}, {"fairshare", ga.Fairshare},
		{"lists", ga.Lists}, {"activity", ga.Activity},
	} {
		validAttr(ps, "ldap.collaborations.attributes."+a.key, a.val)
	}
	validValueMap(ps, "ldap.collaborations.kind_values", g.KindValues, directory.CollaborationKinds())
	validValueMap(ps, "ldap.collaborations.status_values", g.StatusValues, directory.CollaborationStatuses())
	if kinds := directory.CollaborationKinds(); !slices.Contains(kinds, g.DefaultKind) {
		ps.add("ldap.collaborations.default_kind", "unknown kind %q (want %s)", g.DefaultKind, joinNames(kinds))
	}
	if g.DefaultFairshare < 0 {
		ps.add("ldap.collaborations.default_fairshare", "must not be negative")
	}
	for role, attr := range g.Contacts.Attributes {
		path := "ldap.collaborations.contacts.attributes." + string(role)
		if !slices.Contains(directory.Roles(), role) {
			ps.add(path, "unknown role %q (want one of %s)", role, joinNames(directory.Roles()))
		}
		validAttr(ps, path, attr)
	}
	if rg := g.Contacts.Groups; rg != nil {
		const path = "ldap.collaborations.contacts.groups"
		rg.Search.validate(ps, path)
		if !strings.Contains(rg.Name, "{collaboration}") || !strings.Contains(rg.Name, "{role}") {
			ps.add(path+".name", "must contain {collaboration} and {role}, got %q", rg.Name)
		}
		if rg.Membership != MembershipUID && rg.Membership != MembershipDN {
			ps.add(path+".membership", "unknown %q (want member_uid or member_dn)", rg.Membership)
		}
		validAttr(ps, path+".name_attribute", rg.NameAttribute)
		validAttr(ps, path+".members", rg.Members)
	}
	if p := l.ProductionAccounts; p != nil {
		const path = "ldap.production_accounts"
		p.Search.validate(ps, path)
		pa := p.Attributes
		for _, a := range []struct{ key, val string }{
			{"name", pa.Name}, {"uid_number", pa.UIDNumber}, {"gid_number", pa.GIDNumber}, {"home", pa.Home},
			{"shell", pa.Shell}, {"collaboration", pa.Collaboration}, {"managers", pa.Managers},
		} {
			validAttr(ps, path+".attributes."+a.key, a.val)
		}
	}
}

// validValueMap checks a map from model values to LDAP values.
func validValueMap[K ~string](ps *problems, path string, m map[K][]string, keys []K) {
	for k := range m {
		if !slices.Contains(keys, k) {
			ps.add(path, "unknown key %q (want %s)", k, joinNames(keys))
		}
	}
}

// joinNames lists names for a message: "a, b, c".
func joinNames[S ~string](names []S) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return strings.Join(out, ", ")
}

func (a *Accounting) validate(ps *problems, formats []string) {
	names := map[string]bool{}
	for i, s := range a.Sources {
		path := fmt.Sprintf("accounting.sources[%d]", i)
		if !ValidSourceName(s.Name) {
			ps.add(path+".name", "%q is not a source name (letters, digits, '-', '_')", s.Name)
		} else if names[s.Name] {
			ps.add(path+".name", "source %q is defined twice", s.Name)
		}
		names[s.Name] = true
		if !slices.Contains(formats, s.Format) {
			ps.add(path+".format", "unknown format %q (want one of %s)", s.Format, strings.Join(formats, ", "))
		}
		if len(s.Paths) == 0 {
			ps.add(path+".paths", "at least one path (glob) is required")
		}
		for j, p := range s.Paths {
			if _, err := filepath.Match(p, ""); err != nil || !filepath.IsAbs(p) {
				ps.add(fmt.Sprintf("%s.paths[%d]", path, j), "%q must be an absolute path or glob", p)
			}
		}
		if s.Cluster == "" {
			ps.add(path+".cluster", "required (the name reports and natural keys use)")
		}
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			ps.add(path+".time_zone", "unknown time zone %q", s.TimeZone)
		}
		if _, err := cron.ParseStandard(s.Schedule); err != nil {
			ps.add(path+".schedule", "not a cron schedule: %v", err)
		}
		if s.MaxBadRatio < 0 || s.MaxBadRatio > 1 {
			ps.add(path+".max_bad_ratio", "must be between 0 and 1, got %v", s.MaxBadRatio)
		}
		if s.SampleLines < 1 {
			ps.add(path+".sample_lines", "must be at least 1, got %d", s.SampleLines)
		}
	}
}

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidSourceName reports whether s can name an accounting source.
func ValidSourceName(s string) bool { return sourceName.MatchString(s) }

func (s *Serve) validate(ps *problems) {
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		ps.add("serve.listen", "not host:port: %v", err)
	}
	switch s.Changes {
	case ChangesAuto, ChangesSyncrepl, ChangesPoll:
	default:
		ps.add("serve.changes", "unknown %q (want auto, syncrepl or poll)", s.Changes)
	}
	if _, err := cron.ParseStandard(s.FullReconcile); err != nil {
		ps.add("serve.full_reconcile", "not a cron schedule: %v", err)
	}
	if s.Debounce < 0 || time.Duration(s.Debounce) > time.Minute {
		ps.add("serve.debounce", "must be between 0 and 1m")
	}
	if time.Duration(s.PollInterval) < time.Second {
		ps.add("serve.poll_interval", "must be at least 1s")
	}
	if s.DirectoryGrace < 0 {
		ps.add("serve.directory_grace", "must not be negative")
	}
	if time.Duration(s.DeletionScan) < time.Second {
		ps.add("serve.deletion_scan", "must be at least 1s")
	}
	if s.RetryMin <= 0 || s.RetryMax < s.RetryMin {
		ps.add("serve.retry_max", "retry_min must be positive and retry_max at least retry_min")
	}
	if s.MemoryLimit != MemoryLimitAuto && s.MemoryLimit != MemoryLimitOff {
		if n, err := ParseSize(s.MemoryLimit); err != nil {
			ps.add("serve.memory_limit", "want auto, off or a size: %v", err)
		} else if n < 32<<20 {
			ps.add("serve.memory_limit", "%s is less than 32MiB", s.MemoryLimit)
		}
	}
	switch {
	case s.UserDB == "":
	case !userdbService.MatchString(s.UserDB):
		ps.add("serve.userdb", "%q is not a service name (letters, digits, . _ -; e.g. io.collabsync.Directory)", s.UserDB)
	case strings.HasPrefix(s.UserDB, "io.systemd."):
		ps.add("serve.userdb", "%q is systemd's own namespace; choose e.g. io.collabsync.Directory", s.UserDB)
	}
}

// userdbService is what a socket under /run/systemd/userdb may be called.
var userdbService = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (r *Rules) validate(ps *problems) {
	if r.ReviewGrace < 0 {
		ps.add("rules.review_grace", "must not be negative")
	}
	if r.ReviewWarning < 0 {
		ps.add("rules.review_warning", "must not be negative")
	}
	for _, list := range []struct {
		path    string
		domains []string
	}{{"rules.member_domains", r.MemberDomains}, {"rules.accepted_domains", r.AcceptedDomains}} {
		for i, d := range list.domains {
			if d == "" || strings.ContainsAny(d, "@ /") || d != strings.ToLower(d) {
				ps.add(fmt.Sprintf("%s[%d]", list.path, i), "%q is not a lower-case domain name", d)
			}
		}
	}
	if r.ProductionSeparator == "" || strings.ContainsAny(r.ProductionSeparator, ":,\n ") {
		ps.add("rules.production_separator", "must be a non-empty string without ':', ',' or spaces")
	}
	if _, err := regexp.Compile(r.ProductionLabel); err != nil {
		ps.add("rules.production_label", "not a regular expression: %v", err)
	}
	for _, rg := range []struct {
		path string
		r    IDRange
	}{{"rules.uid_range", r.UIDRange}, {"rules.gid_range", r.GIDRange}} {
		if rg.r.Min > rg.r.Max || rg.r.Max == 4294967295 {
			ps.add(rg.path, "want min <= max <= 4294967294, got %d-%d", rg.r.Min, rg.r.Max)
		}
	}
	for i, n := range r.ReservedNames {
		if n == "" || strings.ContainsAny(n, ":\n") {
			ps.add(fmt.Sprintf("rules.reserved_names[%d]", i), "%q is not an account name", n)
		}
	}
	for _, f := range []struct{ path, file string }{{"rules.local_passwd", r.LocalPasswd}, {"rules.local_group", r.LocalGroup}} {
		if f.file != "" && !filepath.IsAbs(f.file) {
			ps.add(f.path, "must be an absolute path, got %q", f.file)
		}
	}
	for kind, action := range r.Actions {
		path := "rules.actions." + string(kind)
		if _, ok := directory.DefaultAction(kind); !ok {
			ps.add(path, "no configurable rule %q", kind)
		}
		if !slices.Contains(directory.Actions(), action) {
			ps.add(path, "unknown action %q (want %s)", action, joinNames(directory.Actions()))
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

func (s Search) validate(ps *problems, path string) {
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

func validAttr(ps *problems, path, name string) {
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
