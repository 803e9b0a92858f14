// Package gendir writes synthetic centre directories as LDIF, for
// benchmarks and large tests: users, collaborations, memberships. The same
// parameters always give the same bytes.
package gendir

import (
	"bufio"
	"fmt"
	"io"
	"math"
)

// Params size the directory.
type Params struct {
	Suffix         string // default dc=example,dc=org
	Users          int
	Collaborations int
	// MembersPerUser is how many collaborations each user joins (default 2).
	MembersPerUser int
	// MemberDN writes groupOfNames collaborations with member DNs instead of
	// posixGroup with memberUid.
	MemberDN bool
	// HeavyTail gives collaborations sizes that fall as a power of their
	// rank (Zipf-like): the largest holds a fifth of the users, a few
	// hold thousands to tens of thousands, most a handful; users join
	// MembersPerUser collaborations on average. Without it every
	// collaboration has the same size.
	HeavyTail bool
}

// UID is the uid of user i.
func UID(i int) string { return fmt.Sprintf("u%06d", i) }

// Collab is the name of collaboration j.
func Collab(j int) string { return fmt.Sprintf("c%05d", j) }

// Write writes the LDIF. Memory use does not depend on the sizes: the
// members of each collaboration are derived, not collected.
func Write(w io.Writer, p Params) error {
	if p.Suffix == "" {
		p.Suffix = "dc=example,dc=org"
	}
	if p.MembersPerUser == 0 {
		p.MembersPerUser = 2
	}
	if p.Collaborations == 0 {
		return fmt.Errorf("need at least one collaboration")
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintf(bw, "dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Generated Centre\n\n", p.Suffix)
	fmt.Fprintf(bw, "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n", p.Suffix)
	fmt.Fprintf(bw, "dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n", p.Suffix)
	for i := 0; i < p.Users; i++ {
		uid := UID(i)
		fmt.Fprintf(bw, "dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: %s\ncn: User %d\nsn: %d\nmail: %s@example.org\nuidNumber: %d\ngidNumber: %d\nhomeDirectory: /home/%s\nloginShell: /bin/bash\n\n",
			uid, p.Suffix, uid, i, i, uid, 100000+i, 200000+i%p.Collaborations, uid)
	}
	if p.HeavyTail {
		writeHeavyTail(bw, p)
		return bw.Flush()
	}
	// User i is a member of collaborations (i + k*stride) mod C for k < MembersPerUser;
	// so collaboration j's members are the users i with i ≡ j - k*stride (mod C).
	stride := p.Collaborations/p.MembersPerUser + 1
	for j := 0; j < p.Collaborations; j++ {
		name := Collab(j)
		if p.MemberDN {
			fmt.Fprintf(bw, "dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: %s\ngidNumber: %d\n", name, p.Suffix, name, 200000+j)
		} else {
			fmt.Fprintf(bw, "dn: cn=%s,ou=groups,%s\nobjectClass: posixGroup\ncn: %s\ngidNumber: %d\n", name, p.Suffix, name, 200000+j)
		}
		seen := map[int]bool{}
		for k := 0; k < p.MembersPerUser; k++ {
			start := ((j-k*stride)%p.Collaborations + p.Collaborations) % p.Collaborations
			for i := start; i < p.Users; i += p.Collaborations {
				if seen[i] {
					continue
				}
				seen[i] = true
				if p.MemberDN {
					fmt.Fprintf(bw, "member: uid=%s,ou=people,%s\n", UID(i), p.Suffix)
				} else {
					fmt.Fprintf(bw, "memberUid: %s\n", UID(i))
				}
			}
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// writeHeavyTail writes collaborations of sizes s_j = max(2, S/(j+1)^a),
// S a fifth of the users and a chosen so that the sizes sum to
// MembersPerUser per user. Collaboration j's members are every m-th user
// from j mod m, m = users/s_j: derived, not collected.
func writeHeavyTail(bw *bufio.Writer, p Params) {
	sizes := HeavyTailSizes(p.Users, p.Collaborations, p.MembersPerUser)
	for j, size := range sizes {
		name := Collab(j)
		if p.MemberDN {
			fmt.Fprintf(bw, "dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: %s\ngidNumber: %d\n", name, p.Suffix, name, 200000+j)
		} else {
			fmt.Fprintf(bw, "dn: cn=%s,ou=groups,%s\nobjectClass: posixGroup\ncn: %s\ngidNumber: %d\n", name, p.Suffix, name, 200000+j)
		}
		step := max(1, p.Users/size)
		for i, n := j%step, 0; i < p.Users && n < size; i, n = i+step, n+1 {
			if p.MemberDN {
				fmt.Fprintf(bw, "member: uid=%s,ou=people,%s\n", UID(i), p.Suffix)
			} else {
				fmt.Fprintf(bw, "memberUid: %s\n", UID(i))
			}
		}
		bw.WriteString("\n")
	}
}

// HeavyTailSizes are the collaborations' sizes, largest first.
func HeavyTailSizes(users, collabs, perUser int) []int {
	top := max(2, users/5)
	sizes := make([]int, collabs)
	fill := func(a float64) int {
		total := 0
		for j := range sizes {
			sizes[j] = min(users, max(2, int(float64(top)/math.Pow(float64(j+1), a))))
			total += sizes[j]
		}
		return total
	}
	lo, hi := 0.0, 4.0 // a larger exponent, fewer members
	for range 50 {
		mid := (lo + hi) / 2
		if fill(mid) > perUser*users {
			lo = mid
		} else {
			hi = mid
		}
	}
	fill(hi)
	return sizes
}
