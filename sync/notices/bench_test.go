package notices

import (
	"fmt"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/sync/engine"
)

// BenchmarkDesired100k: the notices of 100k active users in 10k
// collaborations (each with a contact and a review a year ahead), as
// every run under serve computes them.
func BenchmarkDesired100k(b *testing.B) {
	const users, collabs = 100_000, 10_000
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var us []*directory.User
	for i := range users {
		uid := fmt.Sprintf("u%06d", i)
		us = append(us, &directory.User{UID: uid, Name: "User " + uid, Mail: uid + "@example.org", Home: "/home/" + uid, Shell: "/bin/bash",
			UIDNumber: uint32(100000 + i), GIDNumber: 100})
	}
	members := make([][]string, collabs)
	for i := range users {
		members[i%collabs] = append(members[i%collabs], us[i].UID)
	}
	var cs []directory.Collaboration
	for j := range collabs {
		cs = append(cs, directory.Collaboration{Name: fmt.Sprintf("c%05d", j), Members: members[j], ReviewedUntil: now.AddDate(1, 0, 0),
			Contacts: map[directory.Role][]string{directory.RoleCollaboration: {members[j][0]}}})
	}
	st := directorytest.Centre(now, us, cs)
	s := Kind().NewSettings().(*Settings)
	s.From = "collabsync@example.org"
	tg := New("mail", s, engine.Env{})
	tg.now = func() time.Time { return now }
	b.ReportAllocs()
	b.ResetTimer()
	var recs []engine.Record
	for range b.N {
		var err error
		if recs, err = tg.Desired(st); err != nil {
			b.Fatal(err)
		}
	}
	bytes := 0
	for _, r := range recs {
		bytes += len(r.Key) + len(r.Value)
	}
	b.ReportMetric(float64(len(recs)), "notices")
	b.ReportMetric(float64(bytes)/(1<<20), "MiB_of_records")
}
