// Package config holds collabsync's YAML configuration: schema, defaults and
// validation. Load reports every problem at once, each with file and line.
package config

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/internal/ldapconn"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/engine"
)

// Config is the whole configuration file.
type Config struct {
	LDAP       ldapx.Config `yaml:"ldap"`
	Rules      Rules        `yaml:"rules"`
	Serve      Serve        `yaml:"serve"`
	Accounting Accounting   `yaml:"accounting"`
	StateDir   string       `yaml:"state_dir"`
	// HA, when set, makes serve one of an active/passive pair.
	HA *HA `yaml:"ha"`
	// Targets are read apart (targets.go): each kind has its own keys.
	Targets []Target `yaml:"-"`
}

// Accounting configures the ingest of batch-scheduler logs.
type Accounting struct {
	Sources []AccountingSource `yaml:"sources"`
	// AllocationPeriod is the period collaborations' allocations are
	// for: year (default), quarter or month, in UTC.
	AllocationPeriod accounting.Period `yaml:"allocation_period"`
}

// AccountingSource is one log: where, which format, which cluster, when.
type AccountingSource struct {
	Name   string `yaml:"name"`
	Format string `yaml:"format"`
	// Paths are globs; rotated (.1, dated) and gzipped files are matched too.
	Paths   []string `yaml:"paths"`
	Cluster string   `yaml:"cluster"`
	// TimeZone is the zone of times written without an offset (jobcomp,
	// sacct run without TZ=UTC); default UTC.
	TimeZone string `yaml:"time_zone"`
	// Schedule is the cron schedule of the ingest inside serve.
	Schedule string `yaml:"schedule"`
	// MaxBadRatio: a file more than this share of whose first SampleLines
	// lines do not decode is taken to be in another format; it fails the
	// run and nothing of it is stored (0 refuses any bad line there).
	MaxBadRatio float64 `yaml:"max_bad_ratio"`
	SampleLines int     `yaml:"sample_lines"`
}

// Change stream modes.
const (
	ChangesAuto     = "auto"     // syncrepl, polling if the server has no syncprov
	ChangesSyncrepl = "syncrepl" // syncrepl only
	ChangesPoll     = "poll"     // polling only
)

// Serve configures the daemon.
type Serve struct {
	// Listen is the address of /metrics, /healthz, /readyz and /status.
	Listen string `yaml:"listen"`
	// Changes selects how directory changes are noticed.
	Changes string `yaml:"changes"`
	// Debounce bounds how long changes that arrive while targets run are
	// gathered (they run as soon as the targets are done); a change while
	// none runs is read at once, and the first run at start waits for it.
	Debounce Duration `yaml:"debounce"`
	// PollInterval is the reconcile interval when polling.
	PollInterval Duration `yaml:"poll_interval"`
	// DirectoryGrace is how long the directory may be unreachable (or
	// refuse the bind) before /readyz says serve is not ready.
	DirectoryGrace Duration `yaml:"directory_grace"`
	// DeletionScan is, on Active Directory whose bind user may not read
	// the deleted objects, how often the users' and groups' GUIDs are
	// listed to find the deleted ones (the worst-case delay of a deletion).
	DeletionScan Duration `yaml:"deletion_scan"`
	// FullReconcile is a cron schedule for a full reconcile that repairs drift.
	FullReconcile string `yaml:"full_reconcile"`
	// RetryMin and RetryMax bound the backoff of a failed target's retries.
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
	// UserDB, when set, is the service name under which serve answers
	// systemd's io.systemd.UserDatabase on /run/systemd/userdb/<name>.
	UserDB string `yaml:"userdb"`
	// MemoryLimit is the Go heap's soft limit: auto (for serve 1.4 times
	// the heap it holds at rest; for plan and sync --once a quarter more
	// than the peak live heap of their last run on this state; at least
	// 64 MiB), off (Go's default), or a size such as 512MiB, for serve and
	// the one-shot commands alike. GOMEMLIMIT in the environment wins.
	MemoryLimit string `yaml:"memory_limit"`
}

// HA makes serve one of an active/passive pair (docs/HA.md): both run the
// same configuration; the one holding the lease entry applies to targets
// and ingests, the other keeps its live model and takes over when the
// lease lapses. The bind must be allowed to write the lease entry.
type HA struct {
	ldapconn.Settings `yaml:",inline"`
	// LeaseDN is the lease entry (objectClass csLease), made when missing.
	LeaseDN string `yaml:"lease_dn"`
	// Holder names this process in the lease (default: the host name).
	Holder string `yaml:"holder"`
	// TTL is how long the lease lasts without a renewal: the most a
	// takeover waits after the leader stops (renewed every third of it).
	TTL Duration `yaml:"ttl"`
}

// Memory limit settings besides a size.
const (
	MemoryLimitAuto = "auto"
	MemoryLimitOff  = "off"
)

// ParseSize reads a size in bytes: a number with an optional unit B, KiB,
// MiB or GiB (KB, MB, GB are read as the same powers of two).
func ParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGiB")
	unit := s[len(num):]
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB)", s)
	}
	shift := map[string]int{"": 0, "B": 0, "KiB": 10, "KB": 10, "MiB": 20, "MB": 20, "GiB": 30, "GB": 30}
	sh, ok := shift[unit]
	if !ok || n > math.MaxInt64>>sh {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB)", s)
	}
	return n << sh, nil
}

// Rules are the centre's account rules.
type Rules struct {
	// ReviewGrace is how long past its reviewed-until date a collaboration
	// stays active; ReviewWarning is how early "review due soon" appears.
	ReviewGrace   Duration `yaml:"review_grace"`
	ReviewWarning Duration `yaml:"review_warning"`
	// MemberDomains and MemberAffiliations decide who belongs to a member
	// institution (internal); AcceptedDomains are all institutional e-mail
	// domains (member domains are always accepted). Empty AcceptedDomains
	// disables the e-mail domain rule.
	MemberDomains      []string `yaml:"member_domains"`
	MemberAffiliations []string `yaml:"member_affiliations"`
	AcceptedDomains    []string `yaml:"accepted_domains"`
	// ProductionSeparator and ProductionLabel give the production account
	// syntax: <collaboration>[<separator><label>].
	ProductionSeparator string `yaml:"production_separator"`
	ProductionLabel     string `yaml:"production_label"`
	// Actions per violation kind (see directory.Kind*).
	Actions map[directory.ViolationKind]directory.Action `yaml:"actions"`
	// UIDRange and GIDRange bound the numbers collabsync provisions;
	// ReservedNames, with every name and number in LocalPasswd and
	// LocalGroup (the machine's own accounts, read at each run), are never
	// provisioned. An empty path reads nothing.
	UIDRange      IDRange  `yaml:"uid_range"`
	GIDRange      IDRange  `yaml:"gid_range"`
	ReservedNames []string `yaml:"reserved_names"`
	LocalPasswd   string   `yaml:"local_passwd"`
	LocalGroup    string   `yaml:"local_group"`
}

// IDRange is an inclusive range of uid or gid numbers.
type IDRange struct {
	Min uint32 `yaml:"min"`
	Max uint32 `yaml:"max"`
}

// Guard limits what one apply may delete.
type Guard struct {
	// MaxDeleteRatio is the share of a target's current records one apply may
	// delete without explicit approval (--allow-deletions).
	MaxDeleteRatio float64 `yaml:"max_delete_ratio"`
	// MinDeletes: fewer deletions than this are never held back.
	MinDeletes int `yaml:"min_deletes"`
}

// Duration is a time.Duration written as "10s", "1m30s" or "30d" in YAML
// (shared with the target kinds' settings).
type Duration = duration.Duration

// Load reads, defaults and validates the file. kinds and formats are
// the target kinds and accounting log formats the program knows (it hands
// them in: the configuration imports none of them). A *FileError lists
// every problem found, each with its line.
func Load(path string, kinds engine.Registry, formats []string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, kinds, formats, opts...)
}

// Option changes what Load and Parse check.
type Option func(*options)

type options struct{ storedOnly bool }

// StoredStateOnly is for the commands that read only the stored state
// (report, status, violations, approve): the directory's password and CA
// files are not checked, so whoever may read the state needs no secret.
func StoredStateOnly() Option { return func(o *options) { o.storedOnly = true } }

// Parse is Load on bytes already read; name is used in messages. Every
// problem is reported at once, in the file's own words: unknown keys (with
// the key most likely meant), values of the wrong type, and what
// validation finds, each with its line. Only absent keys get defaults: an
// explicit value, zero included, is honoured when validation allows it.
func Parse(name string, data []byte, kinds engine.Registry, formats []string, opts ...Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		// Not YAML at all: nothing further can be said.
		return nil, &FileError{File: name, Problems: (&document{}).decodeProblems(err)}
	}
	targets := cutKey(&root, "targets")
	doc := walkDocument(&root)
	var cfg Config
	var problems []Problem
	if root.Kind != 0 {
		if err := root.Decode(&cfg); err != nil {
			problems = append(problems, doc.decodeProblems(err)...)
		}
	}
	if targets != nil {
		var tps []Problem
		cfg.Targets, tps = doc.targets(targets, kinds)
		problems = append(problems, tps...)
	}
	problems = append(doc.unknown, problems...)
	cfg.applyDefaults(doc.has)
	// Outside the service, the unit's credential is the file it loads it
	// from: check-config and an admin's commands read that.
	if src, ok := credentialSource(cfg.LDAP.Bind.PasswordFile, os.Getenv("CREDENTIALS_DIRECTORY")); ok {
		cfg.LDAP.Bind.PasswordFile = src
	}
	// A value that failed to decode is reported once, not again by validation.
	failed := map[string]bool{}
	for _, p := range problems {
		failed[p.Path] = true
	}
	for _, p := range cfg.validate(formats, !o.storedOnly) {
		if !failed[p.Path] {
			p.Line = doc.line(p.Path)
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, &FileError{File: name, Problems: problems}
	}
	return &cfg, nil
}

// def sets *p to v unless the file gives path a value.
func def[T any](has func(string) bool, path string, p *T, v T) {
	if !has(path) {
		*p = v
	}
}

func (c *Config) applyDefaults(given func(string) bool) {
	l := &c.LDAP
	l.ApplyDefaults(func(key string) bool { return given("ldap." + key) })
	has := given

	r := &c.Rules
	def(has, "rules.review_grace", &r.ReviewGrace, Duration(30*24*time.Hour))
	def(has, "rules.review_warning", &r.ReviewWarning, Duration(30*24*time.Hour))
	def(has, "rules.production_separator", &r.ProductionSeparator, "_")
	def(has, "rules.production_label", &r.ProductionLabel, "^[a-z0-9]{1,16}$")
	// As Debian's login.defs: regular accounts from 1000; up to the largest
	// valid id (directories often number far above 60000).
	for _, rg := range []struct {
		path string
		r    *IDRange
	}{{"rules.uid_range", &r.UIDRange}, {"rules.gid_range", &r.GIDRange}} {
		def(has, rg.path+".min", &rg.r.Min, 1000)
		def(has, rg.path+".max", &rg.r.Max, 4294967294)
	}
	def(has, "rules.local_passwd", &r.LocalPasswd, "/etc/passwd")
	def(has, "rules.local_group", &r.LocalGroup, "/etc/group")

	if ha := c.HA; ha != nil {
		d := ldapconn.Defaults()
		def(has, "ha.tls", &ha.TLS, d.TLS)
		def(has, "ha.timeout", &ha.Timeout, Duration(10*time.Second))
		def(has, "ha.ttl", &ha.TTL, Duration(15*time.Second))
		host, _ := os.Hostname()
		def(has, "ha.holder", &ha.Holder, host)
	}

	sv := &c.Serve
	def(has, "serve.listen", &sv.Listen, "127.0.0.1:9465")
	def(has, "serve.changes", &sv.Changes, ChangesAuto)
	def(has, "serve.full_reconcile", &sv.FullReconcile, "0 3 * * *")
	def(has, "serve.debounce", &sv.Debounce, Duration(200*time.Millisecond))
	poll := Duration(5 * time.Minute) // each poll reads the directory whole
	if l.Schema == ldapx.SchemaAD {
		poll = Duration(10 * time.Second) // each poll reads what changed
	}
	def(has, "serve.poll_interval", &sv.PollInterval, poll)
	def(has, "serve.deletion_scan", &sv.DeletionScan, Duration(5*time.Minute))
	def(has, "serve.directory_grace", &sv.DirectoryGrace, Duration(time.Minute))
	def(has, "serve.retry_min", &sv.RetryMin, Duration(5*time.Second))
	def(has, "serve.retry_max", &sv.RetryMax, Duration(15*time.Minute))
	def(has, "serve.memory_limit", &sv.MemoryLimit, MemoryLimitAuto)

	def(has, "accounting.allocation_period", &c.Accounting.AllocationPeriod, accounting.PeriodYear)
	for i := range c.Accounting.Sources {
		src := &c.Accounting.Sources[i]
		sp := fmt.Sprintf("accounting.sources[%d].", i)
		def(has, sp+"time_zone", &src.TimeZone, "UTC")
		def(has, sp+"schedule", &src.Schedule, "*/15 * * * *")
		def(has, sp+"max_bad_ratio", &src.MaxBadRatio, accounting.DefaultMaxBadRatio)
		def(has, sp+"sample_lines", &src.SampleLines, accounting.DefaultSampleLines)
	}

	def(has, "state_dir", &c.StateDir, "/var/lib/collabsync")
	for i := range c.Targets {
		t := &c.Targets[i]
		t.Guard.applyDefaults(has, t.Path+".guard.")
	}
}

func (g *Guard) applyDefaults(has func(string) bool, path string) {
	def(has, path+"max_delete_ratio", &g.MaxDeleteRatio, 0.2)
	def(has, path+"min_deletes", &g.MinDeletes, 10)
}

// The shipped unit passes the bind password as a systemd credential
// (LoadCredential=ldap-password:/etc/collabsync/ldap-password), which
// exists under /run/credentials/collabsync.service/ only while the service
// runs. credentialSource maps such a path to the file the unit loads it
// from when credentials is empty (not inside the service).
func credentialSource(path, credentials string) (string, bool) {
	name, ok := strings.CutPrefix(path, unitCredentials)
	if !ok || credentials != "" || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return "/etc/collabsync/" + name, true
}

const unitCredentials = "/run/credentials/collabsync.service/"
