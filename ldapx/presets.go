package ldapx

// The directory layouts ldap.schema names.
const (
	SchemaRFC2307    = "rfc2307"    // posixAccount, posixGroup with memberUid (the defaults)
	SchemaRFC2307bis = "rfc2307bis" // groups are groupOfNames with member DNs and a gidNumber
	SchemaFreeIPA    = "freeipa"    // 389-ds as FreeIPA lays it out
	SchemaAD         = "ad"         // Active Directory (or Samba) with RFC 2307 attributes
)

// Schemas lists the layouts, for messages.
func Schemas() []string {
	return []string{SchemaRFC2307, SchemaRFC2307bis, SchemaFreeIPA, SchemaAD}
}

// applyPreset fills, for keys the file does not give, the filters and
// attribute names of the configured schema, and returns the keys it set.
func (l *Config) applyPreset(given func(string) bool) map[string]bool {
	set := map[string]bool{}
	str := func(path string, p *string, v string) {
		if !given(path) {
			*p, set[path] = v, true
		}
	}
	const up, gp = "users.", "collaborations."
	u, g := &l.Users, &l.Collaborations
	groupsOfNames := func() {
		str(gp+"filter", &g.Filter, "(&(objectClass=groupOfNames)(gidNumber=*))")
		str(gp+"membership", &g.Membership, MembershipDN)
	}
	// AD and FreeIPA nest groups as a matter of course.
	nested := func() { str(gp+"nested", &g.Nested, NestedExpand) }
	switch l.Schema {
	case SchemaRFC2307bis:
		groupsOfNames()
	case SchemaFreeIPA:
		groupsOfNames()
		nested()
		// A disabled FreeIPA account has nsAccountLock: TRUE.
		str(up+"disabled_filter", &u.DisabledFilter, "(nsAccountLock=TRUE)")
		// Its user private group (posixGroup, mepManagedEntry) is named on
		// the user entry.
		str(up+"attributes.private_group", &u.Attributes.PrivateGroup, "mepManagedEntry")
	case SchemaAD:
		str(up+"filter", &u.Filter, "(&(objectClass=user)(objectCategory=person)(uidNumber=*))")
		str(up+"attributes.uid", &u.Attributes.UID, "sAMAccountName")
		str(up+"attributes.name", &u.Attributes.Name, "displayName")
		str(up+"attributes.home", &u.Attributes.Home, "unixHomeDirectory")
		// userAccountControl's ACCOUNTDISABLE bit (2), as the directory
		// evaluates it; accountExpires in the past.
		str(up+"disabled_filter", &u.DisabledFilter, "(userAccountControl:1.2.840.113556.1.4.803:=2)")
		str(up+"attributes.expires", &u.Attributes.Expires, "accountExpires")
		str(up+"expires_format", &u.ExpiresFormat, ExpiresFileTime)
		str(gp+"filter", &g.Filter, "(&(objectClass=group)(gidNumber=*))")
		str(gp+"membership", &g.Membership, MembershipDN)
		nested()
	}
	return set
}
