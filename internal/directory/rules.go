package directory

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Policy is the centre's configuration of the account rules.
type Policy struct {
	Now           time.Time
	ReviewGrace   time.Duration
	ReviewWarning time.Duration
	// ReviewTracked says the site maps a reviewed-until date: then a
	// collaboration without one is overdue.
	ReviewTracked bool

	MemberDomains      []string
	MemberAffiliations []string
	AcceptedDomains    []string

	ProductionSeparator string
	ProductionLabel     *regexp.Regexp

	// Actions override DefaultAction per violation kind.
	Actions map[ViolationKind]Action

	// UIDRange and GIDRange are the numbers collabsync may provision (nil:
	// any); Reserved holds the machine's own names and numbers. A subject
	// outside the ranges or with a reserved name or number is a "reserved"
	// violation and always left out.
	UIDRange, GIDRange *IDRange
	Reserved           *Reserved
}

// IDRange is an inclusive range of uid or gid numbers.
type IDRange struct{ Min, Max uint32 }

func (r *IDRange) contains(id uint32) bool { return r == nil || (id >= r.Min && id <= r.Max) }

// Reserved are names and numbers that belong to the machine itself (its
// /etc/passwd and /etc/group) or that the configuration reserves; each
// value says whose or why, for the violation's reason.
type Reserved struct {
	Names map[string]string
	UIDs  map[uint32]string
	GIDs  map[uint32]string
}

func (p *Policy) action(kind ViolationKind) Action {
	if a, ok := p.Actions[kind]; ok {
		return a
	}
	a, _ := DefaultAction(kind)
	return a
}

// verdict gathers what rules said about one subject.
type verdict struct {
	exclude, hold bool
}

// evaluation is the work area of one Evaluate call.
type evaluation struct {
	p    *Policy
	prev Previous
	st   *State
	// verdicts by entry (its DN, as the snapshot spells it in every rule):
	// two entries with one name get one verdict each
	verdicts map[string]*verdict
	// memberIdx holds each collaboration's members as user indexes,
	// resolved once (map lookups dominate the cost of the rules).
	memberIdx [][]int32
}

func (e *evaluation) violate(kind ViolationKind, name, dn, reason string) {
	e.violateWith(kind, e.p.action(kind), name, dn, reason)
}

func (e *evaluation) violateWith(kind ViolationKind, action Action, name, dn, reason string) {
	if action == ActionOff {
		return
	}
	e.st.Violations = append(e.st.Violations, Violation{Kind: kind, Severity: SeverityError, Subject: dn, Name: name, Reason: reason, Action: action})
	key := dn
	v := e.verdicts[key]
	if v == nil {
		v = &verdict{}
		e.verdicts[key] = v
	}
	switch action {
	case ActionExclude:
		v.exclude = true
	case ActionHold:
		v.hold = true
	}
}

// excluded reports whether a rule leaves the entry out.
func (e *evaluation) excluded(dn string) bool {
	v := e.verdicts[dn]
	return v != nil && v.exclude
}

// decide applies the verdicts to what the other rules allow: excluded
// subjects are never active; held ones are active only if they were last
// time too (a hold keeps access, it never grants it).
func (e *evaluation) decide(subjectKind, name, dn string, allowed bool) (active, held bool) {
	v := e.verdicts[dn]
	switch {
	case v == nil:
		return allowed, false
	case v.exclude:
		return false, false
	case v.hold:
		return allowed && e.prev[SubjectKey(subjectKind, name)].Status == StatusActive, true
	}
	return allowed, false
}

// Evaluate applies the account rules to a snapshot. It is pure: the same
// snapshot, policy and history always give the same state.
func Evaluate(snap *Snapshot, p Policy, prev Previous) *State {
	e := &evaluation{p: &p, prev: prev, st: &State{basis: prev}, verdicts: map[string]*verdict{}}
	for _, pr := range snap.Problems {
		v := Violation{Kind: KindMalformedEntry, Severity: SeverityError, Subject: pr.DN, Reason: pr.Reason, Action: ActionExclude}
		if pr.Reference {
			v.Kind, v.Severity, v.Action = KindUnknownReference, SeverityWarning, ActionSkipped
		}
		e.st.Violations = append(e.st.Violations, v)
	}
	e.reserved(snap)
	e.checkUnique(snap)
	e.collaborations(snap)
	e.users(snap)
	e.production(snap)
	e.activeMembers()
	e.primaryGroups()
	sort.SliceStable(e.st.Violations, func(i, j int) bool {
		a, b := e.st.Violations[i], e.st.Violations[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Subject < b.Subject
	})
	return e.st
}

// primaryGroups provisions active users' private groups that clash with
// no collaboration, and warns of an active user whose primary gid names
// no provisioned group.
func (e *evaluation) primaryGroups() {
	gids := make(map[uint32]string, len(e.st.Collaborations))
	names := make(map[string]bool, len(e.st.Collaborations))
	for _, c := range e.st.Collaborations {
		names[c.Name] = true
		if c.Provisioned {
			gids[c.GIDNumber] = c.Name
		} else if _, ok := gids[c.GIDNumber]; !ok {
			gids[c.GIDNumber] = ""
		}
	}
	warn := func(u *UserState, reason string) {
		e.st.Violations = append(e.st.Violations, Violation{Kind: KindPrimaryGroup, Severity: SeverityWarning, Subject: u.DN, Name: u.UID,
			Reason: reason, Action: ActionWarn})
	}
	privateOf := map[string]string{} // private group → its user
	for i := range e.st.Users {
		u := &e.st.Users[i]
		if u.Status != StatusActive {
			continue
		}
		owner, taken := gids[u.GIDNumber]
		first, twice := privateOf[u.PrivateGroup]
		switch {
		case u.PrivateGroup != "" && twice:
			warn(u, fmt.Sprintf("private group %s is %s's already; not provisioned for this user", u.PrivateGroup, first))
		case u.PrivateGroup != "" && (taken || names[u.PrivateGroup]):
			with := owner
			if !taken || owner == "" {
				with = u.PrivateGroup
			}
			warn(u, fmt.Sprintf("private group %s (gid %d) clashes with collaboration %s; the private group is not provisioned", u.PrivateGroup, u.GIDNumber, with))
		case u.PrivateGroup != "":
			u.OwnGroup = true
			privateOf[u.PrivateGroup] = u.UID
		case owner == "":
			warn(u, fmt.Sprintf("primary gidNumber %d names no provisioned group: getent shows the number without a name", u.GIDNumber))
		}
	}
}

// reserved leaves out every subject whose name or number belongs to the
// machine's own accounts, or whose number is outside the configured
// ranges: an LDAP "root", a uidNumber 0, a group with sudo's gid.
func (e *evaluation) reserved(snap *Snapshot) {
	r := e.p.Reserved
	if r == nil {
		r = &Reserved{}
	}
	folded := make(map[string]string, len(r.Names))
	for n, owner := range r.Names {
		folded[fold(n)] = owner
	}
	check := func(name, dn string, uid *uint32, gid uint32) {
		var why []string
		if owner, ok := r.Names[name]; ok {
			why = append(why, fmt.Sprintf("name %q is reserved (%s)", name, owner))
		} else if owner, ok := folded[fold(name)]; ok {
			why = append(why, fmt.Sprintf("name %q is reserved (%s), whatever its case", name, owner))
		}
		if uid != nil {
			if owner, ok := r.UIDs[*uid]; ok {
				why = append(why, fmt.Sprintf("uidNumber %d is reserved (%s)", *uid, owner))
			} else if !e.p.UIDRange.contains(*uid) {
				why = append(why, fmt.Sprintf("uidNumber %d is outside rules.uid_range %d-%d", *uid, e.p.UIDRange.Min, e.p.UIDRange.Max))
			}
		}
		what := "gidNumber"
		if uid != nil {
			what = "primary gidNumber"
		}
		if owner, ok := r.GIDs[gid]; ok {
			why = append(why, fmt.Sprintf("%s %d is reserved (%s)", what, gid, owner))
		} else if !e.p.GIDRange.contains(gid) {
			why = append(why, fmt.Sprintf("%s %d is outside rules.gid_range %d-%d", what, gid, e.p.GIDRange.Min, e.p.GIDRange.Max))
		}
		if len(why) > 0 {
			e.violateWith(KindReserved, ActionExclude, name, dn, strings.Join(why, "; "))
		}
	}
	for _, u := range snap.Users {
		check(u.UID, u.DN, &u.UIDNumber, u.GIDNumber)
	}
	for _, c := range snap.Collaborations {
		check(c.Name, c.DN, nil, c.GIDNumber)
	}
	for _, p := range snap.ProductionAccounts {
		check(p.Name, p.DN, &p.UIDNumber, p.GIDNumber)
	}
}

// checkUnique is rule 7: names are unique across users, collaborations and
// production accounts; uid numbers across users and production accounts;
// gid numbers across collaborations. Clashes are rare, so the first pass
// only remembers the first holder of each key and collects the rest.
//
// Whoever the last run provisioned with the name or number (the same DN,
// the same number) keeps it, as a hold; the newcomers get the rule's
// action. Without exactly one such incumbent, all get it.
func (e *evaluation) checkUnique(snap *Snapshot) {
	type subject struct {
		kind, name, dn string
		id             int64 // the clashing number; -1 for names
	}
	// The maps hold references to the entries, made subjects only when
	// they clash (whole subjects made the maps 22 MB per run at 100k).
	type ref struct {
		kind uint8 // refUser, refProduction, refCollaboration
		i    int32
	}
	const (
		refUser = iota
		refProduction
		refCollaboration
	)
	subjects := func(refs []ref, number bool) []subject {
		out := make([]subject, len(refs))
		for k, r := range refs {
			var id int64
			switch r.kind {
			case refUser:
				u := snap.Users[r.i]
				out[k], id = subject{SubjectUser, u.UID, u.DN, -1}, int64(u.UIDNumber)
			case refProduction:
				p := &snap.ProductionAccounts[r.i]
				out[k], id = subject{SubjectProduction, p.Name, p.DN, -1}, int64(p.UIDNumber)
			default:
				c := &snap.Collaborations[r.i]
				out[k], id = subject{SubjectCollaboration, c.Name, c.DN, -1}, int64(c.GIDNumber)
			}
			if number {
				out[k].id = id
			}
		}
		return out
	}
	n := len(snap.Users) + len(snap.ProductionAccounts) + len(snap.Collaborations)
	names := newClashes[string, ref](n)
	uids := newClashes[uint32, ref](len(snap.Users) + len(snap.ProductionAccounts))
	gids := newClashes[uint32, ref](len(snap.Collaborations))
	for i, u := range snap.Users {
		names.add(fold(u.UID), ref{refUser, int32(i)})
		uids.add(u.UIDNumber, ref{refUser, int32(i)})
	}
	collabNames := make(map[string]bool, len(snap.Collaborations))
	for _, c := range snap.Collaborations {
		collabNames[c.Name] = true
	}
	for i, pa := range snap.ProductionAccounts {
		// The syntax <collaboration>[_<label>] lets a collaboration's own
		// production account bear its name: that is no clash.
		own := collabNames[pa.Name] && (pa.Collaboration == "" || pa.Collaboration == pa.Name)
		if !own {
			names.add(fold(pa.Name), ref{refProduction, int32(i)})
		}
		uids.add(pa.UIDNumber, ref{refProduction, int32(i)})
	}
	for i, c := range snap.Collaborations {
		names.add(fold(c.Name), ref{refCollaboration, int32(i)})
		gids.add(c.GIDNumber, ref{refCollaboration, int32(i)})
	}
	incumbent := func(s subject) bool {
		p, ok := e.prev[SubjectKey(s.kind, s.name)]
		return ok && p.Status == StatusActive && (p.DN == "" || strings.EqualFold(p.DN, s.dn)) &&
			(s.id < 0 || p.ID < 0 || p.ID == s.id)
	}
	report := func(kind ViolationKind, what string, group []subject) {
		action := e.p.action(kind)
		holder := -1
		if action == ActionExclude || action == ActionHold {
			for i, s := range group {
				if incumbent(s) {
					if holder >= 0 {
						holder = -1 // two claim it: nobody keeps it
						break
					}
					holder = i
				}
			}
		}
		for i, s := range group {
			var others []string
			for _, o := range group {
				if o.dn != s.dn {
					others = append(others, o.dn)
				}
			}
			sort.Strings(others)
			switch {
			case holder < 0:
				e.violate(kind, s.name, s.dn, fmt.Sprintf("%s is also used by %s", what, strings.Join(others, "; ")))
			case i == holder:
				e.violateWith(kind, ActionHold, s.name, s.dn,
					fmt.Sprintf("%s is also claimed by %s; this entry keeps it, as the one already provisioned", what, strings.Join(others, "; ")))
			default:
				e.violate(kind, s.name, s.dn, fmt.Sprintf("%s is already provisioned for %s; this newcomer is left out", what, group[holder].dn))
			}
		}
	}
	for name, group := range names.clashes {
		subs := subjects(group, false)
		what := fmt.Sprintf("name %q", name)
		for _, s := range subs {
			if s.name != name {
				// Slurm, Mailman and mail aliases take Alice for alice.
				what = fmt.Sprintf("name %q (names that differ only in case are one name downstream)", name)
			}
		}
		report(KindDuplicateName, what, subs)
	}
	for n, group := range uids.clashes {
		report(KindDuplicateID, fmt.Sprintf("uidNumber %d", n), subjects(group, true))
	}
	for n, group := range gids.clashes {
		report(KindDuplicateID, fmt.Sprintf("gidNumber %d", n), subjects(group, true))
	}
}

// fold is a name as the targets that ignore case see it (Slurm accounts
// and users, Mailman lists, mail aliases): names are unique, and reserved,
// whatever their case.
func fold(name string) string { return strings.ToLower(name) }

// clashes finds keys held by more than one value.
type clashes[K comparable, V any] struct {
	first   map[K]V
	clashes map[K][]V
}

func newClashes[K comparable, V any](n int) *clashes[K, V] {
	return &clashes[K, V]{first: make(map[K]V, n), clashes: map[K][]V{}}
}

func (c *clashes[K, V]) add(k K, v V) {
	first, seen := c.first[k]
	switch {
	case !seen:
		c.first[k] = v
	case len(c.clashes[k]) == 0:
		c.clashes[k] = []V{first, v}
	default:
		c.clashes[k] = append(c.clashes[k], v)
	}
}

// collaborations applies rules 3 (yearly review) and 5 (contacts).
func (e *evaluation) collaborations(snap *Snapshot) {
	e.st.collab = make(map[string]int, len(snap.Collaborations))
	e.st.Collaborations = make([]CollaborationState, 0, len(snap.Collaborations))
	for _, c := range snap.Collaborations {
		cs := CollaborationState{Collaboration: c, Status: c.Status}
		if cs.Status == "" {
			cs.Status = StatusActive
		}
		cs.Contacts = EffectiveContacts(c.Contacts)
		if cs.Status == StatusActive {
			cs.Status = e.review(c)
		}
		if len(cs.Contacts[RoleCollaboration]) == 0 {
			e.violate(KindNoCollabContact, c.Name, c.DN, "has no collaboration contact")
		}
		e.st.collab[c.Name] = len(e.st.Collaborations)
		e.st.Collaborations = append(e.st.Collaborations, cs)
	}
	for i := range e.st.Collaborations {
		c := &e.st.Collaborations[i]
		c.Provisioned, _ = e.decide(SubjectCollaboration, c.Name, c.DN, c.Status == StatusActive)
	}
}

// EffectiveContacts is rule 5's second half: collaboration, computing and
// storage contacts also hold the reporting role. The input is not changed.
func EffectiveContacts(contacts map[Role][]string) map[Role][]string {
	out := make(map[Role][]string, len(contacts)+1)
	for role, uids := range contacts {
		out[role] = uids
	}
	var reporting []string
	for _, role := range []Role{RoleReporting, RoleCollaboration, RoleComputing, RoleStorage} {
		reporting = append(reporting, contacts[role]...)
	}
	sort.Strings(reporting)
	if reporting = slices.Compact(reporting); len(reporting) > 0 {
		out[RoleReporting] = reporting
	}
	return out
}

// review is rule 3: an active collaboration stays active while its review
// is current, plus the grace period; warnings come before it falls due.
func (e *evaluation) review(c Collaboration) Status {
	if c.ReviewedUntil.IsZero() {
		if !e.p.ReviewTracked {
			return StatusActive
		}
		e.st.Violations = append(e.st.Violations, Violation{Kind: KindReviewOverdue, Severity: SeverityError,
			Subject: c.DN, Name: c.Name, Reason: "has no reviewed-until date; treated as overdue", Action: ActionExpired})
		return StatusExpired
	}
	due := c.ReviewedUntil
	day := due.Format(time.DateOnly)
	switch now := e.p.Now; {
	case now.After(due.Add(e.p.ReviewGrace)):
		e.st.Violations = append(e.st.Violations, Violation{Kind: KindReviewOverdue, Severity: SeverityError,
			Subject: c.DN, Name: c.Name, Reason: fmt.Sprintf("review was due on %s (grace period ended %s)", day, due.Add(e.p.ReviewGrace).Format(time.DateOnly)),
			Action: ActionExpired})
		return StatusExpired
	case now.After(due):
		e.st.Violations = append(e.st.Violations, Violation{Kind: KindReviewDueSoon, Severity: SeverityWarning,
			Subject: c.DN, Name: c.Name, Reason: fmt.Sprintf("review was due on %s; expires after the grace period, on %s", day, due.Add(e.p.ReviewGrace).Format(time.DateOnly)),
			Action: ActionWarn})
	case now.After(due.Add(-e.p.ReviewWarning)):
		e.st.Violations = append(e.st.Violations, Violation{Kind: KindReviewDueSoon, Severity: SeverityWarning,
			Subject: c.DN, Name: c.Name, Reason: fmt.Sprintf("review falls due on %s", day), Action: ActionWarn})
	}
	return StatusActive
}

// users applies rules 1 (one administrative collaboration), 2 (active only
// in an active collaboration) and 4 (institutional e-mail, validation of
// external users).
func (e *evaluation) users(snap *Snapshot) {
	// Of two entries with one uid, members and contacts naming it mean
	// the one not left out (the incumbent of rule 7).
	e.st.users = newUIDIndex(len(snap.Users), func(i int) string { return snap.Users[i].UID },
		func(i int) bool { return !e.excluded(snap.Users[i].DN) })
	memberOf := e.memberships(len(snap.Users))
	e.st.Users = make([]UserState, 0, len(snap.Users))
	for i := range snap.Users {
		u := snap.Users[i]
		us := UserState{User: u}
		collabs := memberOf(i)
		var admin []string
		inActive, validated := false, false
		for _, ci := range collabs {
			c := &e.st.Collaborations[ci]
			if c.Kind == KindAdministrative && c.Status != StatusClosed {
				admin = append(admin, c.Name)
			}
			if c.Provisioned {
				inActive = true
			}
			if u.ValidatedBy != "" && slices.Contains(c.Contacts[RoleValidator], u.ValidatedBy) {
				validated = true
			}
		}
		if len(admin) > 1 {
			e.violate(KindMultipleAdmin, u.UID, u.DN,
				fmt.Sprintf("is a member of %d administrative collaborations (%s); at most one is allowed", len(admin), strings.Join(admin, ", ")))
		}
		domain := mailDomain(u.Mail)
		us.Internal = e.internal(domain, u.Affiliation)
		if len(e.p.AcceptedDomains) > 0 && !us.Internal && !inDomains(domain, e.p.AcceptedDomains) && !inDomains(domain, e.p.MemberDomains) {
			reason := fmt.Sprintf("e-mail domain %q is not an institutional domain", domain)
			if u.Mail == "" {
				reason = "has no e-mail address; only institutional addresses are accepted"
			}
			e.violate(KindMailDomain, u.UID, u.DN, reason)
		}
		if !us.Internal && !validated {
			reason := "is external and not validated by a validator contact of one of their collaborations"
			if u.ValidatedBy != "" {
				reason = fmt.Sprintf("is external; validated by %s, who is not a validator contact of any of their collaborations", u.ValidatedBy)
			}
			e.violate(KindUnvalidatedExternal, u.UID, u.DN, reason)
		}
		active, held := e.decide(SubjectUser, u.UID, u.DN, inActive)
		us.Held = held
		expired := u.Expires != 0 && u.Expires <= e.p.Now.Unix()
		if u.Expires != 0 && !expired && (e.st.NextExpiry.IsZero() || u.Expires < e.st.NextExpiry.Unix()) {
			e.st.NextExpiry = time.Unix(u.Expires, 0)
		}
		switch {
		case u.Suspended || expired:
			us.Status = StatusSuspended
		case active:
			us.Status = StatusActive
		default:
			us.Status = StatusPending
		}
		e.st.Users = append(e.st.Users, us)
	}
}

// memberships inverts the collaborations' member lists into, for each user
// index, the indexes of its collaborations: one flat slice, no per-user
// allocation.
func (e *evaluation) memberships(users int) func(user int) []int32 {
	count := make([]int32, users+1)
	e.memberIdx = make([][]int32, len(e.st.Collaborations))
	for ci, c := range e.st.Collaborations {
		idx := make([]int32, 0, len(c.Members))
		// Members in uid order (as the model keeps them) are found by
		// galloping from the last one when they are more than √users:
		// cheaper than a search of every user each, not for a handful.
		gallop := len(c.Members)*len(c.Members) > users
		from, prev := 0, ""
		for _, uid := range c.Members {
			var (
				i  int
				ok bool
			)
			if gallop {
				if uid < prev {
					from = 0 // out of order: from the start
				}
				prev = uid
				i, ok, from = e.st.users.findFrom(uid, from)
			} else {
				i, ok = e.st.users.find(uid)
			}
			if ok {
				idx = append(idx, int32(i))
				count[i+1]++
			}
		}
		e.memberIdx[ci] = idx
	}
	for i := 1; i <= users; i++ {
		count[i] += count[i-1] // count[i] is now where user i's collaborations start
	}
	flat := make([]int32, count[users])
	next := slices.Clone(count[:users])
	for ci, idx := range e.memberIdx {
		for _, i := range idx {
			flat[next[i]] = int32(ci)
			next[i]++
		}
	}
	return func(user int) []int32 { return flat[count[user]:count[user+1]] }
}

func (e *evaluation) internal(domain, affiliation string) bool {
	if inDomains(domain, e.p.MemberDomains) {
		return true
	}
	for _, a := range e.p.MemberAffiliations {
		if affiliation != "" && strings.EqualFold(a, affiliation) {
			return true
		}
	}
	// A site that lists no member institutions treats everyone as internal.
	return len(e.p.MemberDomains) == 0 && len(e.p.MemberAffiliations) == 0
}

func mailDomain(mail string) string {
	_, domain, ok := strings.Cut(mail, "@")
	if !ok {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(domain))
}

// inDomains reports whether domain is one of domains or a subdomain of one.
func inDomains(domain string, domains []string) bool {
	if domain == "" {
		return false
	}
	for _, d := range domains {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// production applies rule 6: the naming syntax, and the account's life
// tied to its collaboration's.
func (e *evaluation) production(snap *Snapshot) {
	for _, pa := range snap.ProductionAccounts {
		ps := ProductionState{ProductionAccount: pa}
		owner := pa.Collaboration
		if owner == "" {
			owner = e.ownerByName(pa.Name)
			ps.Collaboration = owner
		}
		c, known := e.st.Collaboration(owner)
		switch {
		case !known && owner == "":
			e.violate(KindProductionOwner, pa.Name, pa.DN, "no collaboration owns it")
		case !known:
			e.violate(KindProductionOwner, pa.Name, pa.DN, fmt.Sprintf("its collaboration %q does not exist", owner))
		default:
			if reason := e.nameSyntax(pa.Name, owner); reason != "" {
				e.violate(KindProductionName, pa.Name, pa.DN, reason)
			}
		}
		ps.Active, _ = e.decide(SubjectProduction, pa.Name, pa.DN, known && c.Provisioned)
		e.st.ProductionAccounts = append(e.st.ProductionAccounts, ps)
	}
}

// ownerByName finds the collaboration whose name the account's name
// starts with (the longest, so "cta_north" prefers "cta_n" over "cta").
func (e *evaluation) ownerByName(name string) string {
	best := ""
	for _, c := range e.st.Collaborations {
		if (name == c.Name || strings.HasPrefix(name, c.Name+e.p.ProductionSeparator)) && len(c.Name) > len(best) {
			best = c.Name
		}
	}
	return best
}

func (e *evaluation) nameSyntax(name, owner string) string {
	want := fmt.Sprintf("%s or %s%s<label>", owner, owner, e.p.ProductionSeparator)
	if name == owner {
		return ""
	}
	label, ok := strings.CutPrefix(name, owner+e.p.ProductionSeparator)
	if !ok {
		return fmt.Sprintf("name %q does not follow the syntax %s", name, want)
	}
	if e.p.ProductionLabel != nil && !e.p.ProductionLabel.MatchString(label) {
		return fmt.Sprintf("label %q of %q does not match %s", label, name, e.p.ProductionLabel)
	}
	return ""
}

// activeMembers fills each collaboration's members whose account is active.
// When every member is a user and active (the usual case), they are the
// members as they are, shared (capped, so that an append copies).
func (e *evaluation) activeMembers() {
	for ci := range e.st.Collaborations {
		c := &e.st.Collaborations[ci]
		idx := e.memberIdx[ci]
		active := 0
		for _, i := range idx {
			if e.st.Users[i].Status == StatusActive {
				active++
			}
		}
		if active > 0 && active == len(c.Members) && len(idx) == active {
			c.ActiveMembers = c.Members[:active:active]
			continue
		}
		if active > 0 {
			c.ActiveMembers = make([]string, 0, active)
		}
		for _, i := range idx {
			if u := &e.st.Users[i]; u.Status == StatusActive {
				c.ActiveMembers = append(c.ActiveMembers, u.UID)
			}
		}
	}
}
