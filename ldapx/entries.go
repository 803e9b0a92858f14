package ldapx

import (
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/parallel"
)

// StreamName names one of the configured searches; each is read (and watched)
// on its own.
type StreamName string

// The streams.
const (
	StreamUsers          StreamName = "users"
	StreamDisabled       StreamName = "disabled_users" // the users disabled_filter selects
	StreamCollaborations StreamName = "collaborations"
	StreamRoleGroups     StreamName = "role_groups"
	StreamProduction     StreamName = "production_accounts"
)

// Mapped is one directory entry as its stream's mapping sees it: exactly
// one of the values, or the Problem that kept it from being mapped. It does
// not refer to other entries yet (member DNs, validators and owners are
// resolved across the whole directory by Resolve).
type Mapped struct {
	DN string
	// NormDN is the normalized DN, for entries other entries may name.
	NormDN        string
	User          *rawUser
	Collaboration *rawCollaboration
	RoleGroup     *RoleGroup
	Production    *rawProduction
	Problem       string
}

// RoleGroup is a group naming the contacts of one role of a collaboration,
// e.g. cn=atlas-computing.
type RoleGroup struct {
	Collaboration string
	Role          directory.Role
	Values        []string // DNs or uids
}

// Entries is the directory as mapped entries, by stream and then by a key
// unique within the stream (the entryUUID in a live model, the DN in a
// full read). A full read and the live model both hold one, and Resolve
// turns either into the same Snapshot.
type Entries map[StreamName]map[string]*Mapped

// streams lists the configured searches by stream.
func streams(cfg Config) map[StreamName]Search {
	s := map[StreamName]Search{StreamUsers: cfg.Users.Search, StreamCollaborations: cfg.Collaborations.Search}
	if f := cfg.Users.DisabledFilter; f != "" {
		d := cfg.Users.Search
		d.Filter = andFilter(d.Filter, f)
		s[StreamDisabled] = d
	}
	if rg := cfg.Collaborations.Contacts.Groups; rg != nil {
		s[StreamRoleGroups] = rg.Search
	}
	if p := cfg.ProductionAccounts; p != nil {
		s[StreamProduction] = p.Search
	}
	return s
}

// entryMapper maps the entries of every stream.
type entryMapper struct {
	m    *Mapper
	cfg  Config
	role *regexp.Regexp // role group names
	// byDN: some mapped value may be a user DN, so user DNs are normalized
	// (normalizing 100k DNs is not free).
	byDN bool
}

func newEntryMapper(cfg Config) *entryMapper {
	g := cfg.Collaborations
	em := &entryMapper{m: NewMapper(cfg), cfg: cfg, byDN: g.Membership == MembershipDN || g.Contacts.Groups != nil ||
		len(g.Contacts.Attributes) > 0 || cfg.Users.Attributes.ValidatedBy != ""}
	if rg := g.Contacts.Groups; rg != nil {
		em.role = roleGroupPattern(rg.Name)
	}
	return em
}

// attributes lists what to request for a stream's entries.
func (em *entryMapper) attributes(s StreamName) []string {
	switch s {
	case StreamUsers:
		return em.m.UserAttributes()
	case StreamDisabled:
		return []string{noAttributes} // only which entries match
	case StreamCollaborations:
		return em.m.CollaborationAttributes()
	case StreamRoleGroups:
		rg := em.cfg.Collaborations.Contacts.Groups
		return []string{rg.NameAttribute, rg.Members}
	case StreamProduction:
		return em.m.ProductionAttributes()
	}
	return nil
}

// noAttributes asks a search for no attributes (RFC 4511 4.5.1.8).
const noAttributes = "1.1"

// mapEntry maps one entry of a stream; it never fails: what cannot be
// mapped is a Problem naming the DN. A disabled user's entry is only its
// DN (its key names the user's entry).
func (em *entryMapper) mapEntry(s StreamName, e *ldap.Entry) *Mapped {
	out := &Mapped{DN: e.DN}
	var err error
	switch s {
	case StreamUsers:
		var u rawUser
		if u, err = em.m.User(e); err == nil {
			out.User = &u
			if em.byDN {
				out.NormDN = normalizeDN(e.DN)
			}
			pack(&u.DN, &u.UID, &u.Name, &u.Mail, &u.Home, &u.Shell, &u.Affiliation, &u.ValidatedBy, &u.PrivateGroup, &out.NormDN)
			if len(u.OptOuts) > 0 {
				// The entry's own values would keep the whole entry.
				u.OptOuts = cloneStrings(u.OptOuts)
			}
			out.DN = u.DN
		}
	case StreamCollaborations:
		var c rawCollaboration
		if c, err = em.m.Collaboration(e); err == nil {
			out.Collaboration = &c
			out.NormDN = normalizeDN(e.DN)
		}
	case StreamRoleGroups:
		out.RoleGroup, err = em.roleGroup(e)
	case StreamProduction:
		var p rawProduction
		if p, err = em.m.Production(e); err == nil {
			out.Production = &p
		}
	}
	if err != nil {
		out.Problem = err.Error()
	}
	return out
}

// transientStream says whether a stream's entries may be mapped from
// transient entries (Connection.SearchMapped) with mapTransient: users and
// disabled users (at 100k users, 100k entries of 110k). The other
// streams' mappings keep most of their entry (member lists) and take an
// entry of their own.
func transientStream(s StreamName) bool { return s == StreamUsers || s == StreamDisabled }

// mapTransient maps an entry of a transient stream, whose strings are
// valid only during the call, to a mapping that holds none of them: a
// user's strings are copied apart already (mapEntry); a disabled user,
// and an entry that is a Problem, is its DN.
func (em *entryMapper) mapTransient(s StreamName, e *ldap.Entry) *Mapped {
	m := em.mapEntry(s, e)
	m.Problem = strings.Clone(m.Problem)
	if m.User == nil {
		m.DN = strings.Clone(m.DN)
	}
	return m
}

// cloneStrings copies a list of strings into two allocations.
func cloneStrings(in []string) []string {
	out := slices.Clone(in)
	ptrs := make([]*string, len(out))
	for i := range out {
		ptrs[i] = &out[i]
	}
	pack(ptrs...)
	return out
}

// pack moves strings into one allocation. Apart, each is rounded up to
// its allocation size class; together a model's user takes ≈25 bytes less.
func pack(fields ...*string) {
	n := 0
	for _, f := range fields {
		n += len(*f)
	}
	var b strings.Builder
	b.Grow(n)
	for _, f := range fields {
		b.WriteString(*f)
	}
	all, off := b.String(), 0
	for _, f := range fields {
		*f = all[off : off+len(*f)]
		off += len(*f)
	}
}

func (em *entryMapper) roleGroup(e *ldap.Entry) (*RoleGroup, error) {
	rg := em.cfg.Collaborations.Contacts.Groups
	name, err := rdnPreferred(e, rg.NameAttribute)
	if err != nil {
		return nil, fmt.Errorf("role group: %w", err)
	}
	m := em.role.FindStringSubmatch(name)
	if m == nil {
		return nil, fmt.Errorf("role group name %q does not match %q", name, rg.Name)
	}
	return &RoleGroup{Collaboration: m[em.role.SubexpIndex("collab")], Role: directory.Role(m[em.role.SubexpIndex("role")]),
		Values: e.GetEqualFoldAttributeValues(rg.Members)}, nil
}

// Resolve turns mapped entries into a snapshot: it resolves member,
// contact, validator and owner references across the whole directory. It
// is pure, and the result does not depend on the order of the entries.
func Resolve(entries Entries) *directory.Snapshot {
	return resolveWith(entries, resolveUsers(entries[StreamUsers], entries[StreamDisabled]), nil)
}

// userPart is the users' share of a snapshot: sorted users, their
// problems, and the indexes the other streams resolve references with.
// The live model keeps it while no user entry changes, so a membership
// change does not pay for 100k users again. It is never modified.
type userPart struct {
	users []*directory.User
	// keys are the users' uid keys, which searches for a uid go by.
	keys     directory.UIDKeys
	problems []directory.Problem
	// uidByDN maps normalized user DNs to uids (users, sorted by uid,
	// are searched for a uid).
	uidByDN map[string]string
}

// resolveWith resolves the other streams against users and assembles the
// snapshot, which shares users' slice. Collaborations resolved against the
// same users before (in cache, by the last call; nil: none) are reused when
// their entry and role groups are the same; the cache is updated in place
// for the next call (at 1M users a new map of 100k collaborations each
// change was a fifth of the model's time).
func resolveWith(entries Entries, users *userPart, cache *collabCache) *directory.Snapshot {
	r := &resolver{snap: &directory.Snapshot{Users: users.users, UIDKeys: users.keys}, users: users, cache: cache}
	if r.cache == nil {
		r.cache = &collabCache{}
	}
	r.cache.run++
	if r.cache.m == nil {
		r.cache.m = make(map[*Mapped]*resolvedCollab, len(entries[StreamCollaborations]))
	}
	r.collaborations(entries[StreamCollaborations], entries[StreamRoleGroups])
	r.production(entries[StreamProduction])
	part := r.snap.Problems
	r.snap.Problems = append(append(make([]directory.Problem, 0, len(users.problems)+len(part)), users.problems...), part...)
	r.snap.SortSharedUsers()
	return r.snap
}

// collabCache keeps resolved collaborations by their (never modified)
// entry, valid while the users they were resolved against stay; run
// counts the calls, and an entry not used by the last one is dropped.
type collabCache struct {
	m   map[*Mapped]*resolvedCollab
	run uint64
	// order is the last call's collaboration entries' keys in their DNs'
	// order: while the same keys come, no sort (at 100k collaborations
	// the sort was a sixth of a membership change's time).
	order []string
}

// inOrder returns the entries in their DNs' order: the last call's order
// while the keys are the same and the DNs still in order, else sorted
// (and remembered).
func (c *collabCache) inOrder(entries map[string]*Mapped) []*Mapped {
	out := make([]*Mapped, 0, len(entries))
	if len(c.order) == len(entries) {
		for _, k := range c.order {
			e, ok := entries[k]
			if !ok || len(out) > 0 && out[len(out)-1].DN > e.DN {
				out = out[:0]
				break
			}
			out = append(out, e)
		}
		if len(out) == len(entries) {
			return out
		}
	}
	// Sorted with their keys: a sort of the keys looked both entries up
	// at each compare.
	type keyed struct {
		key string
		e   *Mapped
	}
	byDN := make([]keyed, 0, len(entries))
	for k, e := range entries {
		byDN = append(byDN, keyed{k, e})
	}
	slices.SortFunc(byDN, func(a, b keyed) int { return strings.Compare(a.e.DN, b.e.DN) })
	keys := make([]string, len(byDN))
	for i, k := range byDN {
		keys[i] = k.key
		out = append(out, k.e)
	}
	c.order = keys
	return out
}

type resolvedCollab struct {
	c        *directory.Collaboration // the snapshots' and the states', shared
	problems []directory.Problem
	groups   map[directory.Role][]string // the role groups' values it was resolved with
	// nested: a member DN is no user (another collaboration's group, or
	// unknown): it is resolved again on every call.
	nested bool
	run    uint64 // the last call that used it
}

// resolver is the work area of one Resolve.
type resolver struct {
	snap  *directory.Snapshot
	users *userPart
	// collabs are the collaborations' entries; byDN maps their normalized
	// DNs to them, made when a reference needs it (a member or owner DN
	// that is no user: most directories have none).
	collabs []*Mapped
	byDN    map[string]*Mapped
	cache   *collabCache
}

// collabByDN finds a collaboration's entry by its normalized DN.
func (r *resolver) collabByDN(norm string) *Mapped {
	if r.byDN == nil {
		r.byDN = make(map[string]*Mapped, len(r.collabs))
		for _, e := range r.collabs {
			r.byDN[e.NormDN] = e
		}
	}
	return r.byDN[norm]
}

func (r *resolver) problem(dn, format string, args ...any) {
	r.snap.Problems = append(r.snap.Problems, directory.Problem{DN: dn, Reason: fmt.Sprintf(format, args...)})
}

// dangling records a value that is skipped while its entry is used: a
// reference to a user that does not exist, an address that is none.
func (r *resolver) dangling(dn, format string, args ...any) {
	r.snap.Problems = append(r.snap.Problems, directory.Problem{DN: dn, Reason: fmt.Sprintf(format, args...), Reference: true})
}

// uidOf resolves a DN or a uid to a known uid.
func (r *resolver) uidOf(v string) (string, bool) { return r.users.uidOf(v) }

// resolvedMembers is a member list found among the users.
type resolvedMembers struct{ uids, unknown []string }

// membersOf finds the members of the collaborations but those resolved
// already (hits), on every core: at 1M users a restart's resolution
// looked up 4M members for 3.9 s on one. members only reads the users.
func (p *userPart) membersOf(collabs []*Mapped, hits []*resolvedCollab) []resolvedMembers {
	out := make([]resolvedMembers, len(collabs))
	parallel.For(len(collabs), 256, func(i int) {
		if hits[i] == nil {
			out[i].uids, out[i].unknown = p.members(collabs[i].Collaboration.MemberValues)
		}
	})
	return out
}

// members is Members(values, p.uidOf). A long list of known uids is
// checked by galloping through the users (allKnown), sorted first when
// it is not (slapd appends an added value at the end): at 1M users a
// change to a 200k-member collaboration took a second in Members.
func (p *userPart) members(values []string) (uids, unknown []string) {
	if n := len(values); n*n > len(p.users) {
		if p.allKnown(values) {
			return values[:n:n], nil // as Members returns them
		}
		if sorted := slices.Compact(slices.Sorted(slices.Values(values))); p.allKnown(sorted) {
			return slices.Clip(sorted), nil
		}
	}
	return Members(values, p.uidOf)
}

// allKnown reports whether values are known uids in strictly ascending
// order, as Members returns as they are. The users are searched by
// galloping from the last value found: a list of m among n users costs
// O(m log(n/m)) compares instead of O(m log n) (a changed collaboration
// of 200k members among 1M users took a second).
func (p *userPart) allKnown(values []string) bool {
	from := 0
	for i, v := range values {
		if i > 0 && values[i-1] >= v || strings.Contains(v, "=") {
			return false
		}
		var ok bool
		if from, ok = p.keys.SearchFrom(p.users, v, from); !ok {
			return false
		}
	}
	return true
}

func (p *userPart) uidOf(v string) (string, bool) {
	if strings.Contains(v, "=") {
		uid, ok := p.uidByDN[normalizeDN(v)]
		return uid, ok
	}
	_, ok := p.keys.Search(p.users, v)
	return v, ok
}

// resolveUsers maps user entries to sorted users, resolving validators.
// A user whose key the disabled users hold (the same entry: keys are
// entryUUIDs in a live model, DNs in a full read) is suspended.
func resolveUsers(entries, disabled map[string]*Mapped) *userPart {
	return resolveUsersFrom(maps.All(entries), len(entries), disabled)
}

// resolveUsersInOrder is resolveUsers for a full read's users given in
// the order they were read too (each keyed by its DN): walked in that
// order, the entries are met in the order they were made in memory,
// where the map's order is its hashes' (at 1M users the walk waited on
// memory for a third of the users' resolution). A list that is not the
// map's values once each goes by the map.
func resolveUsersInOrder(entries map[string]*Mapped, read []*Mapped, disabled map[string]*Mapped) *userPart {
	if len(read) != len(entries) {
		return resolveUsers(entries, disabled)
	}
	return resolveUsersFrom(func(yield func(string, *Mapped) bool) {
		for _, m := range read {
			if !yield(m.DN, m) {
				return
			}
		}
	}, len(read), disabled)
}

// resolveUsersFrom is resolveUsers over the n entries entries yields.
func resolveUsersFrom(entries iter.Seq2[string, *Mapped], n int, disabled map[string]*Mapped) *userPart {
	p := &userPart{users: make([]*directory.User, 0, n)}
	type pending struct {
		dn, validator string // DN or uid
	}
	var validated []pending
	for key, e := range entries {
		if e.User == nil {
			p.problems = append(p.problems, directory.Problem{DN: e.DN, Reason: e.Problem})
			continue
		}
		u := e.User
		if e.NormDN != "" {
			if p.uidByDN == nil {
				// Of its size at once: grown user by user, it was rehashed
				// on the way.
				p.uidByDN = make(map[string]string, n)
			}
			p.uidByDN[e.NormDN] = u.UID
		}
		if u.ValidatedBy != "" {
			validated = append(validated, pending{u.DN, u.ValidatedBy})
		}
		// The users point into the entries, which nobody modifies; a
		// user whose resolution changes a field gets a copy.
		user := &u.User
		if _, off := disabled[key]; off && !user.Suspended {
			c := *user
			c.Suspended, user = true, &c
		}
		if m := u.Mail; m != "" && !directory.ValidAddress(m) {
			c := *user
			c.Mail, user = "", &c
			p.problems = append(p.problems, directory.Problem{DN: u.DN, Reference: true,
				Reason: fmt.Sprintf("mail %q is not a plain address (user@domain); the account has no address", m)})
		}
		p.users = append(p.users, user)
	}
	p.keys = directory.SortUsers(p.users)
	// Validators can only be resolved once every user is known.
	byDN := make(map[string]int, len(validated))
	for _, v := range validated {
		byDN[v.dn] = -1
	}
	for i := range p.users {
		if _, ok := byDN[p.users[i].DN]; ok {
			byDN[p.users[i].DN] = i
		}
	}
	for _, v := range validated {
		c := *p.users[byDN[v.dn]]
		uid, ok := p.uidOf(v.validator)
		if !ok {
			uid = ""
			p.problems = append(p.problems, directory.Problem{DN: c.DN, Reference: true,
				Reason: fmt.Sprintf("validator %q is not a known user; the account counts as not validated", v.validator)})
		}
		c.ValidatedBy = uid // "" when unknown
		p.users[byDN[v.dn]] = &c
	}
	return p
}

// collaborations resolves members and contacts (from the collaborations'
// own attributes and from role groups) to uids.
func (r *resolver) collaborations(entries, roleGroups map[string]*Mapped) {
	// In DN order, so that which of two collaborations of one name gets a
	// role group's contacts does not depend on the order of reading.
	ordered := r.cache.inOrder(entries)
	collabs := make([]*Mapped, 0, len(entries))
	for _, e := range ordered {
		if e.Collaboration == nil {
			r.problem(e.DN, "%s", e.Problem)
			continue
		}
		collabs = append(collabs, e)
	}
	r.collabs = collabs
	var byName map[string]int
	if len(roleGroups) > 0 {
		byName = make(map[string]int, len(collabs))
		for i, e := range collabs {
			byName[e.Collaboration.Name] = i
		}
	}
	fromGroups := make([]map[directory.Role][]string, len(collabs))
	for _, e := range roleGroups {
		if e.RoleGroup == nil {
			r.problem(e.DN, "%s", e.Problem)
			continue
		}
		g := e.RoleGroup
		i, ok := byName[g.Collaboration]
		if !ok {
			r.problem(e.DN, "role group for unknown collaboration %q", g.Collaboration)
			continue
		}
		if fromGroups[i] == nil {
			fromGroups[i] = map[directory.Role][]string{}
		}
		fromGroups[i][g.Role] = append(fromGroups[i][g.Role], g.Values...)
	}
	for _, groups := range fromGroups {
		for _, values := range groups {
			slices.Sort(values) // the order of role groups is not significant
		}
	}
	r.snap.Collaborations = make([]*directory.Collaboration, 0, len(collabs))
	cache := r.cache
	hits := make([]*resolvedCollab, len(collabs)) // resolved already
	for i, e := range collabs {
		if rc, ok := cache.m[e]; ok && !rc.nested && sameGroups(rc.groups, fromGroups[i]) {
			hits[i] = rc
		}
	}
	members := r.users.membersOf(collabs, hits)
	for i, e := range collabs {
		if rc := hits[i]; rc != nil {
			r.snap.Collaborations = append(r.snap.Collaborations, rc.c)
			r.snap.Problems = append(r.snap.Problems, rc.problems...)
			rc.run = cache.run
			continue
		}
		first := len(r.snap.Problems)
		c, nested := r.collaboration(e, fromGroups[i], members[i])
		r.snap.Collaborations = append(r.snap.Collaborations, &c)
		cache.m[e] = &resolvedCollab{c: &c, problems: slices.Clone(r.snap.Problems[first:]), groups: fromGroups[i], nested: nested, run: cache.run}
	}
	if len(cache.m) > len(collabs) { // entries changed or gone since the last call
		for e, rc := range cache.m {
			if rc.run != cache.run {
				delete(cache.m, e)
			}
		}
	}
}

// maxNesting is how deep nested groups are followed.
const maxNesting = 16

// collaboration resolves one collaboration's members and contacts. A
// member that is another collaboration's group is expanded or reported,
// as the mapping says; nested reports a member DN that is no user, whose
// meaning depends on the other collaborations (it is resolved anew each
// time).
func (r *resolver) collaboration(e *Mapped, fromGroups map[directory.Role][]string, members resolvedMembers) (c directory.Collaboration, nested bool) {
	raw := e.Collaboration
	c = raw.Collaboration
	var through []string
	for _, why := range raw.badValues {
		r.dangling(c.DN, "%s", why)
	}
	c.Members = members.uids
	for _, v := range members.unknown {
		var g *Mapped
		if strings.Contains(v, "=") {
			g = r.collabByDN(normalizeDN(v))
			// What it resolves to depends on the other groups too.
			nested = true
		}
		switch {
		case g == nil && strings.Contains(v, "="):
			r.dangling(c.DN, "member %q is not a known user or group; left out", v)
		case g == nil:
			r.dangling(c.DN, "member %q is not a known user; left out", v)
		case !raw.expandNested:
			r.dangling(c.DN, "member %q is the group of collaboration %s: nested groups are not expanded "+
				"(ldap.collaborations.nested: report); its members left out", v, g.Collaboration.Name)
		default:
			through = append(through, r.expand(e, g, []*Mapped{e})...)
		}
	}
	if len(through) > 0 {
		all := append(slices.Clone(c.Members), through...)
		slices.Sort(all)
		c.Members = slices.Clip(slices.Compact(all))
	}
	c.Contacts = map[directory.Role][]string{}
	for _, role := range directory.Roles() {
		values := append(append([]string(nil), raw.ContactValues[role]...), fromGroups[role]...)
		if len(values) == 0 {
			continue
		}
		uids, unknown := Members(values, r.uidOf)
		for _, v := range unknown {
			r.dangling(c.DN, "%s contact %q is not a known user; left out", role, v)
		}
		if len(uids) > 0 {
			c.Contacts[role] = uids
		}
	}
	return c, nested
}

// expand returns the uids of group g's members, and of its member groups
// through any depth up to maxNesting; path is the groups that led to it
// from root. A cycle and a nesting too deep are named on root.
func (r *resolver) expand(root, g *Mapped, path []*Mapped) []string {
	names := func(extra *Mapped) string {
		var n []string
		for _, p := range append(slices.Clip(path), extra) {
			n = append(n, p.Collaboration.Name)
		}
		return strings.Join(n, " → ")
	}
	if slices.Contains(path, g) {
		r.dangling(root.DN, "nested groups form a cycle (%s); each group's members counted once", names(g))
		return nil
	}
	if len(path) > maxNesting {
		r.dangling(root.DN, "nested groups deeper than %d levels (%s); the deeper ones left out", maxNesting, names(g))
		return nil
	}
	uids, unknown := Members(g.Collaboration.MemberValues, r.uidOf)
	out := slices.Clone(uids)
	for _, v := range unknown {
		if !strings.Contains(v, "=") {
			continue
		}
		if sub := r.collabByDN(normalizeDN(v)); sub != nil {
			out = append(out, r.expand(root, sub, append(slices.Clip(path), g))...)
		}
	}
	return out
}

// sameGroups reports whether two collaborations' role group values are
// the same.
func sameGroups(a, b map[directory.Role][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for role, v := range a {
		if !slices.Equal(v, b[role]) {
			return false
		}
	}
	return true
}

func (r *resolver) production(entries map[string]*Mapped) {
	for _, e := range entries {
		if e.Production == nil {
			r.problem(e.DN, "%s", e.Problem)
			continue
		}
		p := *e.Production
		if bad := slices.ContainsFunc(p.Managers, func(m string) bool { return !directory.ValidAddress(m) }); bad {
			valid := make([]string, 0, len(p.Managers))
			for _, m := range p.Managers {
				if directory.ValidAddress(m) {
					valid = append(valid, m)
				} else {
					r.dangling(e.DN, "manager %q is not a plain address (user@domain); not used", m)
				}
			}
			p.Managers = valid
		}
		if p.Owner != "" {
			if strings.Contains(p.Owner, "=") {
				name, ok := "", false
				if c := r.collabByDN(normalizeDN(p.Owner)); c != nil {
					name, ok = c.Collaboration.Name, true
				}
				if !ok {
					r.problem(e.DN, "owner %q is not a known collaboration", p.Owner)
					continue
				}
				p.Collaboration = name
			} else {
				p.Collaboration = p.Owner
			}
		}
		r.snap.ProductionAccounts = append(r.snap.ProductionAccounts, p.ProductionAccount)
	}
}
