package directory

import (
	"reflect"
	"testing"
)

// TestJournalForgetsWholeRuns: past its limit the journal forgets its
// oldest runs whole, and a state from before them is compared with none.
func TestJournalForgetsWholeRuns(t *testing.T) {
	j := &journal{after: 10, limit: 5}
	j.add(11, []int32{5, 1}, nil, nil)
	j.add(12, []int32{1}, []int32{3, 3}, nil)
	if ch, ok := j.since(10, 12); !ok || !reflect.DeepEqual(ch, Changed{Users: []int{1, 5}, Collaborations: []int{3}}) {
		t.Fatalf("since 10: %+v %v", ch, ok)
	}
	if ch, ok := j.since(11, 11); !ok || ch.Users != nil {
		t.Fatalf("since 11 up to 11: %+v %v", ch, ok)
	}
	j.add(13, nil, nil, []int32{0, 2}) // 7 entries: run 11 forgotten (the older half, whole runs)
	if _, ok := j.since(10, 13); ok {
		t.Fatalf("since 10 after run 11 was forgotten: ok")
	}
	if ch, ok := j.since(11, 13); !ok || !reflect.DeepEqual(ch, Changed{Users: []int{1}, Collaborations: []int{3}, ProductionAccounts: []int{0, 2}}) {
		t.Fatalf("since 11: %+v %v", ch, ok)
	}
	if ch, ok := j.since(12, 13); !ok || !reflect.DeepEqual(ch, Changed{ProductionAccounts: []int{0, 2}}) {
		t.Fatalf("since 12: %+v %v", ch, ok)
	}
}
