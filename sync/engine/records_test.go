package engine

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRecordsPatchedAsDiffed: random desires against random records,
// patch after patch (past the share where patches are merged into a new
// list): the changes are Diff's against the desired state made whole,
// and the patched records that state.
func TestRecordsPatchedAsDiffed(t *testing.T) {
	merged := 0
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 1))
		want := map[Record]string{} // (kind, key) → value
		key := func() Record {
			return Record{Kind: []string{"group", "passwd"}[r.IntN(2)], Key: fmt.Sprintf("k%04d", r.IntN(1500))}
		}
		for range r.IntN(1000) {
			want[key()] = fmt.Sprint("v", r.IntN(3))
		}
		recs := RecordsOf(asList(want))
		for step := range 120 {
			var desires []Desire
			next := maps.Clone(want)
			for range r.IntN(60) {
				k := key()
				if _, twice := next[k]; twice && r.IntN(2) == 0 {
					continue
				}
				d := Desire{Record: Record{Kind: k.Kind, Key: k.Key, Value: fmt.Sprint("v", r.IntN(3))}, Gone: r.IntN(3) == 0}
				if slices.ContainsFunc(desires, func(o Desire) bool { return o.Kind == k.Kind && o.Key == k.Key }) {
					continue
				}
				desires = append(desires, d)
				if d.Gone {
					delete(next, k)
				} else {
					next[k] = d.Value
				}
			}
			got, err := recs.ChangesTo(desires)
			if err != nil {
				t.Fatal(err)
			}
			wantChanges, err := Diff(asList(want), asList(next))
			if err != nil {
				t.Fatal(err)
			}
			if wantChanges == nil {
				wantChanges = []Change{}
			}
			if !slices.Equal(got, wantChanges) {
				t.Fatalf("seed %d step %d: changes\n%v\nwant\n%v", seed, step, got, wantChanges)
			}
			before := len(recs.over)
			recs, want = recs.Patch(got), next
			if len(recs.over) < before {
				merged++
			}
			if l := asList(want); !slices.Equal(recs.Slice(), l) || recs.Len() != len(l) {
				t.Fatalf("seed %d step %d: patched records\n%v (%d)\nwant\n%v", seed, step, recs.Slice(), recs.Len(), l)
			}
			for rec := range recs.All() {
				if r.IntN(10) > 0 {
					continue
				}
				if f, ok := recs.find(rec.Kind, rec.Key); !ok || f != rec {
					t.Fatalf("seed %d step %d: find %v: %v %v", seed, step, rec, f, ok)
				}
			}
		}
	}
	if merged == 0 {
		t.Error("the patches were never merged into a new list")
	}
}

// asList is the records of a map, in order.
func asList(m map[Record]string) []Record {
	out := make([]Record, 0, len(m))
	for k, v := range m {
		out = append(out, Record{Kind: k.Kind, Key: k.Key, Value: v})
	}
	slices.SortFunc(out, compareRecords)
	return out
}

func TestRecordsChangesToRefusesAKeyTwice(t *testing.T) {
	_, err := RecordsOf(nil).ChangesTo([]Desire{{Record: Record{Kind: "passwd", Key: "a"}}, {Record: Record{Kind: "passwd", Key: "a"}, Gone: true}})
	if err == nil {
		t.Fatal("a key desired twice: no error")
	}
	held := RecordsOf([]Record{{"passwd", "a", "x"}})
	if _, err := held.ChangesTo([]Desire{{Record: Record{Kind: "passwd", Key: "a", Value: "y"}, New: true}}); err == nil {
		t.Fatal("a new record of a key held (another's): no error")
	}
	if c, err := held.ChangesTo([]Desire{{Record: Record{Kind: "passwd", Key: "b", Value: "y"}, New: true}}); err != nil || len(c) != 1 || c[0].Op != OpAdd {
		t.Fatalf("a new record of a key not held: %v %v", c, err)
	}
}

func TestRecordsOf(t *testing.T) {
	list := []Record{{"passwd", "b", "1"}, {"group", "a", "2"}}
	r := RecordsOf(list)
	if got := r.Slice(); !slices.Equal(got, []Record{{"group", "a", "2"}, {"passwd", "b", "1"}}) || r.Len() != 2 || r.dups {
		t.Fatalf("RecordsOf(unsorted) = %v", got)
	}
	if list[0].Kind != "passwd" {
		t.Fatal("RecordsOf sorted its argument in place")
	}
	if !RecordsOf([]Record{{"group", "a", "1"}, {"group", "a", "2"}}).dups {
		t.Fatal("a key twice not seen")
	}
	for range RecordsOf(list).All() {
		break // an iterator going on after this panics
	}
}

func TestScan(t *testing.T) {
	a, b, c := Record{"group", "a", "1"}, Record{"group", "b", "1"}, Record{"passwd", "a", "1"}
	for _, tt := range []struct {
		recs          []Record
		inOrder, dups bool
	}{
		{nil, true, false},
		{[]Record{a, b, c}, true, false},
		{[]Record{a, a, b, c, c}, true, true},
		{[]Record{b, a}, false, false},
		{[]Record{a, a, c, b}, false, true}, // out of order: dups as far as seen
	} {
		if inOrder, dups := scan(tt.recs); inOrder != tt.inOrder || dups && !tt.dups || tt.inOrder && dups != tt.dups {
			t.Errorf("scan(%v) = %v, %v; want %v, %v", tt.recs, inOrder, dups, tt.inOrder, tt.dups)
		}
	}
	// Out of order with a key twice apart: found once sorted.
	if r := RecordsOf([]Record{a, c, a}); !r.dups || !slices.Equal(r.Slice(), []Record{a, a, c}) {
		t.Errorf("RecordsOf(a, c, a) = %v, dups %v", r.Slice(), r.dups)
	}
	if _, err := Diff(nil, []Record{a, c, a}); err == nil {
		t.Error("Diff of a key desired twice, apart: no error")
	}
}
