package ldapx

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// minimalSection is the least ldap section (a password file made for
// it; users under ou=people,dc=x with the filter given, when not empty;
// collaborations under ou=groups,dc=x), with more lines of the section.
func minimalSection(tb testing.TB, usersFilter, more string) Config {
	tb.Helper()
	pw := filepath.Join(tb.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		tb.Fatal(err)
	}
	filter := ""
	if usersFilter != "" {
		filter = `, filter: "` + usersFilter + `"`
	}
	return parseSection(tb, `ldap:
  uris: ["ldap://127.0.0.1"]
  bind: {dn: "cn=x", password_file: "`+pw+`"}
  users: {base_dn: "ou=people,dc=x"`+filter+`}
  collaborations: {base_dn: "ou=groups,dc=x"}
`+more+`state_dir: /tmp
`)
}

// parseSection reads the ldap section of a configuration document (the
// whole document is the section when it has no ldap key) as the program's
// configuration does: decoded, defaulted where the document is silent,
// validated.
func parseSection(tb testing.TB, doc string) Config {
	tb.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		tb.Fatal(err)
	}
	section := &root
	if section.Kind == yaml.DocumentNode {
		section = section.Content[0]
	}
	for i := 0; i+1 < len(section.Content); i += 2 {
		if section.Content[i].Value == "ldap" {
			section = section.Content[i+1]
		}
	}
	given := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			given[key] = true
			walk(n.Content[i+1], key+".")
		}
	}
	walk(section, "")
	var cfg Config
	if err := section.Decode(&cfg); err != nil {
		tb.Fatal(err)
	}
	cfg.ApplyDefaults(func(key string) bool { return given[key] })
	if ps := cfg.Validate(); len(ps) > 0 {
		tb.Fatalf("ldap section: %v", ps)
	}
	return cfg
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in, scheme, host string
		bad              bool
	}{
		{in: "ldap://h.example.org", scheme: "ldap", host: "h.example.org"},
		{in: "ldaps://h:636", scheme: "ldaps", host: "h:636"},
		{in: "ldapi://%2Frun%2Fslapd%2Fldapi", scheme: "ldapi", host: "/run/slapd/ldapi"},
		{in: "ldapi://", scheme: "ldapi", host: ""},
		{in: "ldapi://relative", bad: true},
		{in: "ldap://h:99999", bad: true},
		{in: "ldap:///", bad: true},
		{in: "ldap://h/dc=example", bad: true},
		{in: "h.example.org", bad: true},
		{in: "https://h", bad: true},
	}
	for _, tt := range tests {
		u, err := ParseURI(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("%s: accepted", tt.in)
			}
			continue
		}
		if err != nil || u.Scheme != tt.scheme || u.Host != tt.host {
			t.Errorf("%s: got %v %v", tt.in, u, err)
		}
	}
}
