package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func rec(kind, key, value string) Record { return Record{Kind: kind, Key: key, Value: value} }

func TestDiff(t *testing.T) {
	tests := []struct {
		name             string
		current, desired []Record
		want             []Change
		err              string
	}{
		{name: "nothing", want: nil},
		{name: "same", current: []Record{rec("passwd", "a", "1")}, desired: []Record{rec("passwd", "a", "1")}, want: nil},
		{name: "add modify delete, ordered by kind then key",
			current: []Record{rec("passwd", "z", "1"), rec("passwd", "b", "1"), rec("group", "g", "x")},
			desired: []Record{rec("passwd", "b", "2"), rec("passwd", "a", "1"), rec("group", "g", "x")},
			want: []Change{
				{Op: OpAdd, Kind: "passwd", Key: "a", New: "1"},
				{Op: OpModify, Kind: "passwd", Key: "b", Old: "1", New: "2"},
				{Op: OpDelete, Kind: "passwd", Key: "z", Old: "1"},
			}},
		{name: "same key, different kinds are different records",
			current: []Record{rec("passwd", "a", "1")}, desired: []Record{rec("group", "a", "1")},
			want: []Change{{Op: OpAdd, Kind: "group", Key: "a", New: "1"}, {Op: OpDelete, Kind: "passwd", Key: "a", Old: "1"}}},
		{name: "duplicate current lines are not deleted twice",
			current: []Record{rec("passwd", "a", "1"), rec("passwd", "a", "2")}, desired: []Record{rec("passwd", "a", "1")}, want: nil},
		{name: "duplicate desired is an error",
			desired: []Record{rec("passwd", "a", "1"), rec("passwd", "a", "2")}, err: `passwd "a" twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Diff(tt.current, tt.desired)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestGuard(t *testing.T) {
	g := Guard{MaxDeleteRatio: 0.2, MinDeletes: 3}
	deletes := func(n int) []Change {
		out := make([]Change, n)
		for i := range out {
			out[i].Op = OpDelete
		}
		return out
	}
	tests := []struct {
		name     string
		plan     Plan
		approved bool
		refused  string
	}{
		{name: "emptying a target is refused", plan: Plan{Current: 5, Changes: deletes(5)}, refused: "desired state is empty"},
		{name: "emptying is refused even when approved", plan: Plan{Current: 5, Changes: deletes(5)}, approved: true, refused: "desired state is empty"},
		{name: "empty target stays empty", plan: Plan{Current: 0}},
		{name: "few deletions pass", plan: Plan{Current: 4, Changes: deletes(2), Desired: RecordsOf(make([]Record, 2))}},
		{name: "many deletions beyond ratio are held", plan: Plan{Current: 10, Changes: deletes(3), Desired: RecordsOf(make([]Record, 7))}, refused: "would delete 3 of 10"},
		{name: "approval lets them through", plan: Plan{Current: 10, Changes: deletes(3), Desired: RecordsOf(make([]Record, 7))}, approved: true},
		{name: "within ratio", plan: Plan{Current: 100, Changes: deletes(20), Desired: RecordsOf(make([]Record, 80))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.plan
			g.Check(&p, tt.approved)
			if tt.refused == "" && p.Refused != "" || tt.refused != "" && !strings.Contains(p.Refused, tt.refused) {
				t.Errorf("refused = %q, want %q", p.Refused, tt.refused)
			}
		})
	}
}

// TestDiffAgreesWithIndex: the merge gives exactly what comparing through
// an index gives, on random record lists in any order, with duplicate
// current records.
func TestDiffAgreesWithIndex(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, dup bool) []Record {
		var out []Record
		seen := map[string]bool{}
		for len(out) < n {
			r := rec([]string{"group", "passwd"}[rnd.IntN(2)], fmt.Sprint(rnd.IntN(3*n+1)), fmt.Sprint(rnd.IntN(3)))
			if !dup && seen[r.Kind+"/"+r.Key] {
				continue
			}
			seen[r.Kind+"/"+r.Key] = true
			out = append(out, r)
		}
		return out
	}
	for round := 0; round < 500; round++ {
		current, desired := gen(rnd.IntN(40), true), gen(rnd.IntN(40), false)
		if round%2 == 0 {
			slices.SortFunc(desired, compareRecords)
		}
		got, err := Diff(current, desired)
		if err != nil {
			t.Fatal(err)
		}
		if want := indexDiff(current, desired); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d:\ncurrent %v\ndesired %v\ngot  %v\nwant %v", round, current, desired, got, want)
		}
	}
}

// indexDiff is Diff as a map would do it: the reference.
func indexDiff(current, desired []Record) []Change {
	want := map[string]Record{}
	for _, r := range desired {
		want[r.Kind+"\x00"+r.Key] = r
	}
	var out []Change
	have := map[string]bool{}
	for _, r := range current {
		k := r.Kind + "\x00" + r.Key
		if have[k] {
			continue
		}
		have[k] = true
		d, ok := want[k]
		switch {
		case !ok:
			out = append(out, Change{Op: OpDelete, Kind: r.Kind, Key: r.Key, Old: r.Value})
		case d.Value != r.Value:
			out = append(out, Change{Op: OpModify, Kind: r.Kind, Key: r.Key, Old: r.Value, New: d.Value})
		}
	}
	for _, r := range desired {
		if !have[r.Kind+"\x00"+r.Key] {
			out = append(out, Change{Op: OpAdd, Kind: r.Kind, Key: r.Key, New: r.Value})
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		return compareRecords(Record{Kind: a.Kind, Key: a.Key}, Record{Kind: b.Kind, Key: b.Key})
	})
	return out
}

// TestGuardGroups: one list losing most of its members is held although
// the target as a whole loses a small share.
func TestGuardGroups(t *testing.T) {
	g := Guard{MaxDeleteRatio: 0.2, MinDeletes: 3}
	var current []Record
	member := func(list string, i int) Record { return Record{Kind: "member", Key: fmt.Sprintf("%s u%02d", list, i)} }
	for i := range 100 {
		current = append(current, member("big", i))
	}
	for i := range 5 {
		current = append(current, member("small", i))
	}
	group := func(r Record) string { list, _, _ := strings.Cut(r.Key, " "); return list }
	del := func(list string, n int) []Change {
		var out []Change
		for i := range n {
			out = append(out, Change{Op: OpDelete, Kind: "member", Key: member(list, i).Key})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		changes  []Change
		approved bool
		refused  string
	}{
		{"a list emptied", del("small", 4), false, "would delete 4 of 5 records of small"},
		{"approved", del("small", 4), true, ""},
		{"below the minimum", del("small", 2), false, ""},
		{"within the list's ratio", del("big", 15), false, ""},
		{"beyond it", del("big", 21), false, "of big"},
	} {
		p := &Plan{Current: len(current), Changes: tc.changes}
		g.CheckGroups(p, current, group, tc.approved)
		if tc.refused == "" && p.Refused != "" || tc.refused != "" && !strings.Contains(p.Refused, tc.refused) {
			t.Errorf("%s: refused = %q, want %q", tc.name, p.Refused, tc.refused)
		}
	}
}

// TestDigestStable: a plan's digest is the one earlier versions computed
// (approvals are stored by it), for fields with separators, newlines and
// multi-byte text.
func TestDigestStable(t *testing.T) {
	changes := []Change{
		{Op: OpAdd, Kind: "passwd", Key: "alice", New: "alice:x:1:1::/home/alice:/bin/sh"},
		{Op: OpModify, Kind: "group", Key: "atlas", Old: "atlas:x:2:", New: "atlas:x:2:bob,\x00élodie\n"},
		{Op: OpDelete, Kind: "passwd", Key: "", Old: ""},
	}
	h := sha256.New()
	h.Write([]byte("nss"))
	for _, c := range changes {
		for _, f := range []string{string(c.Op), c.Kind, c.Key, c.Old, c.New} {
			fmt.Fprintf(h, "\x00%d:%s", len(f), f)
		}
	}
	if got, want := digest("nss", changes), hex.EncodeToString(h.Sum(nil))[:16]; got != want {
		t.Errorf("digest %s, want %s", got, want)
	}
}
