package ldapx

import (
	"sort"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// equalityFilter builds (attr=value) with value escaped (RFC 4515). Every
// filter collabsync builds from data goes through here.
func equalityFilter(attr, value string) string {
	return "(" + attr + "=" + ldap.EscapeFilter(value) + ")"
}

// andFilter combines filters; an empty list matches everything.
func andFilter(filters ...string) string {
	switch len(filters) {
	case 0:
		return "(objectClass=*)"
	case 1:
		return filters[0]
	}
	return "(&" + strings.Join(filters, "") + ")"
}

// childDN builds attr=value,parent with value escaped (RFC 4514).
func childDN(attr, value, parent string) string {
	return attr + "=" + ldap.EscapeDN(value) + "," + parent
}

// normalizeDN gives DNs that differ only in case, spacing or escaping the
// same key, so member DNs can be matched against user DNs. It returns ""
// when dn does not parse.
func normalizeDN(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for i, rdn := range parsed.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		avas := make([]string, len(rdn.Attributes))
		for j, a := range rdn.Attributes {
			avas[j] = strings.ToLower(a.Type) + "=" + ldap.EscapeDN(strings.ToLower(a.Value))
		}
		sort.Strings(avas) // a multi-valued RDN's order is not significant
		b.WriteString(strings.Join(avas, "+"))
	}
	return b.String()
}
