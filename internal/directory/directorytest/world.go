package directorytest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// World is a random centre property tests change step by step, the
// way the live model makes snapshots: an unchanged user is the same
// pointer, an unchanged collaboration the same members and contacts.
type World struct {
	R    *rand.Rand
	Snap *directory.Snapshot
	Pol  directory.Policy
	next int // names of new entries
}

var roles = []directory.Role{directory.RoleCollaboration, directory.RoleValidator, directory.RoleComputing}

// NewWorld makes a centre from a seed.
func NewWorld(seed uint64) *World {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &World{R: r, Snap: &directory.Snapshot{}}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	w.Pol = directory.Policy{Now: now, ReviewGrace: 30 * 24 * time.Hour, ReviewWarning: 14 * 24 * time.Hour, ReviewTracked: r.IntN(2) == 0,
		MemberDomains: []string{"cern.ch"}, AcceptedDomains: []string{"partner.org"}, ProductionSeparator: "_",
		ProductionLabel: regexp.MustCompile(`^[a-z]+$`), UIDRange: &directory.IDRange{Min: 1000, Max: 60000}, GIDRange: &directory.IDRange{Min: 1000, Max: 60000},
		Reserved: &directory.Reserved{Names: map[string]string{"root": "/etc/passwd"}, UIDs: map[uint32]string{}, GIDs: map[uint32]string{1027: "sudo"}},
		Actions:  map[directory.ViolationKind]directory.Action{}}
	// Holds make subjects depend on the history: each kind's action at random.
	for _, k := range []directory.ViolationKind{directory.KindDuplicateName, directory.KindDuplicateID, directory.KindMailDomain, directory.KindUnvalidatedExternal, directory.KindNoCollabContact, directory.KindMultipleAdmin} {
		w.Pol.Actions[k] = []directory.Action{directory.ActionExclude, directory.ActionHold, directory.ActionReport}[r.IntN(3)]
	}
	nUsers, nCollabs := 20+r.IntN(40), 4+r.IntN(10)
	for range nUsers {
		w.Snap.Users = append(w.Snap.Users, w.newUser())
	}
	for range nCollabs {
		w.Snap.Collaborations = append(w.Snap.Collaborations, w.newCollab())
	}
	for range r.IntN(5) {
		w.Snap.ProductionAccounts = append(w.Snap.ProductionAccounts, w.newProduction())
	}
	if r.IntN(3) == 0 {
		w.Snap.Problems = []directory.Problem{{DN: "cn=broken,dc=x", Reason: "malformed"}, {DN: "cn=c00,ou=groups,dc=x", Reason: "member gone", Reference: true}}
	}
	w.Snap.Sort()
	return w
}

func (w *World) name(prefix string) string {
	w.next++
	n := fmt.Sprintf("%s%02d", prefix, w.next)
	switch w.R.IntN(25) {
	case 0:
		return "root"
	case 1:
		return "U" + n[1:] // differs from another only in case, sometimes
	case 2:
		return "c01" // a user or production account named as a collaboration
	}
	return n
}

func (w *World) newUser() *directory.User {
	r := w.R
	uid := w.name("u")
	u := &directory.User{DN: fmt.Sprintf("uid=%s,ou=people%d,dc=x", uid, w.next), UID: uid, UIDNumber: uint32(2000 + r.IntN(60)), GIDNumber: uint32(5000 + r.IntN(12)),
		Mail: uid + []string{"@cern.ch", "@partner.org", "@gmail.com", ""}[r.IntN(4)]}
	if r.IntN(8) == 0 {
		u.UIDNumber = 0
	}
	w.editUser(u)
	if r.IntN(3) == 0 {
		u.PrivateGroup = []string{uid, "shared", "c02"}[r.IntN(3)]
	}
	return u
}

// editUser changes what a user's DN, uid and numbers are not.
func (w *World) editUser(u *directory.User) {
	r := w.R
	switch r.IntN(6) {
	case 0:
		u.Suspended = !u.Suspended
	case 1:
		u.Mail = u.UID + []string{"@cern.ch", "@partner.org", "@gmail.com"}[r.IntN(3)]
	case 2:
		u.ValidatedBy = fmt.Sprintf("u%02d", 1+r.IntN(w.next+1))
	case 3:
		u.Expires = w.Pol.Now.Add(time.Duration(r.IntN(96)-24) * time.Hour).Unix()
	case 4:
		u.Affiliation = []string{"", "CERN"}[r.IntN(2)]
	case 5:
		u.Name = fmt.Sprint("directory.User ", r.IntN(100))
	}
}

func (w *World) newCollab() *directory.Collaboration {
	name := w.name("c")
	c := directory.Collaboration{DN: fmt.Sprintf("cn=%s,ou=groups%d,dc=x", name, w.next), Name: name, GIDNumber: uint32(5000 + w.R.IntN(14)), Kind: directory.KindScientific}
	if w.R.IntN(9) == 0 {
		c.GIDNumber = 1027
	}
	for _, u := range w.Snap.Users {
		if w.R.IntN(4) == 0 {
			c.Members = append(c.Members, u.UID)
		}
	}
	slices.Sort(c.Members)
	c.Members = slices.Compact(c.Members)
	c.Contacts = map[directory.Role][]string{}
	for range 4 {
		w.editCollab(&c)
	}
	return &c
}

// editCollab changes what a collaboration's name, DN and gid are not.
func (w *World) editCollab(c *directory.Collaboration) {
	r := w.R
	someone := func() string {
		if len(w.Snap.Users) == 0 {
			return "nobody"
		}
		return w.Snap.Users[r.IntN(len(w.Snap.Users))].UID
	}
	switch r.IntN(9) {
	case 0, 1, 2: // a member joins or leaves
		members := slices.Clone(c.Members)
		uid := someone()
		if i, ok := slices.BinarySearch(members, uid); ok {
			members = slices.Delete(members, i, i+1)
		} else {
			members = slices.Insert(members, i, uid)
		}
		c.Members = members
	case 3:
		c.Status = []directory.Status{"", directory.StatusActive, directory.StatusPending, directory.StatusSuspended, directory.StatusClosed}[r.IntN(5)]
	case 4:
		c.Kind = []directory.CollaborationKind{directory.KindScientific, directory.KindAdministrative}[r.IntN(2)]
	case 5:
		c.ReviewedUntil = w.Pol.Now.Add(time.Duration(r.IntN(120)-60) * 24 * time.Hour)
		if r.IntN(4) == 0 {
			c.ReviewedUntil = time.Time{}
		}
	case 6, 7:
		contacts := map[directory.Role][]string{}
		for role, v := range c.Contacts {
			contacts[role] = v
		}
		role := roles[r.IntN(len(roles))]
		if r.IntN(3) == 0 {
			delete(contacts, role)
		} else {
			v := []string{someone(), someone()}
			slices.Sort(v)
			contacts[role] = slices.Compact(v)
		}
		c.Contacts = contacts
	case 8:
		c.Fairshare = r.IntN(100)
	}
}

func (w *World) newProduction() directory.ProductionAccount {
	r := w.R
	owner := fmt.Sprintf("c%02d", 1+r.IntN(w.next+1))
	p := directory.ProductionAccount{Name: owner + []string{"", "_robot", "_BAD", "-x"}[r.IntN(4)], UIDNumber: uint32(2000 + r.IntN(60)), GIDNumber: 5000}
	if r.IntN(2) == 0 {
		p.Collaboration = owner
	}
	p.DN = "cn=" + p.Name + fmt.Sprint(w.next) + ",ou=robots,dc=x"
	w.next++
	return p
}

// Step changes the centre one way and says how.
func (w *World) Step() (what string) {
	r := w.R
	old := w.Snap
	s := &directory.Snapshot{Users: old.Users, Collaborations: slices.Clone(old.Collaborations),
		ProductionAccounts: slices.Clone(old.ProductionAccounts), Problems: old.Problems}
	w.Snap = s
	defer s.Sort()
	switch k := r.IntN(100); {
	case k < 45 && len(s.Collaborations) > 0:
		for range 1 + r.IntN(2) {
			i := r.IntN(len(s.Collaborations))
			c := *s.Collaborations[i] // a new one, as the model resolves a changed entry
			w.editCollab(&c)
			s.Collaborations[i] = &c
		}
		return "collaboration"
	case k < 60 && len(s.Users) > 0:
		s.Users = slices.Clone(s.Users)
		i := r.IntN(len(s.Users))
		u := *s.Users[i]
		w.editUser(&u)
		s.Users[i] = &u
		return "user"
	case k < 65:
		s.Users = slices.Clone(s.Users)
		for i, u := range s.Users { // a copy of the same values
			c := *u
			s.Users[i] = &c
		}
		return "users copied"
	case k < 80:
		w.Pol.Now = w.Pol.Now.Add([]time.Duration{0, time.Minute, time.Hour, 20 * time.Hour, 9 * 24 * time.Hour}[r.IntN(5)])
		return "time"
	case k < 84:
		s.Users = append(slices.Clone(s.Users), w.newUser())
		return "user added"
	case k < 87 && len(s.Users) > 1:
		i := r.IntN(len(s.Users))
		s.Users = slices.Clip(slices.Delete(slices.Clone(s.Users), i, i+1))
		return "user removed"
	case k < 90:
		s.Collaborations = append(s.Collaborations, w.newCollab())
		return "collaboration added"
	case k < 92 && len(s.Collaborations) > 0:
		i := r.IntN(len(s.Collaborations))
		c := *s.Collaborations[i]
		c.GIDNumber = uint32(5000 + r.IntN(14))
		s.Collaborations[i] = &c
		return "gid changed"
	case k < 95:
		s.ProductionAccounts = append(s.ProductionAccounts, w.newProduction())
		return "production added"
	case k < 97:
		w.Pol.Actions = maps.Clone(w.Pol.Actions)
		w.Pol.Actions[directory.KindMailDomain] = []directory.Action{directory.ActionExclude, directory.ActionHold, directory.ActionReport}[r.IntN(3)]
		return "policy"
	default:
		s.Problems = append(slices.Clone(s.Problems), directory.Problem{DN: fmt.Sprintf("cn=p%d,dc=x", w.next), Reason: "bad"})
		w.next++
		return "problem"
	}
}
