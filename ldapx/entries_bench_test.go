package ldapx

import (
	"fmt"
	"testing"

	"github.com/collabsync/collabsync/internal/directory"
)

// bigEntries is a mapped directory of n users and c collaborations (two
// memberships per user, memberUid), keyed as a live model keys them.
func bigEntries(n, c int) Entries {
	users := make(map[string]*Mapped, n)
	members := make([][]string, c)
	for i := range n {
		uid := fmt.Sprintf("u%06d", i)
		dn := "uid=" + uid + ",ou=people,dc=example,dc=org"
		users[fmt.Sprintf("uuid-u-%d", i)] = &Mapped{DN: dn, User: &rawUser{User: directory.User{DN: dn, UID: uid,
			UIDNumber: uint32(100000 + i), GIDNumber: uint32(200000 + i%c), Name: "User " + uid, Mail: uid + "@example.org",
			Home: "/home/" + uid, Shell: "/bin/bash"}}}
		members[i%c] = append(members[i%c], uid)
		members[(i+c/2+1)%c] = append(members[(i+c/2+1)%c], uid)
	}
	collabs := make(map[string]*Mapped, c)
	for j := range c {
		name := fmt.Sprintf("c%05d", j)
		dn := "cn=" + name + ",ou=groups,dc=example,dc=org"
		collabs[fmt.Sprintf("uuid-c-%d", j)] = &Mapped{DN: dn, NormDN: dn, Collaboration: &rawCollaboration{
			Collaboration: directory.Collaboration{DN: dn, Name: name, GIDNumber: uint32(200000 + j), Kind: directory.KindScientific,
				Status: directory.StatusActive}, MemberValues: members[j], ContactValues: map[directory.Role][]string{}}}
	}
	return Entries{StreamUsers: users, StreamCollaborations: collabs}
}

// BenchmarkResolve100k: turning the live model into a snapshot, which every
// change costs.
func BenchmarkResolve100k(b *testing.B) {
	e := bigEntries(100000, 10000)
	b.ReportAllocs()
	for b.Loop() {
		Resolve(e)
	}
}
