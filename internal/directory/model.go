// Package directory is collabsync's model of the centre: users,
// collaborations and production accounts as read from LDAP, and the account
// rules that decide their effective state.
package directory

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Status is an account's or a collaboration's status.
type Status string

// The statuses.
const (
	StatusPending   Status = "pending"
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	StatusClosed    Status = "closed"  // collaborations only
	StatusExpired   Status = "expired" // collaborations whose review is overdue
)

// CollaborationKind says whether a collaboration is a home institution's
// (administrative: at most one per user) or a scientific one.
type CollaborationKind string

// The collaboration kinds.
const (
	KindAdministrative CollaborationKind = "administrative"
	KindScientific     CollaborationKind = "scientific"
)

// CollaborationKinds lists the kinds.
func CollaborationKinds() []CollaborationKind {
	return []CollaborationKind{KindAdministrative, KindScientific}
}

// Join lists named values (kinds, roles, statuses) for a message: "a, b".
func Join[S ~string](names []S) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return strings.Join(out, ", ")
}

// Role is a contact's role in a collaboration.
type Role string

// The contact roles (the configuration uses the same names).
const (
	RoleCollaboration Role = "collaboration"
	RoleComputing     Role = "computing"
	RoleStorage       Role = "storage"
	RoleReporting     Role = "reporting"
	RoleValidator     Role = "validator"
)

// Roles lists every contact role: the one list of them.
func Roles() []Role {
	return []Role{RoleCollaboration, RoleComputing, RoleStorage, RoleReporting, RoleValidator}
}

// Statuses a collaboration's directory status attribute may map to.
func CollaborationStatuses() []Status {
	return []Status{StatusPending, StatusActive, StatusSuspended, StatusClosed}
}

// User is a person's account as the directory holds it.
type User struct {
	DN        string
	UID       string
	UIDNumber uint32
	GIDNumber uint32
	Name      string
	Mail      string
	Home      string
	Shell     string
	// Suspended is the directory's own decision; whether the account is
	// otherwise active is for the rules.
	Suspended   bool
	Affiliation string
	// ValidatedBy is the uid of the contact who validated an external user.
	ValidatedBy string
	// OptOuts are list names the user does not want to receive.
	OptOuts []string
	// Expires is when the directory expires the account, in Unix seconds
	// (0: never); from then on it is suspended.
	Expires int64
	// PrivateGroup names the user's own group (FreeIPA's user private
	// group), whose gid is the user's GIDNumber; empty: none.
	PrivateGroup string
}

// Collaboration is an experiment, project or scientific group; it becomes a
// Unix group.
type Collaboration struct {
	DN        string
	Name      string
	GIDNumber uint32
	// Members are uids, sorted and unique.
	Members []string
	Kind    CollaborationKind
	// Status is the directory's: pending, active, suspended or closed.
	Status Status
	// ReviewedUntil is the end of the current yearly review; zero when the
	// site does not track reviews.
	ReviewedUntil time.Time
	// Contacts are uids by role, sorted.
	Contacts  map[Role][]string
	Fairshare int
	Lists     []string
	Activity  string
	// Allocation is what it may use per allocation period.
	Allocation Allocation
}

// Allocation is what a collaboration may use per allocation period
// (accounting.allocation_period): core-hours, and GPU-hours. Zero is no
// allocation of that resource.
type Allocation struct {
	CoreHours, GPUHours int64
}

// ProductionAccount is an account owned by a collaboration (robots,
// transfers, services); it lives as long as its collaboration is active.
type ProductionAccount struct {
	DN            string
	Name          string
	UIDNumber     uint32
	GIDNumber     uint32
	Home          string
	Shell         string
	Collaboration string // owner's name; empty when not known
	Managers      []string
}

// Problem is an entry the directory holds that collabsync cannot use as it
// is: a malformed attribute, a duplicate name. It names the DN so an admin
// can fix it; the entry is left out, never half-used.
type Problem struct {
	DN     string `json:"dn"`
	Reason string `json:"reason"`
	// Reference marks a dangling reference (a member or contact that is not
	// a known user): the value is skipped but the entry is used.
	Reference bool `json:"reference,omitempty"`
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s", p.DN, p.Reason) }

// CollaborationsOf is a snapshot's list of collaborations made of values
// (each copied once).
func CollaborationsOf(cs ...Collaboration) []*Collaboration {
	out := make([]*Collaboration, len(cs))
	for i := range cs {
		c := cs[i]
		out[i] = &c
	}
	return out
}

// Snapshot is one consistent read of the directory.
type Snapshot struct {
	// Users point into the source's entries (the live model's, kept
	// between runs): a snapshot and the states evaluated from it share
	// them and never modify them.
	Users []*User
	// UIDKeys are the Users' uid keys in their order, when the source
	// sorted them with SortUsers (none: the rules make their own).
	UIDKeys UIDKeys
	// Collaborations are shared the same way: the live model's resolved
	// collaborations, which the states point to (a copy of every
	// collaboration per change was 19 MB at 100k collaborations).
	Collaborations     []*Collaboration
	ProductionAccounts []ProductionAccount
	Problems           []Problem
}

// Sort puts every list in a stable order so that plans and files do not
// depend on the order the server returned entries in.
func (s *Snapshot) Sort() {
	// Ties (two entries of one name: a rule violation) go by DN, so the
	// order is total. A sorted list is not touched: the live model keeps
	// its lists sorted between snapshots (sorting 100k collaborations
	// anyway was a tenth of a change's time at 100k users).
	if sortIfNot(s.Users, func(i, j int) bool {
		a, b := s.Users[i], s.Users[j]
		return a.UID < b.UID || a.UID == b.UID && a.DN < b.DN
	}) {
		s.UIDKeys = UIDKeys{} // of another order
	}
	s.SortSharedUsers()
}

// SortSharedUsers is Sort for a snapshot whose users are a list sorted
// before and shared (the live model's, between user changes): they are
// not checked again (at 1M users the check alone was 30 ms a change).
func (s *Snapshot) SortSharedUsers() {
	sortIfNot(s.Collaborations, func(i, j int) bool {
		a, b := s.Collaborations[i], s.Collaborations[j]
		return a.Name < b.Name || a.Name == b.Name && a.DN < b.DN
	})
	sortIfNot(s.ProductionAccounts, func(i, j int) bool {
		a, b := &s.ProductionAccounts[i], &s.ProductionAccounts[j]
		return a.Name < b.Name || a.Name == b.Name && a.DN < b.DN
	})
	sortIfNot(s.Problems, func(i, j int) bool {
		a, b := s.Problems[i], s.Problems[j]
		if a.DN != b.DN {
			return a.DN < b.DN
		}
		if a.Reason != b.Reason {
			return a.Reason < b.Reason
		}
		return !a.Reference && b.Reference
	})
}

// sortIfNot sorts a list that is not sorted already (the check compares
// neighbours by index, copying no entry), and says whether it did.
func sortIfNot(list any, less func(i, j int) bool) (sorted bool) {
	if sort.SliceIsSorted(list, less) {
		return false
	}
	sort.Slice(list, less)
	return true
}
