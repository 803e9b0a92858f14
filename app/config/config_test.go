package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting/ingest"
	"github.com/collabsync/collabsync/ldapx"
	"github.com/collabsync/collabsync/sync/nss"
	"github.com/collabsync/collabsync/sync/targets"
)

// parse and load read a configuration with the program's own kinds and
// formats, as cmd hands them in.
func parse(name string, data []byte) (*Config, error) {
	return Parse(name, data, targets.Kinds(), ingest.Formats().Names())
}

func load(path string) (*Config, error) {
	return Load(path, targets.Kinds(), ingest.Formats().Names())
}

func secretFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func minimal(pw string) string {
	return `
ldap:
  uris: ["ldap://127.0.0.1:389", "ldapi://%2Frun%2Fslapd%2Fldapi"]
  bind: {dn: "cn=sync,dc=example,dc=org", password_file: "` + pw + `"}
  users: {base_dn: "ou=people,dc=example,dc=org"}
  collaborations: {base_dn: "ou=groups,dc=example,dc=org"}
targets:
  nss: {}
`
}

func TestParseDefaults(t *testing.T) {
	cfg, err := parse("c.yaml", []byte(minimal(secretFile(t))))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"bind method", cfg.LDAP.Bind.Method, ldapx.BindSimple},
		{"timeout", time.Duration(cfg.LDAP.Timeout), 10 * time.Second},
		{"page size", cfg.LDAP.PageSize, 1000},
		{"user filter", cfg.LDAP.Users.Filter, "(objectClass=posixAccount)"},
		{"uid attr", cfg.LDAP.Users.Attributes.UID, "uid"},
		{"membership", cfg.LDAP.Collaborations.Membership, ldapx.MembershipUID},
		{"members attr", cfg.LDAP.Collaborations.Attributes.Members, "memberUid"},
		{"targets", len(cfg.Targets), 1},
		{"nss name", cfg.Targets[0].Name, "nss"},
		{"nss dir", cfg.Targets[0].Settings.(*nss.Settings).Dir, "/var/lib/extrausers"},
		{"nss guard", cfg.Targets[0].Guard.MaxDeleteRatio, 0.2},
		{"state dir", cfg.StateDir, "/var/lib/collabsync"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestMemberDNDefault(t *testing.T) {
	doc := strings.Replace(minimal(secretFile(t)), `collaborations: {`, `collaborations: {membership: member_dn, `, 1)
	cfg, err := parse("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.LDAP.Collaborations.Attributes.Members; got != "member" {
		t.Errorf("members attribute for member_dn = %q, want member", got)
	}
}

// TestProblems checks that each mistake is reported, with its line, and
// that all of them come at once.
func TestProblems(t *testing.T) {
	doc := `ldap:
  uris:
    - ldap://ok.example.org
    - http://wrong.example.org
  bind:
    method: simple
    password_file: /nonexistent/pw
  tls:
    start_tls: true
  page_size: -1
  users:
    base_dn: "not a dn"
    filter: "(uid=unclosed"
    scope: deep
  collaborations:
    base_dn: ou=groups,dc=example,dc=org
    membership: nested
state_dir: relative/dir
targets:
  nss:
    dir: also/relative
    guard:
      max_delete_ratio: 3
ha:
  url: http://lease.example.org
  password_file: /nonexistent/pw
  lease_dn: ou=collabsync,dc=example,dc=org
  ttl: 1s
`
	_, err := parse("bad.yaml", []byte(doc))
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Fatalf("want *FileError, got %v", err)
	}
	want := []struct {
		line int
		path string
		msg  string
	}{
		{4, "ldap.uris[1]", `unsupported scheme "http"`},
		{5, "ldap.bind.dn", "simple bind needs a bind DN"},
		{7, "ldap.bind.password_file", "cannot read"},
		{10, "ldap.page_size", "must be between"},
		{12, "ldap.users.base_dn", "not a valid DN"},
		{14, "ldap.users.scope", `unknown scope "deep"`},
		{13, "ldap.users.filter", "invalid LDAP filter"},
		{17, "ldap.collaborations.membership", `unknown "nested"`},
		{18, "state_dir", "absolute path"},
		{21, "targets.nss.dir", "absolute path"},
		{23, "targets.nss.guard.max_delete_ratio", "between 0 and 1"},
		{25, "ha.url", "want ldap:// or ldaps://"},
		{24, "ha.bind_dn", "is required"},
		{26, "ha.password_file", "/nonexistent/pw"},
		{27, "ha.lease_dn", "want cn=<name>"},
		{28, "ha.ttl", "at least 3s"},
	}
	for _, w := range want {
		found := false
		for _, p := range fe.Problems {
			if p.Path == w.path && strings.Contains(p.Msg, w.msg) {
				found = true
				if p.Line != w.line {
					t.Errorf("%s: line %d, want %d", w.path, p.Line, w.line)
				}
			}
		}
		if !found {
			t.Errorf("no problem %s: %s in\n%v", w.path, w.msg, err)
		}
	}
	if len(fe.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(fe.Problems), len(want), err)
	}
	if !strings.Contains(err.Error(), "bad.yaml:14: ldap.users.scope") {
		t.Errorf("message does not read file:line: path:\n%v", err)
	}
}

func TestUnknownKeysAndTypes(t *testing.T) {
	doc := minimal(secretFile(t)) + "extra_key: 1\n"
	doc = strings.Replace(doc, "ldap:\n", "ldap:\n  page_sise: 10\n  timeout: soon\n", 1)
	_, err := parse("c.yaml", []byte(doc))
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Fatalf("want *FileError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"c.yaml:3: ldap.page_sise: unknown key (did you mean page_size?)",
		`c.yaml:4: ldap.timeout: invalid duration "soon"`, "c.yaml:11: extra_key: unknown key\n"} {
		if !strings.Contains(msg+"\n", want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

// TestEveryProblemAtOnce: decoding problems (unknown keys, wrong types)
// and validation problems come together, in the YAML's words, by line.
func TestEveryProblemAtOnce(t *testing.T) {
	doc := `ldap:
  uris: [ldap://h]
  pagesize: 10
  page_size: lots
  users:
    base_dn: ou=people,dc=example,dc=org
    scope: deep
  collaborations:
    base_dn: ou=groups,dc=example,dc=org
    default_fairshare: [1, 2]
targets:
  nss:
    guard: {max_delete_ratio: 2, min_deletes: many}
`
	_, err := parse("c.yaml", []byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	want := `c.yaml: 6 problem(s)
  c.yaml:3: ldap.pagesize: unknown key (did you mean page_size?)
  c.yaml:4: ldap.page_size: want an integer, got "lots"
  c.yaml:7: ldap.users.scope: unknown scope "deep" (want sub, one or base)
  c.yaml:10: ldap.collaborations.default_fairshare: want an integer, got a list
  c.yaml:13: targets.nss.guard.min_deletes: want an integer, got "many"
  c.yaml:13: targets.nss.guard.max_delete_ratio: must be between 0 and 1, got 2`
	if got := err.Error(); !strings.HasPrefix(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "!!") {
		t.Errorf("message names Go or YAML internals:\n%v", err)
	}
}

// TestExplicitZeroIsHonoured: only absent keys get defaults.
func TestExplicitZeroIsHonoured(t *testing.T) {
	doc := minimal(secretFile(t)) + `serve: {debounce: 0s}
rules: {review_grace: 0s}
`
	doc = strings.Replace(doc, "nss: {}", "nss: {guard: {max_delete_ratio: 0, min_deletes: 0}}", 1)
	doc = strings.Replace(doc, `collaborations: {`, `collaborations: {default_fairshare: 0, `, 1)
	cfg, err := parse("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"max_delete_ratio", cfg.Targets[0].Guard.MaxDeleteRatio, 0.0},
		{"min_deletes", cfg.Targets[0].Guard.MinDeletes, 0},
		{"debounce", cfg.Serve.Debounce, Duration(0)},
		{"default_fairshare", cfg.LDAP.Collaborations.DefaultFairshare, 0},
		{"review_grace", cfg.Rules.ReviewGrace, Duration(0)},
		{"review_warning (absent)", cfg.Rules.ReviewWarning, Duration(30 * 24 * time.Hour)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// A zero validation refuses is reported, not replaced.
	_, err = parse("c.yaml", []byte(strings.Replace(doc, "ldap:\n", "ldap:\n  timeout: 0s\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:3: ldap.timeout: must be positive") {
		t.Errorf("timeout 0s: %v", err)
	}
}

func TestEmptyFile(t *testing.T) {
	_, err := parse("empty.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "ldap.uris: at least one LDAP URI is required") {
		t.Errorf("empty file: %v", err)
	}
}

func TestExampleConfig(t *testing.T) {
	// The shipped example, as the package installs it, is valid but for
	// the one file the admin must create: the bind password the unit loads
	// as its credential.
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	_, err := load("../../configs/collabsync.example.yaml")
	if _, statErr := os.Stat("/etc/collabsync/ldap-password"); statErr == nil {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	var fe *FileError
	if !errors.As(err, &fe) || len(fe.Problems) != 1 || fe.Problems[0].Path != "ldap.bind.password_file" ||
		!strings.Contains(fe.Problems[0].Msg, "/etc/collabsync/ldap-password") {
		t.Errorf("example config: %v, want one problem naming /etc/collabsync/ldap-password", err)
	}
}

// TestCredentialSource: outside the service, the unit's credential path
// is the file the unit loads it from; inside it, or any other path, is
// read as written.
func TestCredentialSource(t *testing.T) {
	for _, c := range []struct {
		path, credentials, want string
		ok                      bool
	}{
		{"/run/credentials/collabsync.service/ldap-password", "", "/etc/collabsync/ldap-password", true},
		{"/run/credentials/collabsync.service/ldap-password", "/run/credentials/collabsync.service", "", false},
		{"/run/credentials/other.service/ldap-password", "", "", false},
		{"/run/credentials/collabsync.service/../../etc/shadow", "", "", false},
		{"/etc/collabsync/ldap-password", "", "", false},
	} {
		if got, ok := credentialSource(c.path, c.credentials); got != c.want || ok != c.ok {
			t.Errorf("credentialSource(%q, %q) = %q, %v; want %q, %v", c.path, c.credentials, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParse: no input makes Parse panic, and an accepted config validates.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal("/etc/hostname")))
	f.Add([]byte("ldap: {uris: [ldap://x]}\n"))
	f.Add([]byte("ldap:\n  timeout: 5s\n  page_size: [1]\n"))
	f.Add([]byte("{{{"))
	f.Add([]byte(minimal("/etc/hostname") + "serve: {memory_limit: 512MiB}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parse("fuzz.yaml", data)
		if err == nil && len(cfg.validate(ingest.Formats().Names(), true)) != 0 {
			t.Errorf("accepted config does not validate")
		}
	})
}

func TestAccountingSources(t *testing.T) {
	doc := minimal(secretFile(t)) + `accounting:
  sources:
    - {name: c1-sacct, format: slurm-sacct, paths: ["/var/log/sacct*"], cluster: c1}
    - {name: c1-sacct, format: lsf, paths: [relative], time_zone: Mars/Olympus, schedule: "every day"}
  allocation_period: fortnight
`
	_, err := parse("c.yaml", []byte(doc))
	msg := fmt.Sprint(err)
	for _, want := range []string{`source "c1-sacct" is defined twice`, `unknown format "lsf"`, `"relative" must be an absolute path`,
		"accounting.sources[1].cluster: required", `unknown time zone "Mars/Olympus"`, "accounting.sources[1].schedule: not a cron schedule",
		`accounting.allocation_period: unknown period "fortnight" (want year, quarter or month)`} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	cfg, err := parse("c.yaml", []byte(minimal(secretFile(t))+"accounting:\n  sources:\n    - {name: a, format: pbs, paths: [/x], cluster: c}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Accounting.Sources[0]; s.TimeZone != "UTC" || s.Schedule != "*/15 * * * *" || cfg.Accounting.AllocationPeriod != "year" {
		t.Errorf("defaults: %+v", s)
	}
}

// TestTargetInstances: targets as a list of named instances of registered
// kinds (two of one kind included); the older mapping of kind to settings
// reads as instances named after their kind; mistakes name their line.
func TestTargetInstances(t *testing.T) {
	base := strings.Replace(minimal(secretFile(t)), "targets:\n  nss: {}\n", "", 1)
	cfg, err := parse("c.yaml", []byte(base+`targets:
  - name: extrausers
    kind: nss
    dir: /var/lib/extrausers
  - name: login-nodes
    kind: nss
    dir: /srv/login/extrausers
    guard: {max_delete_ratio: 0.05}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Targets) != 2 {
		t.Fatalf("targets: %+v", cfg.Targets)
	}
	for i, want := range []struct {
		name, dir string
		ratio     float64
	}{{"extrausers", "/var/lib/extrausers", 0.2}, {"login-nodes", "/srv/login/extrausers", 0.05}} {
		got := cfg.Targets[i]
		if got.Name != want.name || got.Kind.Name != "nss" || got.Settings.(*nss.Settings).Dir != want.dir || got.Guard.MaxDeleteRatio != want.ratio {
			t.Errorf("target %d = %+v (settings %+v), want %+v", i, got, got.Settings, want)
		}
	}

	_, err = parse("c.yaml", []byte(base+`targets:
  - name: extrausers
    kind: nss
    directory: /var/lib/extrausers
  - name: extrausers
    kind: nss
  - name: lists
    kind: mailmain
  - kind: nss
    dir: relative
  - name: Bad Name
    kind: nss
  - name: mail
    kind: aliases
    path: /etc/aliases.d/collabsync
    command: [postalias, /etc/aliases.d/collabsync]
    command_timeout: 0s
`))
	want := []string{
		`c.yaml:10: targets[0].directory: unknown key for a target of kind nss (did you mean dir?)`,
		`c.yaml:11: targets[1].name: "extrausers" is also the name of targets[0]`,
		`c.yaml:14: targets[2].kind: unknown target kind "mailmain" (known: ` + targets.Kinds().Names() + `)`,
		`c.yaml:15: targets[3].name: every target needs a name`,
		`c.yaml:16: targets[3].dir: must be an absolute path, got "relative"`,
		`c.yaml:17: targets[4].name: "Bad Name" is not a target name`,
		`c.yaml:22: targets[5].command: the program must be an absolute path (no shell, no PATH search), got "postalias"`,
		`c.yaml:23: targets[5].command_timeout: must be positive`,
	}
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}

// TestSchemaPresets: ldap.schema fills a standard layout's filters and
// attributes; a key the file gives wins over the preset.
func TestSchemaPresets(t *testing.T) {
	pw := secretFile(t)
	withPreset := func(extra string) *Config {
		t.Helper()
		doc := strings.Replace(minimal(pw), "  users: {base_dn:", extra+"  users: {base_dn:", 1)
		cfg, err := parse("c.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ad := withPreset("  schema: ad\n").LDAP
	for _, c := range []struct{ name, got, want string }{
		{"users filter", ad.Users.Filter, "(&(objectClass=user)(objectCategory=person)(uidNumber=*))"},
		{"uid", ad.Users.Attributes.UID, "sAMAccountName"},
		{"home", ad.Users.Attributes.Home, "unixHomeDirectory"},
		{"uid number", ad.Users.Attributes.UIDNumber, "uidNumber"},
		{"groups filter", ad.Collaborations.Filter, "(&(objectClass=group)(gidNumber=*))"},
		{"membership", ad.Collaborations.Membership, ldapx.MembershipDN},
		{"members", ad.Collaborations.Attributes.Members, "member"},
		{"disabled filter", ad.Users.DisabledFilter, "(userAccountControl:1.2.840.113556.1.4.803:=2)"},
		{"expires", ad.Users.Attributes.Expires, "accountExpires"},
		{"expires format", ad.Users.ExpiresFormat, ldapx.ExpiresFileTime},
	} {
		if c.got != c.want {
			t.Errorf("ad %s = %q, want %q", c.name, c.got, c.want)
		}
	}
	ipa := withPreset("  schema: freeipa\n").LDAP
	if ipa.Users.DisabledFilter != "(nsAccountLock=TRUE)" || ipa.Collaborations.Membership != ldapx.MembershipDN {
		t.Errorf("freeipa: %+v %+v", ipa.Users, ipa.Collaborations)
	}
	if def := withPreset("").LDAP; def.Schema != ldapx.SchemaRFC2307 || def.Collaborations.Attributes.Members != "memberUid" ||
		def.Users.DisabledFilter != "(|(pwdAccountLockedTime=000001010000Z)(nsAccountLock=TRUE))" || def.Users.Attributes.Expires != "" {
		t.Errorf("default schema: %q, members %q, disabled filter %q, expires %q", def.Schema, def.Collaborations.Attributes.Members,
			def.Users.DisabledFilter, def.Users.Attributes.Expires)
	}
	// An explicit empty disabled_filter is honoured; a broken one and an
	// unknown expiry format are named.
	users := `  users: {base_dn: "ou=people,dc=example,dc=org"}`
	with := func(keys string) string {
		return strings.Replace(minimal(pw), users, strings.TrimSuffix(users, "}")+", "+keys+"}", 1)
	}
	if c, err := parse("c.yaml", []byte(with(`disabled_filter: ""`))); err != nil || c.LDAP.Users.DisabledFilter != "" {
		t.Errorf("explicit empty disabled_filter: %v %+v", err, c)
	}
	for _, c := range []struct{ keys, want string }{
		{`disabled_filter: "(nsAccountLock=TRUE"`, `c.yaml:5: ldap.users.disabled_filter: invalid LDAP filter`},
		{`attributes: {expires: shadowExpire}, expires_format: seconds`, `ldap.users.expires_format: unknown format "seconds"`},
	} {
		if _, err := parse("c.yaml", []byte(with(c.keys))); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.keys, err)
		}
	}
	if c, err := parse("c.yaml", []byte(with(`attributes: {expires: shadowExpire}, expires_format: days`))); err != nil ||
		c.LDAP.Users.ExpiresFormat != ldapx.ExpiresDays {
		t.Errorf("shadowExpire in days: %v", err)
	}
	// Explicit keys override the preset.
	doc := strings.Replace(minimal(pw), `  users: {base_dn: "ou=people,dc=example,dc=org"}`,
		"  schema: ad\n  users: {base_dn: \"ou=people,dc=example,dc=org\", attributes: {uid: uid}}", 1)
	cfg, err := parse("c.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LDAP.Users.Attributes.UID != "uid" || cfg.LDAP.Users.Attributes.Home != "unixHomeDirectory" {
		t.Errorf("override: %+v", cfg.LDAP.Users.Attributes)
	}
	_, err = parse("c.yaml", []byte(strings.Replace(minimal(pw), "  users:", "  schema: openldap\n  users:", 1)))
	if err == nil || !strings.Contains(err.Error(), `c.yaml:5: ldap.schema: unknown schema "openldap" (want rfc2307, rfc2307bis, freeipa, ad)`) {
		t.Errorf("unknown schema: %v", err)
	}
}

// TestMaintenanceSettings: windows and calendars are checked when the
// configuration loads, each problem at its line.
func TestMaintenanceSettings(t *testing.T) {
	pw := secretFile(t)
	broken := filepath.Join(t.TempDir(), "broken.ics")
	os.WriteFile(broken, []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:soon\r\n"), 0o644)
	doc := strings.Replace(minimal(pw), "targets:\n  nss: {}\n", `targets:
  - name: nss
    kind: nss
    maintenance:
      windows:
        - {start: 2026-12-08T17:00:00Z, end: 2026-12-08T07:00:00Z}
        - {start: 2026-12-09T07:00:00Z}
      calendar: `+broken+`
  - name: other
    kind: nss
    dir: /srv/other
    maintenance: {calendar: downtimes.ics, services: [slurm], window: []}
  - name: fine
    kind: nss
    dir: /srv/fine
    maintenance: {windows: [{start: 2026-12-08T07:00:00Z, end: 2026-12-08T17:00:00Z, summary: Q4}]}
`, 1)
	cfg, err := parse("c.yaml", []byte(doc))
	want := []string{
		"c.yaml:12: targets[0].maintenance.windows[0].end: must be after the start",
		"c.yaml:13: targets[0].maintenance.windows[1]: needs a start and an end",
		"c.yaml:14: targets[0].maintenance.calendar: calendar " + broken,
		`c.yaml:18: targets[1].maintenance.window: unknown key (did you mean windows?)`,
		`c.yaml:18: targets[1].maintenance.calendar: must be an absolute path, got "downtimes.ics"`,
	}
	if err == nil {
		t.Fatalf("accepted: %+v", cfg.Targets)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "targets[2]") {
		t.Errorf("a valid window refused:\n%v", err)
	}
}

// TestMemoryLimit: sizes with their units, auto by default, and the
// settings refused with the key's line.
func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"512MiB", 512 << 20, false}, {"1GiB", 1 << 30, false}, {"2GB", 2 << 30, false}, {"64KiB", 64 << 10, false},
		{"100000000", 100000000, false}, {"10B", 10, false},
		{"", 0, true}, {"MiB", 0, true}, {"-1MiB", 0, true}, {"12TiB", 0, true}, {"1.5GiB", 0, true}, {"9999999999GiB", 0, true},
	} {
		got, err := ParseSize(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
	cfg, err := parse("c.yaml", []byte(minimal(secretFile(t))))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Serve.MemoryLimit != MemoryLimitAuto {
		t.Errorf("default memory_limit = %q, want auto", cfg.Serve.MemoryLimit)
	}
	for setting, want := range map[string]string{
		"1GiB": "", "off": "", "auto": "",
		"lots":  `serve.memory_limit: want auto, off or a size: "lots" is not a size`,
		"16MiB": "serve.memory_limit: 16MiB is less than 32MiB",
	} {
		_, err := parse("c.yaml", []byte(minimal(secretFile(t))+"serve: {memory_limit: "+setting+"}\n"))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("memory_limit %s: %v, want %q", setting, err, want)
		}
	}
}
