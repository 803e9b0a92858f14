package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// TestRecordViolationsKeepsTheTable: runs of random violations (in order
// or not, a key several times or each once, reasons changed, violations
// gone, another process recording now and then): after each, what this process's cache
// lists is what the table holds for a process reading it afresh, each
// violation dated from when its key was first seen.
func TestRecordViolationsKeepsTheTable(t *testing.T) {
	ctx := context.Background()
	a, b, path := twoProcessesAt(t)
	rnd := rand.New(rand.NewPCG(7, 8))
	kinds := []directory.ViolationKind{directory.KindMailDomain, directory.KindNoCollabContact, directory.KindUnknownReference}
	firstSeen := map[string]time.Time{} // key → when the table first had it
	now := time.Unix(1_800_000_000, 0)
	for round := range 300 {
		now = now.Add(time.Minute)
		var vs []directory.Violation
		if round < 2 { // {A, B}, then {A, A}: B is gone though two are current
			vs = []directory.Violation{{Kind: kinds[0], Subject: "A"}, {Kind: kinds[0], Subject: []string{"B", "A"}[round]}}
		}
		for range rnd.IntN(30) * min(round, 1) {
			vs = append(vs, directory.Violation{Kind: kinds[rnd.IntN(len(kinds))], Subject: fmt.Sprintf("uid=u%d,dc=x", rnd.IntN(15)),
				Severity: directory.SeverityError, Reason: fmt.Sprint("reason ", rnd.IntN(3)), Action: directory.ActionReport})
		}
		if rnd.IntN(4) != 0 {
			slices.SortStableFunc(vs, func(x, y directory.Violation) int {
				if c := strings.Compare(string(x.Kind), string(y.Kind)); c != 0 {
					return c
				}
				return strings.Compare(x.Subject, y.Subject)
			})
			if round > 1 && rnd.IntN(2) == 0 {
				// Each key once, as a state holds them: the run is
				// compared with the list the process recorded last.
				vs = slices.CompactFunc(vs, func(x, y directory.Violation) bool { return x.Kind == y.Kind && x.Subject == y.Subject })
			}
		}
		who := a
		if rnd.IntN(6) == 0 {
			who = b // another process's run
		}
		if err := who.RecordViolations(ctx, vs, now); err != nil {
			t.Fatal(err)
		}
		current := map[string]bool{}
		for _, v := range vs {
			k := string(v.Kind) + " " + v.Subject
			current[k] = true
			if _, ok := firstSeen[k]; !ok {
				firstSeen[k] = now
			}
			if !v.Since.Equal(firstSeen[k]) {
				t.Fatalf("round %d: %s dated %v, first seen %v", round, k, v.Since, firstSeen[k])
			}
		}
		for k := range firstSeen {
			if !current[k] {
				delete(firstSeen, k) // gone: a new one is new again
			}
		}
		fresh, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Violations(ctx)
		fresh.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Violations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: the cache of a process lists\n%v\nthe table holds\n%v", round, got, want)
		}
		// Of several violations of one key, the last is the one stored.
		last := map[string]directory.Violation{}
		for _, v := range vs {
			last[string(v.Kind)+" "+v.Subject] = v
		}
		if len(want) != len(last) {
			t.Fatalf("round %d: the table holds %d violations, the run found %d:\n%v", round, len(want), len(last), want)
		}
		for _, w := range want {
			if l, ok := last[string(w.Kind)+" "+w.Subject]; !ok || l.Reason != w.Reason {
				t.Fatalf("round %d: %s %s stored with %q, the last of the run says %q", round, w.Kind, w.Subject, w.Reason, l.Reason)
			}
		}
	}
}
