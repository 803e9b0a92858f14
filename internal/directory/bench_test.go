package directory_test

import (
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
)

// benchPolicy is the benchmarks' centre: users of example.org internal.
func benchPolicy() directory.Policy {
	return directory.Policy{Now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), ReviewGrace: 30 * 24 * time.Hour, ReviewWarning: 30 * 24 * time.Hour,
		ProductionSeparator: "_", ProductionLabel: regexp.MustCompile(`^[a-z0-9]{1,16}$`), MemberDomains: []string{"example.org"}}
}

// bigSnapshot is a synthetic centre shaped like gendir's: every user in two
// collaborations, every collaboration with a contact.
func bigSnapshot(users, collabs int) *directory.Snapshot {
	s := &directory.Snapshot{}
	for i := 0; i < users; i++ {
		uid := fmt.Sprintf("u%06d", i)
		s.Users = append(s.Users, &directory.User{DN: "uid=" + uid + ",ou=people,dc=example,dc=org", UID: uid,
			UIDNumber: uint32(100000 + i), GIDNumber: 200000, Mail: uid + "@example.org"})
	}
	members := make([][]string, collabs)
	for i := 0; i < users; i++ {
		members[i%collabs] = append(members[i%collabs], s.Users[i].UID)
		members[(i+1)%collabs] = append(members[(i+1)%collabs], s.Users[i].UID)
	}
	for j := 0; j < collabs; j++ {
		name := fmt.Sprintf("c%05d", j)
		s.Collaborations = append(s.Collaborations, &directory.Collaboration{DN: "cn=" + name + ",ou=groups,dc=example,dc=org", Name: name,
			GIDNumber: uint32(200000 + j), Members: members[j], Kind: directory.KindScientific, Status: directory.StatusActive,
			Contacts: map[directory.Role][]string{directory.RoleCollaboration: {members[j][0]}}})
	}
	return s
}

// BenchmarkEvaluate100k: the account rules over 100k users and 10k
// collaborations (docs/BENCHMARKS.md compares it with the LDAP read).
func BenchmarkEvaluate100k(b *testing.B) {
	snap := bigSnapshot(100_000, 10_000)
	p := benchPolicy()
	p.AcceptedDomains = []string{"partner.example.net"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st := directory.Evaluate(snap, p, nil); len(st.Users) != 100_000 {
			b.Fatal("wrong size")
		}
	}
}

// BenchmarkEvaluateHeavy: the account rules over heavy-tailed centres of
// 100k users / 10k collaborations and 1M / 100k.
func BenchmarkEvaluateHeavy(b *testing.B) {
	for _, size := range []struct {
		name           string
		users, collabs int
	}{{"100k", 100_000, 10_000}, {"1M", 1_000_000, 100_000}} {
		b.Run(size.name, func(b *testing.B) {
			snap := directorytest.Heavy(size.users, size.collabs)
			// With uid keys, as every snapshot read from a directory.
			snap.Sort()
			snap.UIDKeys = directory.KeysOf(snap.Users)
			p := benchPolicy()
			b.ResetTimer()
			for range b.N {
				if st := directory.Evaluate(snap, p, nil); len(st.Users) != size.users {
					b.Fatal("wrong size")
				}
			}
		})
	}
}

// BenchmarkEvaluateChange: one membership change evaluated by an
// directory.Evaluator, in the largest collaboration (a fifth of the users) and in
// a small one, on the heavy-tailed centres; against the whole evaluation
// of the same snapshot (BenchmarkEvaluateHeavy).
func BenchmarkEvaluateChange(b *testing.B) {
	for _, size := range []struct {
		name           string
		users, collabs int
	}{{"100k", 100_000, 10_000}, {"1M", 1_000_000, 100_000}} {
		for _, which := range []struct {
			name string
			ci   int
		}{{"largest", 0}, {"small", size.collabs - 1}} {
			b.Run(size.name+"/"+which.name, func(b *testing.B) {
				snap := directorytest.Heavy(size.users, size.collabs)
				p := benchPolicy()
				ev := &directory.Evaluator{}
				ev.Evaluate(snap, p, nil)
				c := snap.Collaborations[which.ci]
				// A user the collaboration does not have: the last one
				// not in it.
				var uid string
				for i := len(snap.Users) - 1; i >= 0; i-- {
					if _, in := slices.BinarySearch(c.Members, snap.Users[i].UID); !in {
						uid = snap.Users[i].UID
						break
					}
				}
				with := slices.Clone(c.Members)
				j, _ := slices.BinarySearch(with, uid)
				with = slices.Insert(with, j, uid)
				b.ReportAllocs()
				b.ResetTimer()
				for n := range b.N {
					next := &directory.Snapshot{Users: snap.Users, Collaborations: slices.Clone(snap.Collaborations),
						ProductionAccounts: snap.ProductionAccounts, Problems: snap.Problems}
					if n%2 == 0 {
						next.Collaborations[which.ci].Members = with
					}
					st := ev.Evaluate(next, p, nil)
					if len(st.Users) != size.users {
						b.Fatal("wrong size")
					}
				}
				b.StopTimer()
				if s := ev.Stats(); s.Whole != 1 {
					b.Fatalf("%d whole evaluations (%s)", s.Whole, s.Why)
				}
			})
		}
	}
}
