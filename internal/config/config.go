// Package config holds collabsync's YAML configuration: schema, defaults and
// validation. Load reports every problem at once, each with file and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	LDAP     LDAP    `yaml:"ldap"`
	StateDir string  `yaml:"state_dir"`
	Targets  Targets `yaml:"targets"`
}

// LDAP says how to reach the directory and how its entries map to the model.
type LDAP struct {
	// URIs are tried in order; the first that connects and binds wins.
	URIs     []string `yaml:"uris"`
	Bind     Bind     `yaml:"bind"`
	TLS      TLS      `yaml:"tls"`
	Timeout  Duration `yaml:"timeout"`
	PageSize int      `yaml:"page_size"`

	Users          UserMapping          `yaml:"users"`
	Collaborations CollaborationMapping `yaml:"collaborations"`
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
}

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
}

// CollaborationAttributes names the LDAP attribute behind each collaboration field.
type CollaborationAttributes struct {
	Name      string `yaml:"name"`
	GIDNumber string `yaml:"gid_number"`
	Members   string `yaml:"members"`
}

// Targets configures the downstream systems; a nil target is disabled.
type Targets struct {
	NSS *NSSTarget `yaml:"nss"`
}

// Guard limits what one apply may delete.
type Guard struct {
	// MaxDeleteRatio is the share of a target's current records one apply may
	// delete without explicit approval (--allow-deletions).
	MaxDeleteRatio float64 `yaml:"max_delete_ratio"`
	// MinDeletes: fewer deletions than this are never held back.
	MinDeletes int `yaml:"min_deletes"`
}

// NSSTarget writes passwd and group files in libnss-extrausers format.
type NSSTarget struct {
	Dir   string `yaml:"dir"`
	Guard Guard  `yaml:"guard"`
}

// Duration is a time.Duration written as "10s" or "1m30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// A *yaml.TypeError lets the decoder go on and report other problems too.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration %q (want e.g. 10s, 1m30s)", n.Line, s)}}
	}
	*d = Duration(v)
	return nil
}

// Load reads, defaults and validates the file. A *FileError lists every
// problem found, each with its line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &FileError{File: name, Problems: problemsFromYAML(err)}
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: let validation say what is missing.
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, &FileError{File: name, Problems: problemsFromYAML(err)}
	}
	cfg.applyDefaults()
	if problems := cfg.Validate(); len(problems) > 0 {
		for i := range problems {
			problems[i].Line = lineOf(&root, problems[i].Path)
		}
		return nil, &FileError{File: name, Problems: problems}
	}
	return &cfg, nil
}

func (c *Config) applyDefaults() {
	l := &c.LDAP
	if l.Bind.Method == "" {
		l.Bind.Method = BindSimple
		if l.Bind.DN == "" && l.Bind.PasswordFile == "" {
			l.Bind.Method = BindAnonymous
		}
	}
	if l.Timeout == 0 {
		l.Timeout = Duration(10 * time.Second)
	}
	if l.PageSize == 0 {
		l.PageSize = 1000
	}
	u := &l.Users
	defaultString(&u.Scope, "sub")
	defaultString(&u.Filter, "(objectClass=posixAccount)")
	a := &u.Attributes
	defaultString(&a.UID, "uid")
	defaultString(&a.UIDNumber, "uidNumber")
	defaultString(&a.GIDNumber, "gidNumber")
	defaultString(&a.Name, "cn")
	defaultString(&a.Mail, "mail")
	defaultString(&a.Home, "homeDirectory")
	defaultString(&a.Shell, "loginShell")
	defaultString(&u.DefaultShell, "/bin/bash")
	defaultString(&u.DefaultHome, "/home/{uid}")

	g := &l.Collaborations
	defaultString(&g.Scope, "sub")
	defaultString(&g.Membership, MembershipUID)
	defaultString(&g.Filter, "(objectClass=posixGroup)")
	ga := &g.Attributes
	defaultString(&ga.Name, "cn")
	defaultString(&ga.GIDNumber, "gidNumber")
	if g.Membership == MembershipDN {
		defaultString(&ga.Members, "member")
	} else {
		defaultString(&ga.Members, "memberUid")
	}

	defaultString(&c.StateDir, "/var/lib/collabsync")
	if n := c.Targets.NSS; n != nil {
		defaultString(&n.Dir, "/var/lib/extrausers")
		n.Guard.applyDefaults()
	}
}

func (g *Guard) applyDefaults() {
	if g.MaxDeleteRatio == 0 {
		g.MaxDeleteRatio = 0.2
	}
	if g.MinDeletes == 0 {
		g.MinDeletes = 10
	}
}

func defaultString(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
