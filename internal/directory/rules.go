package directory

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/collabsync/collabsync/internal/parallel"
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

// evaluation is the work area of the rules, kept by an Evaluator from one
// run to the next.
type evaluation struct {
	p    *Policy
	prev History
	st   *State
	// Verdicts by entry (its DN, as the snapshot spells it in every rule):
	// two entries with one name get one verdict each. fixed holds those of
	// the rules on names and numbers (reserved accounts, rule 7), rules
	// those of the rules on each subject's own attributes and relations.
	fixed, rules map[string]*verdict
	// memberIdx holds each collaboration's members as user indexes,
	// resolved once during a whole evaluation (map lookups dominated the
	// cost of the rules); memberOf is its inverse, kept between runs.
	memberIdx [][]int32
	memberOf  memberOf
	// clashes are rule 7's groups of subjects sharing a name or number.
	clashes []clashGroup
	// held are the subjects a hold verdict keeps: their state depends on
	// the history, so each run decides them again.
	held held
}

// held lists the subjects a hold verdict applies to, by index.
type held struct{ users, collabs, production []int }

func (e *evaluation) violate(kind ViolationKind, name, dn, reason string) {
	e.violateWith(kind, e.p.action(kind), name, dn, reason)
}

// violateWith records a violation of a rule on a subject's own attributes
// and relations.
func (e *evaluation) violateWith(kind ViolationKind, action Action, name, dn, reason string) {
	e.note(e.rules, kind, action, name, dn, reason)
}

// note records a violation and its verdict in verdicts. Only exclude and
// hold are verdicts: the other actions leave the subject as the other
// rules decide (a map entry for each was 100k entries at 1M users whose
// collaborations had no contact, looked up for every user).
func (e *evaluation) note(verdicts map[string]*verdict, kind ViolationKind, action Action, name, dn, reason string) {
	if action == ActionOff {
		return
	}
	e.st.Violations = append(e.st.Violations, Violation{Kind: kind, Severity: SeverityError, Subject: dn, Name: name, Reason: reason, Action: action})
	if action != ActionExclude && action != ActionHold {
		return
	}
	v := verdicts[dn]
	if v == nil {
		v = &verdict{}
		verdicts[dn] = v
	}
	v.exclude = v.exclude || action == ActionExclude
	v.hold = v.hold || action == ActionHold
}

// verdict is what every rule said about the entry; any says some rule
// excludes or holds it.
func (e *evaluation) verdict(dn string) (v verdict, any bool) {
	for _, m := range [2]map[string]*verdict{e.fixed, e.rules} {
		if len(m) == 0 {
			continue
		}
		if r := m[dn]; r != nil {
			v.exclude, v.hold, any = v.exclude || r.exclude, v.hold || r.hold, true
		}
	}
	return v, any
}

// excluded reports whether a rule leaves the entry out.
func (e *evaluation) excluded(dn string) bool {
	v, _ := e.verdict(dn)
	return v.exclude
}

// decide applies the verdicts to what the other rules allow: excluded
// subjects are never active; held ones are active only if they were last
// time too (a hold keeps access, it never grants it).
func (e *evaluation) decide(subjectKind, name, dn string, allowed bool) (active, held bool) {
	v, any := e.verdict(dn)
	switch {
	case !any:
		return allowed, false
	case v.exclude:
		return false, false
	case v.hold:
		last, _ := e.prev.Provisioned(SubjectKey(subjectKind, name))
		return allowed && last.Status == StatusActive, true
	}
	return allowed, false
}

// Evaluate applies the account rules to a snapshot. It is pure: the same
// snapshot, policy and history always give the same state.
func Evaluate(snap *Snapshot, p Policy, prev History) *State {
	return newEvaluation(snap, p, prev).st
}

// newEvaluation evaluates every rule over the whole snapshot.
func newEvaluation(snap *Snapshot, p Policy, prev History) *evaluation {
	if prev == nil {
		prev = Previous(nil)
	}
	e := &evaluation{p: &p, prev: prev, st: &State{basis: prev}, fixed: map[string]*verdict{}, rules: map[string]*verdict{}}
	e.st.Violations = problemViolations(snap.Problems, nil)
	ahead := lookAhead(snap)
	e.reserved(snap)
	e.checkUnique(snap)
	e.collaborations(snap)
	e.users(snap, ahead)
	e.production(snap)
	for ci := range e.st.Collaborations {
		e.activeMembers(ci, e.memberIdx[ci])
	}
	e.memberIdx = nil // 4 bytes a membership: a run finds the few it needs again
	pg := e.newPrimaryGroups()
	for i := range e.st.Users {
		pg.decide(e, &e.st.Users[i])
	}
	sortViolations(e.st.Violations)
	return e
}

// problemViolations appends the directory's problems to out as violations.
func problemViolations(problems []Problem, out []Violation) []Violation {
	for _, pr := range problems {
		v := Violation{Kind: KindMalformedEntry, Severity: SeverityError, Subject: pr.DN, Reason: pr.Reason, Action: ActionExclude}
		if pr.Reference {
			v.Kind, v.Severity, v.Action = KindUnknownReference, SeverityWarning, ActionSkipped
		}
		out = append(out, v)
	}
	return out
}

// sortViolations orders violations by kind, then subject; one subject's
// violations of one kind stay in the order the rules found them.
func sortViolations(vs []Violation) {
	sort.SliceStable(vs, func(i, j int) bool { return violationLess(&vs[i], &vs[j]) })
}

func violationLess(a, b *Violation) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	return a.Subject < b.Subject
}

// primaryGroups decides active users' private groups: provisioned when
// they clash with no collaboration (nor an earlier user's), and a warning
// for an active user whose primary gid names no provisioned group.
type primaryGroups struct {
	gids  map[uint32]string // gid → provisioned collaboration ("": none provisioned)
	names map[string]bool   // collaboration names
	// privateOf is each private group's user, in the order users are
	// decided.
	privateOf map[string]string
}

func (e *evaluation) newPrimaryGroups() *primaryGroups {
	pg := &primaryGroups{gids: make(map[uint32]string, len(e.st.Collaborations)),
		names: make(map[string]bool, len(e.st.Collaborations)), privateOf: map[string]string{}}
	for _, c := range e.st.Collaborations {
		pg.names[c.Name] = true
		if c.Provisioned {
			pg.gids[c.GIDNumber] = c.Name
		} else if _, ok := pg.gids[c.GIDNumber]; !ok {
			pg.gids[c.GIDNumber] = ""
		}
	}
	return pg
}

// decide sets u's OwnGroup and records its warning. Users are decided in
// their order: of two with one private group, the first gets it.
func (pg *primaryGroups) decide(e *evaluation, u *UserState) {
	u.OwnGroup = false
	if u.Status != StatusActive {
		return
	}
	warn := func(reason string) {
		e.st.Violations = append(e.st.Violations, Violation{Kind: KindPrimaryGroup, Severity: SeverityWarning, Subject: u.DN, Name: u.UID,
			Reason: reason, Action: ActionWarn})
	}
	owner, taken := pg.gids[u.GIDNumber]
	first, twice := pg.privateOf[u.PrivateGroup]
	switch {
	case u.PrivateGroup != "" && twice:
		warn(fmt.Sprintf("private group %s is %s's already; not provisioned for this user", u.PrivateGroup, first))
	case u.PrivateGroup != "" && (taken || pg.names[u.PrivateGroup]):
		with := owner
		if !taken || owner == "" {
			with = u.PrivateGroup
		}
		warn(fmt.Sprintf("private group %s (gid %d) clashes with collaboration %s; the private group is not provisioned", u.PrivateGroup, u.GIDNumber, with))
	case u.PrivateGroup != "":
		u.OwnGroup = true
		pg.privateOf[u.PrivateGroup] = u.UID
	case owner == "":
		warn(fmt.Sprintf("primary gidNumber %d names no provisioned group: getent shows the number without a name", u.GIDNumber))
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
			e.note(e.fixed, KindReserved, ActionExclude, name, dn, strings.Join(why, "; "))
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
func (e *evaluation) checkUnique(snap *Snapshot) {
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
	subjects := func(refs []ref, number bool) []clashSubject {
		out := make([]clashSubject, len(refs))
		for k, r := range refs {
			var id int64
			switch r.kind {
			case refUser:
				u := snap.Users[r.i]
				out[k], id = clashSubject{SubjectUser, u.UID, u.DN, -1}, int64(u.UIDNumber)
			case refProduction:
				p := &snap.ProductionAccounts[r.i]
				out[k], id = clashSubject{SubjectProduction, p.Name, p.DN, -1}, int64(p.UIDNumber)
			default:
				c := snap.Collaborations[r.i]
				out[k], id = clashSubject{SubjectCollaboration, c.Name, c.DN, -1}, int64(c.GIDNumber)
			}
			if number {
				out[k].id = id
			}
		}
		return out
	}
	// Users sorted with their uid keys (every snapshot collabsync reads)
	// are found by name with the keys: only those whose name folds to
	// another go in the names' map (at 1M users a map of every name was a
	// third of the rules' time).
	keyed := snap.UIDKeys.Len() == len(snap.Users) && len(snap.Users) > 0
	n := len(snap.ProductionAccounts) + len(snap.Collaborations)
	if !keyed {
		n += len(snap.Users)
	}
	names := newClashes[string, ref](n)
	for i, u := range snap.Users {
		if name := fold(u.UID); !keyed || name != u.UID {
			names.add(name, ref{refUser, int32(i)})
		}
	}
	uids := numberClashes(func(yield func(uint32, ref)) {
		for i, u := range snap.Users {
			yield(u.UIDNumber, ref{refUser, int32(i)})
		}
		for i, pa := range snap.ProductionAccounts {
			yield(pa.UIDNumber, ref{refProduction, int32(i)})
		}
	})
	gids := numberClashes(func(yield func(uint32, ref)) {
		for i, c := range snap.Collaborations {
			yield(c.GIDNumber, ref{refCollaboration, int32(i)})
		}
	})
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
	}
	for i, c := range snap.Collaborations {
		names.add(fold(c.Name), ref{refCollaboration, int32(i)})
	}
	if keyed {
		// The users left out of the map: under each name the map holds,
		// and where two have one uid (side by side).
		users := snap.Users
		alike := func(name string, i int) []ref {
			var out []ref
			for ; i < len(users) && users[i].UID == name; i++ {
				out = append(out, ref{refUser, int32(i)})
			}
			return out
		}
		for name, first := range names.first {
			i, ok := snap.UIDKeys.Search(users, name)
			if !ok {
				continue
			}
			group := names.clashes[name]
			if group == nil {
				group = []ref{first}
			}
			// In any order: report's verdicts do not depend on it.
			group = append(group, alike(name, i)...)
			names.clashes[name] = group
		}
		keys := snap.UIDKeys.keys
		for i := 0; i+1 < len(keys); i++ {
			// Two of one uid have one key; the keys of most differ.
			if keys[i] != keys[i+1] || users[i].UID != users[i+1].UID {
				continue
			}
			name := users[i].UID
			run := alike(name, i)
			if _, held := names.first[name]; !held && fold(name) == name {
				names.clashes[name] = run
			}
			i += len(run) - 1
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
		e.clashes = append(e.clashes, clashGroup{KindDuplicateName, what, subs})
	}
	for n, group := range uids {
		e.clashes = append(e.clashes, clashGroup{KindDuplicateID, fmt.Sprintf("uidNumber %d", n), subjects(group, true)})
	}
	for n, group := range gids {
		e.clashes = append(e.clashes, clashGroup{KindDuplicateID, fmt.Sprintf("gidNumber %d", n), subjects(group, true)})
	}
	for _, g := range e.clashes {
		e.report(e.fixed, g)
	}
}

// clashGroup is a name or number several subjects claim (rule 7).
type clashGroup struct {
	kind  ViolationKind
	what  string // the name or number, for the reasons
	group []clashSubject
}

type clashSubject struct {
	kind, name, dn string
	id             int64 // the clashing number; -1 for names
}

// report records a clash's violations and verdicts. Whoever the last run
// provisioned with the name or number (the same DN, the same number)
// keeps it, as a hold; the newcomers get the rule's action. Without
// exactly one such incumbent, all get it.
func (e *evaluation) report(verdicts map[string]*verdict, g clashGroup) {
	incumbent := func(s clashSubject) bool {
		p, ok := e.prev.Provisioned(SubjectKey(s.kind, s.name))
		return ok && p.Status == StatusActive && (p.DN == "" || strings.EqualFold(p.DN, s.dn)) &&
			(s.id < 0 || p.ID < 0 || p.ID == s.id)
	}
	action := e.p.action(g.kind)
	holder := -1
	if action == ActionExclude || action == ActionHold {
		for i, s := range g.group {
			if incumbent(s) {
				if holder >= 0 {
					holder = -1 // two claim it: nobody keeps it
					break
				}
				holder = i
			}
		}
	}
	for i, s := range g.group {
		var others []string
		for _, o := range g.group {
			if o.dn != s.dn {
				others = append(others, o.dn)
			}
		}
		sort.Strings(others)
		switch {
		case holder < 0:
			e.note(verdicts, g.kind, action, s.name, s.dn, fmt.Sprintf("%s is also used by %s", g.what, strings.Join(others, "; ")))
		case i == holder:
			e.note(verdicts, g.kind, ActionHold, s.name, s.dn,
				fmt.Sprintf("%s is also claimed by %s; this entry keeps it, as the one already provisioned", g.what, strings.Join(others, "; ")))
		default:
			e.note(verdicts, g.kind, action, s.name, s.dn, fmt.Sprintf("%s is already provisioned for %s; this newcomer is left out", g.what, g.group[holder].dn))
		}
	}
}

// fold is a name as the targets that ignore case see it (Slurm accounts
// and users, Mailman lists, mail aliases): names are unique, and reserved,
// whatever their case.
func fold(name string) string { return strings.ToLower(name) }

// numberClashes groups the values each yields under a number held more
// than once, in the order yielded; nil when every number is held once.
// each is walked two or three times. The numbers are marked in a bit set
// over their span (at 1M users a map of every uid number was a sixth of
// the rules' time); a map holds only the numbers held twice, or every
// number when they are too sparse for the bits.
func numberClashes[V any](each func(yield func(uint32, V))) map[uint32][]V {
	lo, hi, count := uint32(math.MaxUint32), uint32(0), 0
	each(func(n uint32, _ V) { lo, hi, count = min(lo, n), max(hi, n), count+1 })
	var twice map[uint32]bool
	mark := func(n uint32, seen bool) {
		if seen {
			if twice == nil {
				twice = map[uint32]bool{}
			}
			twice[n] = true
		}
	}
	// Bits when they cost at most 64 a number (8 bytes, less than a map
	// entry), or 8 KB in all.
	if span := uint64(hi-lo) + 1; count > 0 && span <= 64*uint64(count)+1<<16 {
		bits := make([]uint64, (span+63)/64)
		each(func(n uint32, _ V) {
			w, b := (n-lo)/64, uint64(1)<<((n-lo)%64)
			mark(n, bits[w]&b != 0)
			bits[w] |= b
		})
	} else {
		seen := make(map[uint32]struct{}, count)
		each(func(n uint32, _ V) {
			_, held := seen[n]
			mark(n, held)
			seen[n] = struct{}{}
		})
	}
	if twice == nil {
		return nil
	}
	out := make(map[uint32][]V, len(twice))
	each(func(n uint32, v V) {
		if twice[n] {
			out[n] = append(out[n], v)
		}
	})
	return out
}

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
	for ci, c := range snap.Collaborations {
		e.st.collab[c.Name] = ci
		e.st.Collaborations = append(e.st.Collaborations, e.collaboration(ci, c))
	}
}

// collaboration is one collaboration's state, without its active members.
func (e *evaluation) collaboration(ci int, c *Collaboration) CollaborationState {
	cs := CollaborationState{Collaboration: c, Status: c.Status}
	if cs.Status == "" {
		cs.Status = StatusActive
	}
	cs.Contacts = EffectiveContacts(c.Contacts)
	if cs.Status == StatusActive {
		cs.Status = e.review(*c)
	}
	if len(cs.Contacts[RoleCollaboration]) == 0 {
		e.violate(KindNoCollabContact, c.Name, c.DN, "has no collaboration contact")
	}
	var held bool
	cs.Provisioned, held = e.decide(SubjectCollaboration, c.Name, c.DN, cs.Status == StatusActive)
	if held {
		e.held.collabs = append(e.held.collabs, ci)
	}
	return cs
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
// external users). The collaborations' members are those ahead found
// (lookAhead), unless a uid is held twice: then the rules' own index
// decides which entry each member means.
func (e *evaluation) users(snap *Snapshot, ahead func() [][]int32) {
	// Of two entries with one uid, members and contacts naming it mean
	// the one not left out (the incumbent of rule 7).
	e.st.users = newUIDIndex(snap.Users, snap.UIDKeys, func(i int) bool { return !e.excluded(snap.Users[i].DN) })
	e.st.users.useKeys(snap.UIDKeys)
	var found [][]int32
	if ahead != nil {
		found = ahead()
	}
	if found != nil && len(e.st.users.dups) == 0 && e.st.users.all == nil {
		// Every uid once: the one ahead found is the one it means.
		e.memberIdx = found
		e.memberOf = invert(e.memberIdx, len(snap.Users))
	} else {
		e.memberships(len(snap.Users))
	}
	e.st.users.keys = UIDKeys{}
	e.st.Users = make([]UserState, 0, len(snap.Users))
	for i, u := range snap.Users {
		e.st.Users = append(e.st.Users, e.user(i, u))
		if u.Expires != 0 && u.Expires > e.p.Now.Unix() && (e.st.NextExpiry.IsZero() || u.Expires < e.st.NextExpiry.Unix()) {
			e.st.NextExpiry = time.Unix(u.Expires, 0)
		}
	}
}

// user is user i's state, without its private group.
func (e *evaluation) user(i int, u *User) UserState {
	us := UserState{User: u}
	var admin []string
	inActive, validated := false, false
	for _, ci := range e.memberOf.of(i) {
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
	if us.Held = held; held {
		e.held.users = append(e.held.users, i)
	}
	switch {
	case u.Suspended || u.Expires != 0 && u.Expires <= e.p.Now.Unix():
		us.Status = StatusSuspended
	case active:
		us.Status = StatusActive
	default:
		us.Status = StatusPending
	}
	return us
}

// memberships resolves every collaboration's members to user indexes and
// inverts them: for each user index, the indexes of its collaborations.
func (e *evaluation) memberships(users int) {
	e.memberIdx = make([][]int32, len(e.st.Collaborations))
	// On every core: at 1M users a whole evaluation (a start, a restart,
	// an entry added) looked up 4M memberships for 2.3 s on one. members
	// only reads the users.
	parallel.For(len(e.st.Collaborations), 256, func(ci int) {
		e.memberIdx[ci] = e.members(e.st.Collaborations[ci].Members)
	})
	e.memberOf = invert(e.memberIdx, users)
}

// lookAhead finds every collaboration's members among the users, beside
// the rules that come before the users' (reserved names and numbers, rule
// 7, the collaborations'): the lookups need nothing but the users, which
// no rule changes. At 1M users they were 0.4 s of CPU on two cores after
// those rules' 0.5 s on one. Of two users with one uid it takes the first:
// the rules' own index may mean the other (users checks). It returns a
// wait for the member indexes, nil for users without their uid keys (the
// rules then make their keys and find the members themselves).
func lookAhead(snap *Snapshot) func() [][]int32 {
	if len(snap.Users) == 0 || snap.UIDKeys.Len() != len(snap.Users) {
		return nil
	}
	done := make(chan [][]int32, 1)
	go func() {
		// The users by their keys alone: a uid held twice is found at
		// its first entry, and users then finds the members again.
		x := uidIndex{users: snap.Users, keys: snap.UIDKeys}
		idx := make([][]int32, len(snap.Collaborations))
		parallel.For(len(snap.Collaborations), 256, func(ci int) {
			idx[ci] = membersIn(&x, snap.Collaborations[ci].Members)
		})
		done <- idx
	}()
	return func() [][]int32 { return <-done }
}

// members finds the users of a member list.
func (e *evaluation) members(uids []string) []int32 { return membersIn(&e.st.users, uids) }

// membersIn finds the users of a member list in x.
func membersIn(x *uidIndex, uids []string) []int32 {
	idx := make([]int32, 0, len(uids))
	// Members in uid order (as the model keeps them) are found by
	// galloping from the last one when they are more than √users:
	// cheaper than a search of every user each, not for a handful.
	gallop := len(uids)*len(uids) > len(x.users)
	from, prev := 0, ""
	for _, uid := range uids {
		var (
			i  int
			ok bool
		)
		if gallop {
			if uid < prev {
				from = 0 // out of order: from the start
			}
			prev = uid
			i, ok, from = x.findFrom(uid, from)
		} else {
			i, ok = x.find(uid)
		}
		if ok {
			idx = append(idx, int32(i))
		}
	}
	return idx
}

// memberOf is, for each user index, the indexes of its collaborations in
// ascending order: one flat slice, no per-user allocation. An incremental
// run patches the users whose memberships change.
type memberOf struct {
	start []int32 // user i's collaborations are flat[start[i]:start[i+1]]
	flat  []int32
	patch map[int32][]int32
}

func invert(memberIdx [][]int32, users int) memberOf {
	start := make([]int32, users+1)
	for _, idx := range memberIdx {
		for _, i := range idx {
			start[i+1]++
		}
	}
	for i := 1; i <= users; i++ {
		start[i] += start[i-1] // start[i] is now where user i's collaborations start
	}
	flat := make([]int32, start[users])
	next := slices.Clone(start[:users])
	for ci, idx := range memberIdx {
		for _, i := range idx {
			flat[next[i]] = int32(ci)
			next[i]++
		}
	}
	return memberOf{start: start, flat: flat}
}

// compact folds the patches into a flat slice again.
func (m *memberOf) compact() memberOf {
	users := len(m.start) - 1
	out := memberOf{start: make([]int32, users+1)}
	for u := range users {
		out.start[u+1] = out.start[u] + int32(len(m.of(u)))
	}
	out.flat = make([]int32, 0, out.start[users])
	for u := range users {
		out.flat = append(out.flat, m.of(u)...)
	}
	return out
}

func (m *memberOf) of(user int) []int32 {
	if p, ok := m.patch[int32(user)]; ok {
		return p
	}
	return m.flat[m.start[user]:m.start[user+1]]
}

// set replaces a user's collaborations (the flat slice is never changed).
func (m *memberOf) set(user int32, collabs []int32) {
	if m.patch == nil {
		m.patch = map[int32][]int32{}
	}
	m.patch[user] = collabs
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
	for i, pa := range snap.ProductionAccounts {
		owner := pa.Collaboration
		if owner == "" {
			owner = e.ownerByName(pa.Name)
		}
		e.st.ProductionAccounts = append(e.st.ProductionAccounts, e.productionAccount(i, pa, owner))
	}
}

// productionAccount is one production account's state, its owner named.
func (e *evaluation) productionAccount(i int, pa ProductionAccount, owner string) ProductionState {
	ps := ProductionState{ProductionAccount: pa}
	ps.Collaboration = owner
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
	var held bool
	ps.Active, held = e.decide(SubjectProduction, pa.Name, pa.DN, known && c.Provisioned)
	if held {
		e.held.production = append(e.held.production, i)
	}
	return ps
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

// activeMembers fills a collaboration's members whose account is active,
// given the users its members are.
// When every member is a user and active (the usual case), they are the
// members as they are, shared (capped, so that an append copies).
func (e *evaluation) activeMembers(ci int, idx []int32) {
	c := &e.st.Collaborations[ci]
	c.ActiveMembers = nil
	active := 0
	for _, i := range idx {
		if e.st.Users[i].Status == StatusActive {
			active++
		}
	}
	if active > 0 && active == len(c.Members) && len(idx) == active {
		c.ActiveMembers = c.Members[:active:active]
		return
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
