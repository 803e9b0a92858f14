package mailman

import (
	"slices"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/sync/engine"
)

// BenchmarkPlanChange: a mailman target's plan for one membership change
// (an active user joining or leaving a small collaboration) on a heavy-tailed
// centre of 100k users and 10k collaborations (a list each, and the
// all-users and contacts lists: 490k records), as serve makes it: whole
// (every list's members found and diffed with the records held) and by
// difference (the changed collaboration's list found for both states,
// the records held patched).
func BenchmarkPlanChange(b *testing.B) {
	snap := directorytest.Heavy(100_000, 10_000)
	pol := directorytest.Policy(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	pol.MemberDomains = []string{"example.org"}
	ci := len(snap.Collaborations) - 1
	c := snap.Collaborations[ci]
	var uid string // active already: a member of the largest collaboration
	for _, m := range slices.Backward(snap.Collaborations[0].Members) {
		if _, in := slices.BinarySearch(c.Members, m); !in {
			uid = m
			break
		}
	}
	with := *c
	with.Members = slices.Clone(c.Members)
	j, _ := slices.BinarySearch(with.Members, uid)
	with.Members = slices.Insert(with.Members, j, uid)
	for _, mode := range []string{"whole", "difference"} {
		b.Run(mode, func(b *testing.B) {
			s := Kind().NewSettings().(*Settings)
			s.URL, s.Domain, s.AllUsers, s.Contacts = "http://127.0.0.1:1", "lists.example.org", "hpc-users", "hpc-contacts"
			tg := New("lists", s, engine.Env{})
			ev := &directory.Evaluator{}
			st := ev.Evaluate(snap, pol, nil)
			recs, err := tg.Desired(st)
			if err != nil {
				b.Fatal(err)
			}
			held := engine.RecordsOf(recs)
			b.ReportMetric(float64(len(recs)), "records")
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				next := &directory.Snapshot{Users: snap.Users, Collaborations: slices.Clone(snap.Collaborations),
					ProductionAccounts: snap.ProductionAccounts}
				if n%2 == 0 {
					next.Collaborations[ci] = &with
				}
				to := ev.Evaluate(next, pol, st.Statuses())
				b.StartTimer()
				var changes []engine.Change
				if mode == "whole" {
					desired, err := tg.Desired(to)
					if err != nil {
						b.Fatal(err)
					}
					p, err := engine.NewPlan("lists", held.Slice(), desired)
					if err != nil {
						b.Fatal(err)
					}
					changes, held = p.Changes, p.Desired
				} else {
					desires, ok, err := tg.DesiredSince(st, to)
					if err != nil || !ok {
						b.Fatalf("DesiredSince: %v %v", ok, err)
					}
					if changes, err = held.ChangesTo(desires); err != nil {
						b.Fatal(err)
					}
					held = held.Patch(changes)
				}
				b.StopTimer()
				if len(changes) != 1 {
					b.Fatalf("%d changes, want 1 subscription: %v", len(changes), changes)
				}
				st = to
			}
		})
	}
}
