// Package directorytest builds evaluated directory states for tests.
package directorytest

import (
	"regexp"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
)

// Policy is the tests' centre: the affiliation "staff" belongs to a
// member institution, production accounts are <collaboration>_<label>.
func Policy(now time.Time) directory.Policy {
	return directory.Policy{Now: now, MemberAffiliations: []string{"staff"}, ProductionSeparator: "_",
		ProductionLabel: regexp.MustCompile(`^[a-z0-9]{1,16}$`)}
}

// Centre fills what users and collaborations leave unset — DNs, numbers
// in order (users from 10000 with gid 100, collaborations from 20000),
// the staff affiliation, the scientific kind, the active status — and
// evaluates them with Policy(now): every user is internal, so active
// while in an active collaboration.
func Centre(now time.Time, users []*directory.User, collabs []directory.Collaboration) *directory.State {
	for i, u := range users {
		if u.DN == "" {
			u.DN = "uid=" + u.UID + ",ou=people"
		}
		if u.UIDNumber == 0 {
			u.UIDNumber = uint32(10000 + i)
		}
		if u.GIDNumber == 0 {
			u.GIDNumber = 100
		}
		if u.Affiliation == "" {
			u.Affiliation = "staff"
		}
	}
	for i := range collabs {
		c := &collabs[i]
		if c.DN == "" {
			c.DN = "cn=" + c.Name + ",ou=groups"
		}
		if c.GIDNumber == 0 {
			c.GIDNumber = uint32(20000 + i)
		}
		if c.Kind == "" {
			c.Kind = directory.KindScientific
		}
		if c.Status == "" {
			c.Status = directory.StatusActive
		}
	}
	return directory.Evaluate(&directory.Snapshot{Users: users, Collaborations: directory.CollaborationsOf(collabs...)}, Policy(now), nil)
}

// Heavy is a centre shaped like gendir's heavy tail: the largest
// collaboration a fifth of the users, sizes falling as a power of their
// rank, four memberships per user on average, members in uid order.
func Heavy(users, collabs int) *directory.Snapshot {
	s := &directory.Snapshot{}
	for i := range users {
		uid := gendir.UID(i)
		s.Users = append(s.Users, &directory.User{DN: "uid=" + uid + ",ou=people,dc=example,dc=org", UID: uid,
			UIDNumber: uint32(100000 + i), GIDNumber: 200000, Mail: uid + "@example.org"})
	}
	for j, size := range gendir.HeavyTailSizes(users, collabs, 4) {
		name := gendir.Collab(j)
		step := max(1, users/size)
		members := make([]string, 0, size)
		for i, n := j%step, 0; i < users && n < size; i, n = i+step, n+1 {
			members = append(members, s.Users[i].UID)
		}
		s.Collaborations = append(s.Collaborations, &directory.Collaboration{DN: "cn=" + name + ",ou=groups,dc=example,dc=org", Name: name,
			GIDNumber: uint32(200000 + j), Members: members, Kind: directory.KindScientific, Status: directory.StatusActive,
			Contacts: map[directory.Role][]string{directory.RoleCollaboration: {members[0]}}})
	}
	return s
}
