package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/robfig/cron/v3"

	"github.com/collabsync/collabsync/accounting"
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

// validate reports every problem of a defaulted configuration at once;
// with files, also the directory's files this process cannot use.
func (c *Config) validate(formats []string, files bool) []Problem {
	var ps problems
	ldapProblems := c.LDAP.Validate()
	if files {
		ldapProblems = append(ldapProblems, c.LDAP.CheckFiles()...)
	}
	for _, p := range ldapProblems {
		ps.add("ldap."+p.Key, "%s", p.Msg)
	}
	c.Rules.validate(&ps)
	c.Serve.validate(&ps)
	if c.HA != nil {
		c.HA.validate(&ps)
	}
	c.Accounting.validate(&ps, formats)
	if !filepath.IsAbs(c.StateDir) {
		ps.add("state_dir", "must be an absolute path, got %q", c.StateDir)
	} else if fi, err := os.Stat(c.StateDir); err == nil && (!fi.IsDir() || syscall.Access(c.StateDir, 2 /* W_OK */) != nil) {
		ps.add("state_dir", "%s is not a directory this user may write", c.StateDir)
	}
	validateTargets(c.Targets, c.LDAP, &ps)
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

func (a *Accounting) validate(ps *problems, formats []string) {
	if !slices.Contains(accounting.Periods(), a.AllocationPeriod) {
		ps.add("accounting.allocation_period", "unknown period %q (want year, quarter or month)", a.AllocationPeriod)
	}
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
			ps.add(path, "unknown action %q (want %s)", action, directory.Join(directory.Actions()))
		}
	}
}

func (h *HA) validate(ps *problems) {
	for _, p := range h.Settings.Validate() {
		ps.add("ha."+p.Key, "%s", p.Msg)
	}
	if dn, err := ldap.ParseDN(h.LeaseDN); err != nil || len(dn.RDNs) < 2 || len(dn.RDNs[0].Attributes) != 1 || !strings.EqualFold(dn.RDNs[0].Attributes[0].Type, "cn") {
		ps.add("ha.lease_dn", "want cn=<name>,<an existing entry> (cn=serve,ou=collabsync,dc=example,dc=org), got %q", h.LeaseDN)
	}
	if h.Holder == "" || strings.ContainsAny(h.Holder, "\x00\n") {
		ps.add("ha.holder", "must name this host, got %q", h.Holder)
	}
	if h.TTL < Duration(3*time.Second) {
		ps.add("ha.ttl", "must be at least 3s, got %v", time.Duration(h.TTL))
	}
}
