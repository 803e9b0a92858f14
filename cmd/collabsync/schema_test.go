package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestShippedSchemaFilesAgree: the slapd.conf and cn=config forms of the
// optional schema define the same attribute types and object classes,
// word for word. The LDIF form loads in real slapd in the rules tests.
func TestShippedSchemaFilesAgree(t *testing.T) {
	defs := func(path, prefix string) []string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`(?m)^` + prefix + `\s*(\(.*\))$`)
		var out []string
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			out = append(out, m[1])
		}
		sort.Strings(out)
		return out
	}
	schemaAT := defs("../../configs/ldap/collabsync.schema", "attributetype")
	schemaOC := defs("../../configs/ldap/collabsync.schema", "objectclass")
	ldifAT := defs("../../configs/ldap/collabsync.ldif", "olcAttributeTypes:")
	ldifOC := defs("../../configs/ldap/collabsync.ldif", "olcObjectClasses:")
	if len(schemaAT) == 0 || len(schemaOC) == 0 {
		t.Fatal("no definitions found")
	}
	if strings.Join(schemaAT, "\n") != strings.Join(ldifAT, "\n") || strings.Join(schemaOC, "\n") != strings.Join(ldifOC, "\n") {
		t.Errorf("collabsync.schema and collabsync.ldif differ:\n%v\n%v", schemaAT, ldifAT)
	}
}
