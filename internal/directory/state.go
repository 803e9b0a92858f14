package directory

import (
	"slices"
	"sort"
	"strings"

	"github.com/collabsync/collabsync/internal/gallop"
	"time"
)

// History is what the last run every target took provisioned of each
// subject, keyed by SubjectKey: the hold action keeps a subject no better
// than its status, and whoever was provisioned with a name or number keeps
// it against a newcomer. The stored history is a Previous; the state last
// saved as it is one too (State.History), without a second map of every
// subject.
type History interface {
	// Provisioned returns a subject's record.
	Provisioned(key string) (Provisioned, bool)
	// Len is the number of subjects.
	Len() int
	// All calls fn with every subject's record, in no given order.
	All(fn func(key string, p Provisioned))
}

// Previous is a history held as a map.
type Previous map[string]Provisioned

var (
	_ History = Previous(nil)
	_ History = stateHistory{}
)

// Provisioned implements History.
func (p Previous) Provisioned(key string) (Provisioned, bool) {
	r, ok := p[key]
	return r, ok
}

// Len implements History.
func (p Previous) Len() int { return len(p) }

// PreviousOf returns a history as a map.
func PreviousOf(h History) Previous {
	p := make(Previous, h.Len())
	h.All(func(key string, r Provisioned) { p[key] = r })
	return p
}

// All implements History.
func (p Previous) All(fn func(key string, p Provisioned)) {
	for k, v := range p {
		fn(k, v)
	}
}

// Provisioned is one subject as last provisioned.
type Provisioned struct {
	Status Status
	DN     string // empty when not known (history from before DNs were kept)
	// ID is the uidNumber (users, production accounts) or gidNumber
	// (collaborations); -1 when not known.
	ID int64
}

// Subject kinds for SubjectKey.
const (
	SubjectUser          = "user"
	SubjectCollaboration = "collaboration"
	SubjectProduction    = "production"
)

// SubjectKey names a subject across runs: "user/alice".
func SubjectKey(kind, name string) string { return kind + "/" + name }

// UserState is a user with the status the rules give it.
type UserState struct {
	// User is the snapshot's, shared (a copy per user per run was 19 MB
	// at 100k users).
	*User
	Status   Status // active, pending or suspended
	Internal bool   // member of a member institution
	Held     bool   // kept no better than last provisioned, by a hold action
	// OwnGroup: the user's private group is provisioned with it (named
	// User.PrivateGroup, gid User.GIDNumber).
	OwnGroup bool
}

// CollaborationState is a collaboration with its effective status.
type CollaborationState struct {
	// Collaboration is the snapshot's, shared and never modified (a copy
	// per collaboration made every change copy 24 MB at 1M users).
	*Collaboration
	Status Status // pending, active, suspended, closed or expired
	// Contacts are the effective ones (rule 5: the reporting role holds
	// the collaboration, computing and storage contacts too); the
	// directory's are Collaboration.Contacts.
	Contacts map[Role][]string
	// Provisioned: active and not left out or held back by a rule.
	Provisioned bool
	// ActiveMembers are the members whose account is active.
	ActiveMembers []string
}

// ProductionState is a production account with its effective state.
type ProductionState struct {
	ProductionAccount
	Active bool
}

// State is the effective state of the directory after the rules: what
// every target provisions from.
type State struct {
	Users              []UserState
	Collaborations     []CollaborationState
	ProductionAccounts []ProductionState
	Violations         []Violation
	// NextExpiry is the earliest account expiry still to come (zero:
	// none): the state is wrong from then on, and a daemon evaluates again.
	NextExpiry time.Time

	users  uidIndex
	collab map[string]int
	basis  History
	// settled, when not nil, is StatusChanges computed when the history
	// was let go (letGo).
	settled *statusDiff
	// epoch and seq place a state among an Evaluator's: seq counts its
	// runs, epoch its whole evaluations (zero: not an Evaluator's).
	epoch, seq uint64
	// journal logs what the Evaluator's runs since its last whole
	// evaluation changed (nil: not an Evaluator's state).
	journal *journal
}

// uidIndex finds a user's index by uid. Users in uid order (as a snapshot
// sorts them) are searched where they are, and only a uid two entries
// hold is kept in a map (a map of every uid was 4.5 MB per run at 100k
// users; a list of the uids, kept by an Evaluator between runs, 1.6 MB);
// users in another order are all in the map.
type uidIndex struct {
	all   map[string]int // nil when the users are in uid order
	users []*User
	dups  map[string]int
	// keys, while a whole evaluation finds every member, are the users'
	// uid keys (UIDKeys): the snapshot's, else made for the evaluation.
	keys UIDKeys
}

// CompareUID orders a user against a uid, for searches of users sorted
// by uid.
func CompareUID(u *User, uid string) int { return strings.Compare(u.UID, uid) }

// useKeys sets the keys searches go by: given ones of the users (a
// snapshot's), else made (users not in uid order: none).
func (x *uidIndex) useKeys(given UIDKeys) {
	switch {
	case x.all != nil:
	case given.Len() == len(x.users):
		x.keys = given
	default:
		x.keys = KeysOf(x.users)
	}
}

func (x *uidIndex) find(uid string) (int, bool) {
	if x.all != nil {
		i, ok := x.all[uid]
		return i, ok
	}
	if i, ok := x.dups[uid]; ok {
		return i, true
	}
	if x.keys.Len() > 0 {
		return x.keys.Search(x.users, uid)
	}
	return slices.BinarySearchFunc(x.users, uid, CompareUID)
}

// findFrom is find for the uids of a list in ascending order: every uid
// of the index before from sorts before uid, so the search gallops from
// there (a collaboration's m members among n users cost O(m log(n/m))
// compares instead of O(m log n): at 1M users the members' searches were
// a quarter of serve's CPU). next is where the search for a larger uid
// may start. Users not in uid order are found in the map.
func (x *uidIndex) findFrom(uid string, from int) (i int, found bool, next int) {
	if x.all != nil {
		i, ok := x.all[uid]
		return i, ok, 0
	}
	var ok bool
	if x.keys.Len() > 0 {
		next, ok = x.keys.SearchFrom(x.users, uid, from)
	} else {
		next, ok = gallop.Search(x.users, uid, from, CompareUID)
	}
	if !ok {
		return 0, false, next
	}
	if d, dup := x.dups[uid]; dup {
		return d, true, next
	}
	return next, true, next
}

// newUIDIndex indexes users; of several entries with one uid, the index
// holds the first that keep(index) accepts, else the last. Given the
// users' uid keys (a snapshot's: UIDKeys.Len() is len(users)), the users
// are in uid order, and only neighbours of one key are compared (at 1M
// users the comparison of every neighbour's uid was 60 ms a whole
// evaluation); without them, every neighbour is.
func newUIDIndex(users []*User, keys UIDKeys, keep func(int) bool) uidIndex {
	n := len(users)
	uidAt := func(i int) string { return users[i].UID }
	var x uidIndex
	choose := func(m map[string]int, uid string, i int) {
		if j, dup := m[uid]; !dup || !keep(j) {
			m[uid] = i
		}
	}
	keyed := keys.Len() == n
	for i := 1; i < n && !keyed; i++ {
		if uidAt(i-1) > uidAt(i) {
			x.all = make(map[string]int, n)
			for i := range n {
				choose(x.all, uidAt(i), i)
			}
			return x
		}
	}
	x.dups, x.users = map[string]int{}, users
	for i := 1; i < n; i++ {
		if keyed && keys.keys[i] != keys.keys[i-1] {
			continue // uids of different keys differ
		}
		if uid := uidAt(i); uid == uidAt(i-1) {
			if _, ok := x.dups[uid]; !ok {
				x.dups[uid] = i - 1
			}
			choose(x.dups, uid, i)
		}
	}
	return x
}

// History is the state's statuses as the history of a later run: what
// Statuses returns, found in the state's lists (no map of every subject).
// It holds the lists, not the state (nor, through it, the history the
// state was evaluated against).
func (s *State) History() History {
	return stateHistory{users: s.Users, collabs: s.Collaborations, prods: s.ProductionAccounts}
}

// stateHistory is a state's lists as a history.
type stateHistory struct {
	users   []UserState
	collabs []CollaborationState
	prods   []ProductionState
}

func (h stateHistory) state() *State {
	return &State{Users: h.users, Collaborations: h.collabs, ProductionAccounts: h.prods}
}

// Provisioned implements History.
func (h stateHistory) Provisioned(key string) (Provisioned, bool) { return h.state().record(key) }

// Len implements History.
func (h stateHistory) Len() int {
	n := 0
	h.state().folded(func(string, Provisioned) { n++ })
	return n
}

// All implements History.
func (h stateHistory) All(fn func(key string, p Provisioned)) { h.state().folded(fn) }

// overHistory is a history as a state and the records it differs in: a
// history read whole (a map of every subject: 213 MB at 1M users) made
// small once a state was evaluated against it. It answers what the map
// did.
type overHistory struct {
	state History
	// old holds the history's records of the subjects the state changed,
	// added (had false) or left out.
	old map[string]oldRecord
	n   int
}

type oldRecord struct {
	p   Provisioned
	had bool
}

var _ History = overHistory{}

// Provisioned implements History.
func (h overHistory) Provisioned(key string) (Provisioned, bool) {
	if o, ok := h.old[key]; ok {
		return o.p, o.had
	}
	return h.state.Provisioned(key)
}

// Len implements History.
func (h overHistory) Len() int { return h.n }

// All implements History.
func (h overHistory) All(fn func(key string, p Provisioned)) {
	h.state.All(func(key string, p Provisioned) {
		if _, ok := h.old[key]; !ok {
			fn(key, p)
		}
	})
	for key, o := range h.old {
		if o.had {
			fn(key, o.p)
		}
	}
}

// statusDiff is a state's StatusChanges, kept once its history was let go.
type statusDiff struct {
	changed Previous
	gone    []string
}

// letGo computes the state's status difference from the history it was
// evaluated against, read whole, and makes that history the state and the
// records it differs in (what the map answered, without the map): the
// caller may then let the map go before the targets plan. It returns the
// history as it is now held.
func (s *State) letGo(m History) History {
	changed, gone := s.StatusChanges()
	old := make(map[string]oldRecord, len(changed)+len(gone))
	for key := range changed {
		p, had := m.Provisioned(key)
		old[key] = oldRecord{p, had}
	}
	for _, key := range gone {
		p, _ := m.Provisioned(key)
		old[key] = oldRecord{p, true}
	}
	h := overHistory{state: s.History(), old: old, n: m.Len()}
	s.basis, s.settled = h, &statusDiff{changed: changed, gone: gone}
	return h
}

// Against is the history the state was evaluated against (nil: none).
// After an Evaluator's run against a map it no longer holds the map.
func (s *State) Against() History { return s.basis }

// User returns the user with that uid.
func (s *State) User(uid string) (*UserState, bool) {
	i, ok := s.users.find(uid)
	if !ok {
		return nil, false
	}
	return &s.Users[i], true
}

// Collaboration returns the collaboration with that name.
func (s *State) Collaboration(name string) (*CollaborationState, bool) {
	i, ok := s.collab[name]
	if !ok {
		return nil, false
	}
	return &s.Collaborations[i], true
}

// Statuses returns what this state provisions of every subject, for the
// history kept between runs (the input of the hold action and of the
// incumbents' claim to their names and numbers next time).
func (s *State) Statuses() Previous {
	out := make(Previous, len(s.Users)+len(s.Collaborations)+len(s.ProductionAccounts))
	// Of two entries with one name, the history keeps the provisioned one.
	s.subjects(func(key string, p Provisioned) {
		if old, ok := out[key]; !ok || old.Status != StatusActive {
			out[key] = p
		}
	})
	return out
}

// The history record of each kind of subject.
func (u *UserState) record() Provisioned {
	return Provisioned{Status: u.Status, DN: u.DN, ID: int64(u.UIDNumber)}
}

func (c *CollaborationState) record() Provisioned {
	return Provisioned{Status: provisioned(c.Provisioned), DN: c.DN, ID: int64(c.GIDNumber)}
}

func (p *ProductionState) record() Provisioned {
	return Provisioned{Status: provisioned(p.Active), DN: p.DN, ID: int64(p.UIDNumber)}
}

// provisioned is the status a collaboration or production account is
// recorded with.
func provisioned(active bool) Status {
	if active {
		return StatusActive
	}
	return StatusPending
}

// subjects calls fn with every subject's record, in the state's order:
// users, collaborations, production accounts.
func (s *State) subjects(fn func(key string, p Provisioned)) {
	for i := range s.Users {
		fn(SubjectKey(SubjectUser, s.Users[i].UID), s.Users[i].record())
	}
	for i := range s.Collaborations {
		fn(SubjectKey(SubjectCollaboration, s.Collaborations[i].Name), s.Collaborations[i].record())
	}
	for i := range s.ProductionAccounts {
		fn(SubjectKey(SubjectProduction, s.ProductionAccounts[i].Name), s.ProductionAccounts[i].record())
	}
}

// record is one subject's record in Statuses, found by its key: of
// several entries of one name, the first active one, else the last.
func (s *State) record(key string) (p Provisioned, found bool) {
	kind, name, _ := strings.Cut(key, "/")
	take := func(q Provisioned) {
		if !found || p.Status != StatusActive {
			p = q
		}
		found = true
	}
	switch kind {
	case SubjectUser:
		i := sort.Search(len(s.Users), func(i int) bool { return s.Users[i].UID >= name })
		for ; i < len(s.Users) && s.Users[i].UID == name; i++ {
			take(s.Users[i].record())
		}
	case SubjectCollaboration:
		i := sort.Search(len(s.Collaborations), func(i int) bool { return s.Collaborations[i].Name >= name })
		for ; i < len(s.Collaborations) && s.Collaborations[i].Name == name; i++ {
			take(s.Collaborations[i].record())
		}
	case SubjectProduction:
		i := sort.Search(len(s.ProductionAccounts), func(i int) bool { return s.ProductionAccounts[i].Name >= name })
		for ; i < len(s.ProductionAccounts) && s.ProductionAccounts[i].Name == name; i++ {
			take(s.ProductionAccounts[i].record())
		}
	}
	return p, found
}

// StatusChanges is Statuses as a difference from the history the state
// was evaluated against: the subjects whose record changes or is new, and
// the keys of those that are gone. A run that changed one subject of 100k
// builds two small values instead of a second map of 100k.
func (s *State) StatusChanges() (changed Previous, gone []string) {
	if s.settled != nil {
		return s.settled.changed, s.settled.gone
	}
	basis := s.basis
	if basis == nil {
		basis = Previous(nil)
	}
	had := basis.Len()
	changed = Previous{}
	if had == 0 { // a first run: every subject is new
		changed = make(Previous, len(s.Users)+len(s.Collaborations)+len(s.ProductionAccounts))
	}
	produced := 0
	s.folded(func(key string, p Provisioned) {
		produced++
		if old, ok := basis.Provisioned(key); !ok || old != p {
			changed[key] = p
		}
	})
	if produced-countNew(basis, changed) == had {
		return changed, nil // every subject of the history is still here
	}
	// Something went: find which (rare, so the full map is built only now).
	now := s.Statuses()
	basis.All(func(key string, _ Provisioned) {
		if _, ok := now[key]; !ok {
			gone = append(gone, key)
		}
	})
	sort.Strings(gone)
	return changed, gone
}

// StatusDiff is StatusChanges as a history to write: against an empty
// history (a first run), the state itself, without a map of every
// subject (110k entries, 10 MB, at 100k users, at the first run's peak).
func (s *State) StatusDiff() (changed History, gone []string) {
	if s.basis == nil || s.basis.Len() == 0 {
		return s.History(), nil
	}
	return s.StatusChanges()
}

// folded calls fn with every subject's record in Statuses: of a run of
// entries of one name, the first active one, else the last. The state's
// lists are in snapshot order (by name, then DN), so entries of one name
// are adjacent.
func (s *State) folded(fn func(key string, p Provisioned)) {
	// run is the current run of entries of one name (none when key is "").
	var run struct {
		key string
		p   Provisioned
	}
	s.subjects(func(key string, p Provisioned) {
		if key == run.key {
			if run.p.Status != StatusActive {
				run.p = p
			}
			return
		}
		if run.key != "" {
			fn(run.key, run.p)
		}
		run.key, run.p = key, p
	})
	if run.key != "" {
		fn(run.key, run.p)
	}
}

// countNew counts the changed subjects the history did not have.
func countNew(basis History, changed Previous) int {
	n := 0
	for key := range changed {
		if _, ok := basis.Provisioned(key); !ok {
			n++
		}
	}
	return n
}
