package directory

import (
	"fmt"
	"testing"
)

// bigSnapshot is a synthetic centre shaped like gendir's: every user in two
// collaborations, every collaboration with a contact.
func bigSnapshot(users, collabs int) *Snapshot {
	s := &Snapshot{}
	for i := 0; i < users; i++ {
		uid := fmt.Sprintf("u%06d", i)
		s.Users = append(s.Users, &User{DN: "uid=" + uid + ",ou=people,dc=example,dc=org", UID: uid,
			UIDNumber: uint32(100000 + i), GIDNumber: 200000, Mail: uid + "@example.org"})
	}
	members := make([][]string, collabs)
	for i := 0; i < users; i++ {
		members[i%collabs] = append(members[i%collabs], s.Users[i].UID)
		members[(i+1)%collabs] = append(members[(i+1)%collabs], s.Users[i].UID)
	}
	for j := 0; j < collabs; j++ {
		name := fmt.Sprintf("c%05d", j)
		s.Collaborations = append(s.Collaborations, Collaboration{DN: "cn=" + name + ",ou=groups,dc=example,dc=org", Name: name,
			GIDNumber: uint32(200000 + j), Members: members[j], Kind: KindScientific, Status: StatusActive,
			Contacts: map[Role][]string{RoleCollaboration: {members[j][0]}}})
	}
	return s
}

// BenchmarkEvaluate100k: the account rules over 100k users and 10k
// collaborations (docs/BENCHMARKS.md compares it with the LDAP read).
func BenchmarkEvaluate100k(b *testing.B) {
	snap := bigSnapshot(100_000, 10_000)
	p := basePolicy()
	p.MemberDomains, p.AcceptedDomains = []string{"example.org"}, []string{"partner.example.net"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := Evaluate(snap, p, nil); len(st.Users) != 100_000 {
			b.Fatal("wrong size")
		}
	}
}
