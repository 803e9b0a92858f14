package ldapx

import (
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
)

// Config says how to reach the directory and how its entries map to the
// model: the ldap section of the configuration file, which holds it
// whole. Keys in its defaults and problems are relative to the section.
type Config struct {
	// URIs are tried in order; the first that connects and binds wins.
	URIs     []string          `yaml:"uris"`
	Bind     Bind              `yaml:"bind"`
	TLS      TLS               `yaml:"tls"`
	Timeout  duration.Duration `yaml:"timeout"`
	PageSize int               `yaml:"page_size"`
	// Schema names the directory's layout (rfc2307, rfc2307bis, freeipa,
	// ad): it fills the filters and attribute names a standard site of that
	// kind has. Explicit keys override it.
	Schema string `yaml:"schema"`
	// RefreshTimeout is how long a syncrepl refresh may receive nothing
	// before it is taken to be cut (a server size limit can end it
	// silently) and fails.
	RefreshTimeout duration.Duration `yaml:"refresh_timeout"`

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
	// Allocation and GPUAllocation: core-hours and GPU-hours allocated per
	// period (accounting.allocation_period); shipped schema: csAllocation,
	// csGPUAllocation.
	Allocation    string `yaml:"allocation"`
	GPUAllocation string `yaml:"gpu_allocation"`
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

// ApplyDefaults fills what the file does not give (given reports whether
// it gives a key, relative to the section): first what ldap.schema's
// preset says, then the defaults of a site using the preset's layout.
// An explicit value, zero included, is kept.
func (l *Config) ApplyDefaults(given func(key string) bool) {
	def(given, "schema", &l.Schema, SchemaRFC2307)
	// What the schema preset fills counts as given: the defaults below
	// are for what neither the file nor the preset says.
	preset := l.applyPreset(given)
	has := func(path string) bool { return given(path) || preset[path] }
	if !has("bind.method") {
		l.Bind.Method = BindSimple
		if l.Bind.DN == "" && l.Bind.PasswordFile == "" {
			l.Bind.Method = BindAnonymous
		}
	}
	def(has, "timeout", &l.Timeout, duration.Duration(10*time.Second))
	def(has, "refresh_timeout", &l.RefreshTimeout, duration.Duration(time.Minute))
	def(has, "page_size", &l.PageSize, 1000)
	u := &l.Users
	const up = "users."
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
	const gp = "collaborations."
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
		const pp = "production_accounts."
		def(has, pp+"scope", &p.Scope, "sub")
		def(has, pp+"filter", &p.Filter, "(objectClass=posixAccount)")
		pa := &p.Attributes
		def(has, pp+"attributes.name", &pa.Name, "uid")
		def(has, pp+"attributes.uid_number", &pa.UIDNumber, "uidNumber")
		def(has, pp+"attributes.gid_number", &pa.GIDNumber, "gidNumber")
		def(has, pp+"attributes.home", &pa.Home, "homeDirectory")
		def(has, pp+"attributes.shell", &pa.Shell, "loginShell")
	}
}

// def sets *p to v unless the file gives key a value.
func def[T any](has func(string) bool, key string, p *T, v T) {
	if !has(key) {
		*p = v
	}
}

// defaultMembers names the member attribute of a membership style:
// groupOfNames' member for DNs, posixGroup's memberUid for uids.
func defaultMembers(membership string) string {
	if membership == MembershipDN {
		return "member"
	}
	return "memberUid"
}
