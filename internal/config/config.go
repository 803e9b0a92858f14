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
	"github.com/collabsync/collabsync/sync/engine"
)

// Config is the whole configuration file.
type Config struct {
	LDAP       LDAP       `yaml:"ldap"`
	Rules      Rules      `yaml:"rules"`
	Serve      Serve      `yaml:"serve"`
	Accounting Accounting `yaml:"accounting"`
	StateDir   string     `yaml:"state_dir"`
	// Targets are read apart (targets.go): each kind has its own keys.
	Targets []Target `yaml:"-"`
}

// Accounting configures the ingest of batch-scheduler logs.
type Accounting struct {
	Sources []AccountingSource `yaml:"sources"`
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
	// Debounce gathers a burst of changes into one reconcile.
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
	// MemoryLimit is the Go heap's soft limit: auto (1.5 times the heap
	// serve holds at rest, at least 64 MiB), off (Go's default), or a size
	// such as 512MiB. GOMEMLIMIT in the environment wins.
	MemoryLimit string `yaml:"memory_limit"`
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

// LDAP says how to reach the directory and how its entries map to the model.
type LDAP struct {
	// URIs are tried in order; the first that connects and binds wins.
	URIs     []string `yaml:"uris"`
	Bind     Bind     `yaml:"bind"`
	TLS      TLS      `yaml:"tls"`
	Timeout  Duration `yaml:"timeout"`
	PageSize int      `yaml:"page_size"`
	// Schema names the directory's layout (rfc2307, rfc2307bis, freeipa,
	// ad): it fills the filters and attribute names a standard site of that
	// kind has. Explicit keys override it.
	Schema string `yaml:"schema"`
	// RefreshTimeout is how long a syncrepl refresh may receive nothing
	// before it is taken to be cut (a server size limit can end it
	// silently) and fails.
	RefreshTimeout Duration `yaml:"refresh_timeout"`

	Users              UserMapping          `yaml:"users"`
	Collaborations     CollaborationMapping `yaml:"collaborations"`
	ProductionAccounts *ProductionMapping   `yaml:"production_accounts"`
}

// Bind methods.
const (
	BindSimple    = "simple"
	BindExternal  = "external"
	BindAnonymous = "anonymous"
)

// Bind selects the authentication. The password is only ever read from a
// file (e.g. a systemd credential), never from the config or command line.
type Bind struct {
	Method       string `yaml:"method"`
	DN           string `yaml:"dn"`
	PasswordFile string `yaml:"password_file"`
}

// TLS settings. Certificates are verified unless insecure_skip_verify is set.
type TLS struct {
	StartTLS           bool   `yaml:"start_tls"`
	CAFile             string `yaml:"ca_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Search is one subtree of the directory to read.
type Search struct {
	BaseDN string `yaml:"base_dn"`
	Scope  string `yaml:"scope"` // sub (default), one, base
	Filter string `yaml:"filter"`
}

// UserMapping maps user entries (posixAccount, inetOrgPerson, ...) to the model.
type UserMapping struct {
	Search     `yaml:",inline"`
	Attributes UserAttributes `yaml:"attributes"`
	// DefaultShell and DefaultHome apply when the entry lacks the attribute;
	// DefaultHome may contain {uid}.
	DefaultShell string `yaml:"default_shell"`
	DefaultHome  string `yaml:"default_home"`
	// SuspendedValues are the values of the status attribute that mean
	// "suspended"; any other value (or none) leaves the decision to the rules.
	SuspendedValues []string `yaml:"suspended_values"`
	// DisabledFilter selects, among the users, the accounts the directory
	// itself disables (AD's ACCOUNTDISABLE bit, 389-ds/FreeIPA's
	// nsAccountLock, an administrative ppolicy lock): the server evaluates
	// it in a search of its own, the users' base and scope with
	// (&<filter><disabled_filter>), and those users are suspended. Empty:
	// none.
	DisabledFilter string `yaml:"disabled_filter"`
	// ExpiresFormat is how attributes.expires is written: filetime (AD's
	// accountExpires: 100 ns since 1601, 0 or 2^63-1 for never),
	// generalized_time, or days since 1970 (shadowExpire; -1 for never).
	ExpiresFormat string `yaml:"expires_format"`
}

// The formats of an account's expiry (UserMapping.ExpiresFormat).
const (
	ExpiresFileTime        = "filetime"
	ExpiresGeneralizedTime = "generalized_time"
	ExpiresDays            = "days"
)

// UserAttributes names the LDAP attribute behind each user field. An empty
// name means the site does not have that field.
type UserAttributes struct {
	UID       string `yaml:"uid"`
	UIDNumber string `yaml:"uid_number"`
	GIDNumber string `yaml:"gid_number"`
	Name      string `yaml:"name"`
	Mail      string `yaml:"mail"`
	Home      string `yaml:"home"`
	Shell     string `yaml:"shell"`
	// The rest are optional: a site without them maps nothing.
	Status      string `yaml:"status"`
	Affiliation string `yaml:"affiliation"`
	ValidatedBy string `yaml:"validated_by"` // DN or uid of the validating contact
	OptOuts     string `yaml:"opt_outs"`     // list names the user opted out of
	// Expires is when the account expires (in expires_format): from then
	// on it is suspended.
	Expires string `yaml:"expires"`
	// PrivateGroup names the user's own group, a DN (its RDN value is the
	// name) or a name; the group's gid is the user's gidNumber. FreeIPA's
	// user private groups: mepManagedEntry.
	PrivateGroup string `yaml:"private_group"`
}

// Membership styles for collaboration groups.
const (
	MembershipUID = "member_uid" // posixGroup memberUid: values are uids
	MembershipDN  = "member_dn"  // groupOfNames member: values are user DNs
)

// CollaborationMapping maps collaboration entries to the model.
type CollaborationMapping struct {
	Search     `yaml:",inline"`
	Membership string                  `yaml:"membership"`
	Attributes CollaborationAttributes `yaml:"attributes"`
	// KindValues maps attribute values to the two kinds; DefaultKind applies
	// when the kind attribute is absent or unmapped.
	KindValues  map[directory.CollaborationKind][]string `yaml:"kind_values"`
	DefaultKind directory.CollaborationKind              `yaml:"default_kind"`
	// StatusValues maps attribute values to pending, active, suspended,
	// closed; without a status attribute a collaboration is active unless
	// its review is overdue.
	StatusValues     map[directory.Status][]string `yaml:"status_values"`
	DefaultFairshare int                           `yaml:"default_fairshare"`
	Contacts         ContactMapping                `yaml:"contacts"`
	// Nested says what a member that is itself a collaboration's group
	// (member_dn) means: expand (its members count as members, through
	// any depth up to 16, cycles reported) or report (left out, named).
	Nested string `yaml:"nested"`
}

// What a nested group member means (CollaborationMapping.Nested).
const (
	NestedExpand = "expand"
	NestedReport = "report"
)

// CollaborationAttributes names the LDAP attribute behind each collaboration field.
type CollaborationAttributes struct {
	Name          string `yaml:"name"`
	GIDNumber     string `yaml:"gid_number"`
	Members       string `yaml:"members"`
	Kind          string `yaml:"kind"`
	Status        string `yaml:"status"`
	ReviewedUntil string `yaml:"reviewed_until"` // GeneralizedTime or YYYY-MM-DD
	Fairshare     string `yaml:"fairshare"`
	Lists         string `yaml:"lists"`
	Activity      string `yaml:"activity"`
}

// ContactMapping says where contacts come from: DN-valued attributes on the
// collaboration (Attributes, keyed by role), role groups (Groups), or both.
type ContactMapping struct {
	Attributes map[directory.Role]string `yaml:"attributes"`
	Groups     *RoleGroups               `yaml:"groups"`
}

// RoleGroups are groups such as cn=atlas-computing,ou=roles,... whose
// members hold a role in a collaboration.
type RoleGroups struct {
	Search `yaml:",inline"`
	// Name is the group name pattern, with {collaboration} and {role}.
	Name          string `yaml:"name"`
	NameAttribute string `yaml:"name_attribute"`
	Membership    string `yaml:"membership"`
	Members       string `yaml:"members"`
}

// ProductionMapping maps production accounts: collaboration-owned accounts.
type ProductionMapping struct {
	Search     `yaml:",inline"`
	Attributes ProductionAttributes `yaml:"attributes"`
}

// ProductionAttributes names the LDAP attribute behind each production account field.
type ProductionAttributes struct {
	Name      string `yaml:"name"`
	UIDNumber string `yaml:"uid_number"`
	GIDNumber string `yaml:"gid_number"`
	Home      string `yaml:"home"`
	Shell     string `yaml:"shell"`
	// Collaboration holds the owner's DN or name; unmapped, the owner is
	// the collaboration whose name prefixes the account's.
	Collaboration string `yaml:"collaboration"`
	Managers      string `yaml:"managers"` // managers' e-mail addresses
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
func Load(path string, kinds engine.Registry, formats []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, kinds, formats)
}

// Parse is Load on bytes already read; name is used in messages. Every
// problem is reported at once, in the file's own words: unknown keys (with
// the key most likely meant), values of the wrong type, and what
// validation finds, each with its line. Only absent keys get defaults: an
// explicit value, zero included, is honoured when validation allows it.
func Parse(name string, data []byte, kinds engine.Registry, formats []string) (*Config, error) {
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
	// A value that failed to decode is reported once, not again by validation.
	failed := map[string]bool{}
	for _, p := range problems {
		failed[p.Path] = true
	}
	for _, p := range cfg.validate(formats) {
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
	def(given, "ldap.schema", &l.Schema, SchemaRFC2307)
	// What the schema preset fills counts as given: the defaults below
	// are for what neither the file nor the preset says.
	preset := l.applyPreset(given)
	has := func(path string) bool { return given(path) || preset[path] }
	if !has("ldap.bind.method") {
		l.Bind.Method = BindSimple
		if l.Bind.DN == "" && l.Bind.PasswordFile == "" {
			l.Bind.Method = BindAnonymous
		}
	}
	def(has, "ldap.timeout", &l.Timeout, Duration(10*time.Second))
	def(has, "ldap.refresh_timeout", &l.RefreshTimeout, Duration(time.Minute))
	def(has, "ldap.page_size", &l.PageSize, 1000)
	u := &l.Users
	const up = "ldap.users."
	def(has, up+"scope", &u.Scope, "sub")
	def(has, up+"filter", &u.Filter, "(objectClass=posixAccount)")
	a := &u.Attributes
	for _, d := range []struct {
		key string
		p   *string
		v   string
	}{{"uid", &a.UID, "uid"}, {"uid_number", &a.UIDNumber, "uidNumber"}, {"gid_number", &a.GIDNumber, "gidNumber"},
		{"name", &a.Name, "cn"}, {"mail", &a.Mail, "mail"}, {"home", &a.Home, "homeDirectory"}, {"shell", &a.Shell, "loginShell"}} {
		def(has, up+"attributes."+d.key, d.p, d.v)
	}
	def(has, up+"default_shell", &u.DefaultShell, "/bin/bash")
	def(has, up+"default_home", &u.DefaultHome, "/home/{uid}")
	def(has, up+"suspended_values", &u.SuspendedValues, []string{"suspended"})
	// OpenLDAP's ppolicy writes 000001010000Z for an administrative lock
	// (a lock after failed binds has its time, and heals by itself: it is
	// no reason to remove an account everywhere); 389-ds locks with
	// nsAccountLock. A server that knows neither attribute matches none.
	def(has, up+"disabled_filter", &u.DisabledFilter, "(|(pwdAccountLockedTime=000001010000Z)(nsAccountLock=TRUE))")
	if u.Attributes.Expires != "" {
		def(has, up+"expires_format", &u.ExpiresFormat, ExpiresGeneralizedTime)
	}

	g := &l.Collaborations
	const gp = "ldap.collaborations."
	def(has, gp+"scope", &g.Scope, "sub")
	def(has, gp+"membership", &g.Membership, MembershipUID)
	def(has, gp+"filter", &g.Filter, "(objectClass=posixGroup)")
	ga := &g.Attributes
	def(has, gp+"attributes.name", &ga.Name, "cn")
	def(has, gp+"attributes.gid_number", &ga.GIDNumber, "gidNumber")
	def(has, gp+"attributes.members", &ga.Members, defaultMembers(g.Membership))
	def(has, gp+"default_kind", &g.DefaultKind, directory.KindScientific)
	def(has, gp+"default_fairshare", &g.DefaultFairshare, 1)
	def(has, gp+"nested", &g.Nested, NestedReport)
	if rg := g.Contacts.Groups; rg != nil {
		const rp = gp + "contacts.groups."
		def(has, rp+"scope", &rg.Scope, "sub")
		def(has, rp+"filter", &rg.Filter, "(objectClass=*)")
		def(has, rp+"name", &rg.Name, "{collaboration}-{role}")
		def(has, rp+"name_attribute", &rg.NameAttribute, "cn")
		def(has, rp+"membership", &rg.Membership, MembershipDN)
		def(has, rp+"members", &rg.Members, defaultMembers(rg.Membership))
	}
	if p := l.ProductionAccounts; p != nil {
		const pp = "ldap.production_accounts."
		def(has, pp+"scope", &p.Scope, "sub")
		def(has, pp+"filter", &p.Filter, "(objectClass=posixAccount)")
		pa := &p.Attributes
		def(has, pp+"attributes.name", &pa.Name, "uid")
		def(has, pp+"attributes.uid_number", &pa.UIDNumber, "uidNumber")
		def(has, pp+"attributes.gid_number", &pa.GIDNumber, "gidNumber")
		def(has, pp+"attributes.home", &pa.Home, "homeDirectory")
		def(has, pp+"attributes.shell", &pa.Shell, "loginShell")
	}

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

	sv := &c.Serve
	def(has, "serve.listen", &sv.Listen, "127.0.0.1:9465")
	def(has, "serve.changes", &sv.Changes, ChangesAuto)
	def(has, "serve.full_reconcile", &sv.FullReconcile, "0 3 * * *")
	def(has, "serve.debounce", &sv.Debounce, Duration(200*time.Millisecond))
	poll := Duration(5 * time.Minute) // each poll reads the directory whole
	if l.Schema == SchemaAD {
		poll = Duration(10 * time.Second) // each poll reads what changed
	}
	def(has, "serve.poll_interval", &sv.PollInterval, poll)
	def(has, "serve.deletion_scan", &sv.DeletionScan, Duration(5*time.Minute))
	def(has, "serve.directory_grace", &sv.DirectoryGrace, Duration(time.Minute))
	def(has, "serve.retry_min", &sv.RetryMin, Duration(5*time.Second))
	def(has, "serve.retry_max", &sv.RetryMax, Duration(15*time.Minute))
	def(has, "serve.memory_limit", &sv.MemoryLimit, MemoryLimitAuto)

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

// defaultMembers names the member attribute of a membership style:
// groupOfNames' member for DNs, posixGroup's memberUid for uids.
func defaultMembers(membership string) string {
	if membership == MembershipDN {
		return "member"
	}
	return "memberUid"
}
