package directory

import (
	"maps"
	"reflect"
	"slices"
	"time"
)

// Evaluator applies the account rules run after run, each from what the
// last one found. A run whose snapshot differs from the last one only in
// the attributes and members of existing users and collaborations — none
// added, removed or renamed, no uid, gid or DN changed, the production
// accounts the same — under the same policy, before any review date or
// account expiry of the last state falls due, re-evaluates only the
// subjects the difference can affect: the changed collaborations, the
// users who joined or left them (all their members when the collaboration's
// status, kind or validators change), the changed users, the production
// accounts of collaborations provisioned or deprovisioned, the private
// groups of users whose status changed, and every subject a hold keeps
// (its state depends on the history). Anything else is a whole
// evaluation, as Evaluate does; so is the first run, and the run after
// Reset. Both give the same state: a property test drives random changes
// through both.
//
// An Evaluator is not safe for concurrent use. The states it returns are
// never modified afterwards (a later run copies what it changes).
type Evaluator struct {
	// Once says the Evaluator evaluates once (a one-shot command): a
	// history read whole is kept as it is, not let go, as no later run
	// evaluates against it; its status difference is made if asked
	// (State.StatusDiff). At 1M users letting it go was half a second of
	// `plan`'s CPU, and `plan` never asks.
	Once bool

	e *evaluation // the last run's; nil before the first
	// What the next run compares its snapshot with, besides the last
	// state (which holds the users and collaborations as they were, the
	// directory's own contacts among them): the snapshot's list of users
	// (the live model's, shared) and the production accounts. The
	// snapshot itself is not kept.
	users      []*User
	production []ProductionAccount
	pol        Policy
	// clash holds rule 7's violations of the last run, in order: a run
	// whose history changes them is a whole evaluation.
	clash []Violation
	// reviewUntil is the earliest review threshold (warning, due date,
	// end of grace) not passed at the last run: the review rule's
	// outcomes hold until then. Zero: none.
	reviewUntil time.Time

	// epoch counts whole evaluations, seq runs; log lists, since the
	// last whole evaluation, the subjects whose history record each
	// incremental run changed (ChangesSince), less what Forget dropped.
	epoch, seq uint64
	log        []moved
	// journal logs which entries of the state each run since the last
	// whole evaluation changed (State.ChangedSince).
	journal *journal
	forgot  uint64 // the log holds nothing up to this run

	stats EvaluatorStats
	// patchLimit is how many users' memberships may be patched before
	// they are made flat again (0: an eighth of the users, and 64).
	patchLimit int
}

// EvaluatorStats counts an Evaluator's runs.
type EvaluatorStats struct {
	Whole, Incremental uint64
	// Why is why the last whole evaluation was one.
	Why string
}

// Stats returns the runs so far.
func (ev *Evaluator) Stats() EvaluatorStats { return ev.stats }

// Reset makes the next run a whole evaluation (a full reconcile's).
func (ev *Evaluator) Reset() { ev.e = nil }

// Evaluate applies the rules to a snapshot, as the function Evaluate does.
//
// A history read whole (the stored statuses, a map or packed) is not kept
// unless Once: the state and the Evaluator hold it as the state and the
// records it differs in (State.Against), so the map can go before the
// targets plan.
func (ev *Evaluator) Evaluate(snap *Snapshot, p Policy, prev History) *State {
	st := ev.evaluate(snap, p, prev)
	switch prev.(type) {
	case Previous, *PackedHistory:
		if prev.Len() > 0 && !ev.Once {
			ev.e.prev = st.letGo(prev)
		}
	}
	return st
}

func (ev *Evaluator) evaluate(snap *Snapshot, p Policy, prev History) *State {
	why := "first run"
	ev.seq++
	if ev.e != nil {
		st, reason := ev.incremental(snap, p, prev)
		if st != nil {
			st.epoch, st.seq, st.journal = ev.epoch, ev.seq, ev.journal
			ev.stats.Incremental++
			return st
		}
		why = reason
	}
	ev.epoch++
	ev.log = ev.log[:0]
	e := newEvaluation(snap, p, prev)
	ev.e, ev.pol = e, p
	ev.remember(snap)
	ev.clash = ev.clash[:0]
	for _, v := range e.st.Violations {
		if v.Kind == KindDuplicateName || v.Kind == KindDuplicateID {
			ev.clash = append(ev.clash, v)
		}
	}
	ev.reviewUntil = time.Time{}
	for i := range snap.Collaborations {
		ev.reviewLimit(snap.Collaborations[i], p.Now)
	}
	ev.stats.Whole++
	ev.stats.Why = why
	ev.journal = newJournal(ev.seq, len(snap.Users))
	e.st.epoch, e.st.seq, e.st.journal = ev.epoch, ev.seq, ev.journal
	return e.st
}

// moved is a subject whose history record a run changed.
type moved struct {
	seq uint64
	key string
}

// ChangesSince is StatusChanges against an earlier state of this
// Evaluator instead of the history: the records that differ between the
// two, found among the subjects the incremental runs between them
// changed, not among all. ok is false unless both come from the same
// series of incremental runs since a whole evaluation, old not after
// now, and no Forget has dropped what lies between them. A caller that
// saved old's statuses, and knows nobody else wrote the history since,
// saves now's with them: a change among 1M users compares a few records,
// not 1.1M.
func (ev *Evaluator) ChangesSince(old, now *State) (changed Previous, gone []string, ok bool) {
	if old == nil || now == nil || old.epoch != ev.epoch || now.epoch != ev.epoch || old.seq > now.seq || ev.forgot > old.seq {
		return nil, nil, false
	}
	changed = Previous{}
	seen := map[string]bool{}
	for _, m := range ev.log {
		if m.seq <= old.seq || m.seq > now.seq || seen[m.key] {
			continue
		}
		seen[m.key] = true
		is, in := now.record(m.key)
		was, inOld := old.record(m.key)
		switch {
		case in && (!inOld || is != was):
			changed[m.key] = is
		case !in && inOld:
			gone = append(gone, m.key)
		}
	}
	slices.Sort(gone)
	return changed, gone, true
}

// Forget drops the log up to a state whose statuses were saved: no later
// ChangesSince starts before it.
func (ev *Evaluator) Forget(saved *State) {
	if saved == nil || saved.epoch != ev.epoch {
		return
	}
	i := 0
	for i < len(ev.log) && ev.log[i].seq <= saved.seq {
		i++
	}
	ev.log = slices.Delete(ev.log, 0, i)
	ev.forgot = max(ev.forgot, saved.seq)
}

// moved logs a subject whose history record this run changes.
func (ev *Evaluator) moved(kind, name string) {
	ev.log = append(ev.log, moved{ev.seq, SubjectKey(kind, name)})
}

// remember keeps what the next run compares with.
func (ev *Evaluator) remember(snap *Snapshot) {
	ev.users, ev.production = snap.Users, snap.ProductionAccounts
}

// reviewLimit lowers reviewUntil to c's next review threshold.
func (ev *Evaluator) reviewLimit(c *Collaboration, now time.Time) {
	if c.ReviewedUntil.IsZero() {
		return
	}
	due := c.ReviewedUntil
	for _, t := range [3]time.Time{due.Add(-ev.pol.ReviewWarning), due, due.Add(ev.pol.ReviewGrace)} {
		if !t.Before(now) && (ev.reviewUntil.IsZero() || t.Before(ev.reviewUntil)) {
			ev.reviewUntil = t
		}
	}
}

// The violation kinds each rule on one subject finds, which a run that
// evaluates the subject again replaces.
var (
	collabKinds     = []ViolationKind{KindNoCollabContact, KindReviewOverdue, KindReviewDueSoon}
	userKinds       = []ViolationKind{KindMultipleAdmin, KindMailDomain, KindUnvalidatedExternal}
	productionKinds = []ViolationKind{KindProductionOwner, KindProductionName}
)

// incremental evaluates the subjects the difference from the last run can
// affect, or returns why it cannot.
func (ev *Evaluator) incremental(snap *Snapshot, p Policy, prev History) (*State, string) {
	if prev == nil {
		prev = Previous(nil)
	}
	e, last := ev.e, ev.e.st
	switch {
	case !samePolicy(&ev.pol, &p):
		return nil, "the policy changed"
	case p.Now.Before(ev.pol.Now):
		return nil, "the clock went back"
	case !ev.reviewUntil.IsZero() && p.Now.After(ev.reviewUntil):
		return nil, "a review date passed"
	case !last.NextExpiry.IsZero() && p.Now.Unix() >= last.NextExpiry.Unix():
		return nil, "an account expired"
	case last.users.all != nil:
		return nil, "users not in uid order"
	case len(snap.Users) != len(last.Users):
		return nil, "users added or removed"
	case len(snap.Collaborations) != len(last.Collaborations):
		return nil, "collaborations added or removed"
	case !slices.EqualFunc(snap.ProductionAccounts, ev.production, sameProduction):
		return nil, "production accounts changed"
	}
	var reUsers []int32 // users to evaluate again
	if !sameBacking(snap.Users, ev.users) {
		for i, u := range snap.Users {
			o := last.Users[i].User
			if u == o {
				continue
			}
			if u.UID != o.UID || u.DN != o.DN || u.UIDNumber != o.UIDNumber || u.GIDNumber != o.GIDNumber || u.PrivateGroup != o.PrivateGroup {
				return nil, "a user's uid, DN or number changed"
			}
			reUsers = append(reUsers, int32(i))
		}
	}
	var reCollabs []int
	for ci := range snap.Collaborations {
		c, o := snap.Collaborations[ci], last.Collaborations[ci].Collaboration
		if c == o {
			continue // the model's same resolved collaboration
		}
		if c.Name != o.Name || c.DN != o.DN || c.GIDNumber != o.GIDNumber {
			return nil, "a collaboration's name, DN or gid changed"
		}
		if !sameCollaboration(c, o) {
			reCollabs = append(reCollabs, ci)
		}
	}

	st := &State{Users: last.Users, Collaborations: last.Collaborations, ProductionAccounts: last.ProductionAccounts,
		NextExpiry: last.NextExpiry, users: last.users, collab: last.collab, basis: prev}
	if snap.UIDKeys.Len() == len(st.users.users) && st.users.all == nil {
		// The snapshot's uid keys find the members of the collaborations
		// evaluated again (the users have the uids they had, checked
		// above): at 1M users the members of a 200k-member collaboration
		// searched through the users' pointers took ≈0.1 s a change. The
		// state does not keep them.
		st.users.keys = snap.UIDKeys
		defer func() { st.users.keys = UIDKeys{} }()
	}
	e.p, e.prev, e.st = &p, prev, st
	// Rule 7 under this run's history: the same, or a whole evaluation.
	scratch := map[string]*verdict{}
	for _, g := range e.clashes {
		e.report(scratch, g)
	}
	sortViolations(st.Violations)
	if !slices.Equal(st.Violations, ev.clash) {
		return nil, "rule 7's incumbents changed"
	}
	st.Violations = nil

	was := e.held
	e.held = held{}
	reCollabs = union(reCollabs, was.collabs)
	usersChanged := len(reUsers) > 0
	collabs := cow[CollaborationState]{s: st.Collaborations}
	var (
		reDN     = map[string][]ViolationKind{} // subjects evaluated again: the kinds they had found
		flipped  = map[string]bool{}            // collaborations provisioned or no longer
		flipGIDs = map[uint32]bool{}
		dirty    []int // collaborations whose active members are to be found again
	)
	for _, ci := range reCollabs {
		c := snap.Collaborations[ci]
		was := last.Collaborations[ci]
		delete(e.rules, c.DN)
		reDN[c.DN] = append(reDN[c.DN], collabKinds...)
		cs := e.collaboration(ci, c)
		collabs.set(ci, cs)
		st.Collaborations = collabs.s
		ev.reviewLimit(c, p.Now)
		if !ascending(was.Members) || !ascending(c.Members) {
			return nil, "a collaboration's members are not in uid order"
		}
		var joined, left []int32
		for _, uid := range difference(was.Members, c.Members) {
			u, known := st.users.find(uid)
			if !known {
				continue
			}
			if _, in := slices.BinarySearch(c.Members, uid); in {
				joined = append(joined, int32(u))
			} else {
				left = append(left, int32(u))
			}
		}
		for _, u := range joined {
			e.memberOf.set(u, insertSorted(e.memberOf.of(int(u)), int32(ci)))
		}
		for _, u := range left {
			e.memberOf.set(u, removeSorted(e.memberOf.of(int(u)), int32(ci)))
		}
		if cs.Kind != was.Kind || cs.Status != was.Status || cs.Provisioned != was.Provisioned ||
			!slices.Equal(cs.Contacts[RoleValidator], was.Contacts[RoleValidator]) {
			reUsers = append(append(reUsers, e.members(was.Members)...), e.members(c.Members)...)
		} else {
			reUsers = append(append(reUsers, joined...), left...)
		}
		if cs.Provisioned != was.Provisioned {
			flipped[c.Name], flipGIDs[c.GIDNumber] = true, true
			ev.moved(SubjectCollaboration, c.Name)
		}
		dirty = append(dirty, ci)
	}

	users := cow[UserState]{s: st.Users}
	var flips []int32 // users whose status changed
	for _, i := range union(reUsers, toInt32(was.users)) {
		u, o := snap.Users[i], last.Users[i]
		excluded := e.excluded(u.DN)
		delete(e.rules, u.DN)
		reDN[u.DN] = append(reDN[u.DN], userKinds...)
		us := e.user(int(i), u)
		us.OwnGroup = o.OwnGroup
		if _, dup := st.users.dups[u.UID]; dup && excluded != e.excluded(u.DN) {
			// Which entry members of that uid mean may change.
			return nil, "a duplicate uid's verdict changed"
		}
		if us.Status != o.Status {
			ev.moved(SubjectUser, u.UID)
			flips = append(flips, i)
			for _, ci := range e.memberOf.of(int(i)) {
				dirty = append(dirty, int(ci))
			}
		}
		if us != o {
			users.set(int(i), us)
		}
	}
	st.Users = users.s
	if usersChanged {
		st.NextExpiry = nextExpiry(snap.Users, p.Now)
	}

	prods := cow[ProductionState]{s: st.ProductionAccounts}
	for i, pa := range snap.ProductionAccounts {
		ps := last.ProductionAccounts[i]
		if !flipped[ps.Collaboration] && !slices.Contains(was.production, i) {
			continue
		}
		delete(e.rules, pa.DN)
		reDN[pa.DN] = append(reDN[pa.DN], productionKinds...)
		now := e.productionAccount(i, pa, ps.Collaboration)
		if now.Active != ps.Active {
			ev.moved(SubjectProduction, pa.Name)
		}
		prods.set(i, now)
	}
	st.ProductionAccounts = prods.s

	if len(dirty) > 0 {
		collabs.copy()
		st.Collaborations = collabs.s
	}
	for _, ci := range union(dirty, nil) {
		collabs.touch(ci)
		e.activeMembers(ci, e.members(st.Collaborations[ci].Members))
	}
	pgDN := ev.primaryGroups(&users, flips, flipGIDs)
	st.Users = users.s

	// The violations: the last run's, less those of the subjects
	// evaluated again, merged with what they found now.
	found := problemViolations(snap.Problems, st.Violations)
	sortViolations(found)
	st.Violations = mergeViolations(last.Violations, found, func(v *Violation) bool {
		return v.Kind == KindMalformedEntry || v.Kind == KindUnknownReference ||
			slices.Contains(reDN[v.Subject], v.Kind) || v.Kind == KindPrimaryGroup && pgDN[v.Subject]
	})

	limit := len(snap.Users)/8 + 64
	if ev.patchLimit > 0 {
		limit = ev.patchLimit
	}
	if len(e.memberOf.patch) > limit {
		e.memberOf = e.memberOf.compact()
	}
	ev.journal.add(ev.seq, users.touched, collabs.touched, prods.touched)
	ev.pol = p
	ev.remember(snap)
	return st, ""
}

// primaryGroups decides again the private groups of the users whose status
// changed, of those whose primary gid belongs to a collaboration that was
// provisioned or no longer, and of every user sharing a private group with
// one of them (the first active one gets it). It returns the DNs decided.
func (ev *Evaluator) primaryGroups(users *cow[UserState], flips []int32, flipGIDs map[uint32]bool) map[string]bool {
	decided := map[string]bool{}
	if len(flips) == 0 && len(flipGIDs) == 0 {
		return decided
	}
	e := ev.e
	again := map[int32]bool{}
	for _, i := range flips {
		again[i] = true
	}
	if len(flipGIDs) > 0 {
		for i := range users.s {
			if flipGIDs[users.s[i].GIDNumber] {
				again[int32(i)] = true
			}
		}
	}
	shared := map[string]bool{}
	for i := range again {
		if g := users.s[i].PrivateGroup; g != "" {
			shared[g] = true
		}
	}
	if len(shared) > 0 {
		for i := range users.s {
			if g := users.s[i].PrivateGroup; g != "" && shared[g] {
				again[int32(i)] = true
			}
		}
	}
	order := slices.Sorted(maps.Keys(again))
	pg := e.newPrimaryGroups()
	for _, i := range order {
		us := users.s[i]
		pg.decide(e, &us)
		decided[us.DN] = true
		if us != users.s[i] {
			users.set(int(i), us)
		}
	}
	return decided
}

// cow is a list shared with an earlier state, copied on its first change.
// touched lists the entries set (or changed in place, touch), for the
// journal: an entry may be listed twice.
type cow[T any] struct {
	s       []T
	copied  bool
	touched []int32
}

func (c *cow[T]) set(i int, v T) {
	c.copy()
	c.s[i] = v
	c.touch(i)
}

func (c *cow[T]) touch(i int) { c.touched = append(c.touched, int32(i)) }

func (c *cow[T]) copy() {
	if !c.copied {
		c.s, c.copied = slices.Clone(c.s), true
	}
}

// nextExpiry is the earliest account expiry after now (zero: none).
func nextExpiry(users []*User, now time.Time) time.Time {
	var next int64
	for _, u := range users {
		if u.Expires > now.Unix() && (next == 0 || u.Expires < next) {
			next = u.Expires
		}
	}
	if next == 0 {
		return time.Time{}
	}
	return time.Unix(next, 0)
}

// mergeViolations merges the last run's violations but those left out
// (and their Since, which the store fills in) with those found, both in
// violation order and without violations in common, into one new list: a
// list of the kept ones merged into another was two copies of every
// violation a change (23 MB at 1M users, 100k violations).
func mergeViolations(last, found []Violation, leftOut func(*Violation) bool) []Violation {
	var dropped []int // of last, in order: few, the subjects evaluated again
	for i := range last {
		if leftOut(&last[i]) {
			dropped = append(dropped, i)
		}
	}
	if sameAsDropped(last, dropped, found) {
		// The subjects evaluated again found what they had: the list is
		// the last run's (at 1M users a copy of 100k violations was 12 MB
		// of garbage a change). Its Since, if the store filled them in,
		// are what it would fill in again.
		return last
	}
	out := make([]Violation, 0, len(last)+len(found))
	for i := range last {
		if len(dropped) > 0 && dropped[0] == i {
			dropped = dropped[1:]
			continue
		}
		v := last[i]
		v.Since = time.Time{}
		for len(found) > 0 && violationLess(&found[0], &v) {
			out, found = append(out, found[0]), found[1:]
		}
		out = append(out, v)
	}
	return append(out, found...)
}

// sameAsDropped reports whether the violations of last at dropped are,
// in order, found (but for their Since).
func sameAsDropped(last []Violation, dropped []int, found []Violation) bool {
	if len(dropped) != len(found) {
		return false
	}
	for n, i := range dropped {
		v, f := last[i], found[n]
		v.Since, f.Since = time.Time{}, time.Time{}
		if v != f {
			return false
		}
	}
	return true
}

// union returns a and b's values, sorted and without repeats.
func union[T int | int32](a, b []T) []T {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func toInt32(s []int) []int32 {
	out := make([]int32, len(s))
	for i, v := range s {
		out[i] = int32(v)
	}
	return out
}

// ascending reports whether a list is in strictly ascending order (sorted,
// without repeats: as the live model keeps members).
func ascending(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

// difference returns the values one of two ascending lists has and the
// other has not.
func difference(a, b []string) []string {
	if sameBacking(a, b) {
		return nil
	}
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return out
}

func insertSorted(s []int32, v int32) []int32 {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(slices.Clone(s), i, v)
}

func removeSorted(s []int32, v int32) []int32 {
	i, found := slices.BinarySearch(s, v)
	if !found {
		return s
	}
	return slices.Delete(slices.Clone(s), i, i+1)
}

// sameBacking reports whether two lists are the same list.
func sameBacking[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func sameStrings(a, b []string) bool { return sameBacking(a, b) || slices.Equal(a, b) }

// sameCollaboration compares every field (TestSameCoversEveryField).
func sameCollaboration(a, b *Collaboration) bool {
	return a.DN == b.DN && a.Name == b.Name && a.GIDNumber == b.GIDNumber && sameStrings(a.Members, b.Members) &&
		a.Kind == b.Kind && a.Status == b.Status && a.ReviewedUntil == b.ReviewedUntil && sameContacts(a.Contacts, b.Contacts) &&
		a.Fairshare == b.Fairshare && slices.Equal(a.Lists, b.Lists) && a.Activity == b.Activity && a.Allocation == b.Allocation
}

func sameContacts(a, b map[Role][]string) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() {
		return true
	}
	for role, v := range a {
		if w, ok := b[role]; !ok || !sameStrings(v, w) {
			return false
		}
	}
	return true
}

// sameProduction compares every field (TestSameCoversEveryField).
func sameProduction(a, b ProductionAccount) bool {
	return a.DN == b.DN && a.Name == b.Name && a.UIDNumber == b.UIDNumber && a.GIDNumber == b.GIDNumber && a.Home == b.Home &&
		a.Shell == b.Shell && a.Collaboration == b.Collaboration && slices.Equal(a.Managers, b.Managers)
}

// samePolicy compares every field but Now (TestSameCoversEveryField).
func samePolicy(a, b *Policy) bool {
	return a.ReviewGrace == b.ReviewGrace && a.ReviewWarning == b.ReviewWarning && a.ReviewTracked == b.ReviewTracked &&
		slices.Equal(a.MemberDomains, b.MemberDomains) && slices.Equal(a.MemberAffiliations, b.MemberAffiliations) &&
		slices.Equal(a.AcceptedDomains, b.AcceptedDomains) && a.ProductionSeparator == b.ProductionSeparator &&
		sameRegexp(a, b) && maps.Equal(a.Actions, b.Actions) && sameRange(a.UIDRange, b.UIDRange) &&
		sameRange(a.GIDRange, b.GIDRange) && sameReserved(a.Reserved, b.Reserved)
}

func sameRegexp(a, b *Policy) bool {
	if a.ProductionLabel == nil || b.ProductionLabel == nil {
		return a.ProductionLabel == b.ProductionLabel
	}
	return a.ProductionLabel.String() == b.ProductionLabel.String()
}

func sameRange(a, b *IDRange) bool { return a == b || a != nil && b != nil && *a == *b }

func sameReserved(a, b *Reserved) bool {
	if a == nil {
		a = &Reserved{}
	}
	if b == nil {
		b = &Reserved{}
	}
	return maps.Equal(a.Names, b.Names) && maps.Equal(a.UIDs, b.UIDs) && maps.Equal(a.GIDs, b.GIDs)
}
