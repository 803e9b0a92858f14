package accounting

import (
	"slices"
	"testing"

	"github.com/collabsync/collabsync/internal/directory"
)

// TestAttributorUnchanged: an attributor is reused for a state that would
// make the same one, and only then.
func TestAttributorUnchanged(t *testing.T) {
	base := func() *directory.State {
		return &directory.State{Collaborations: []directory.CollaborationState{
			{Collaboration: &directory.Collaboration{Name: "atlas", Kind: directory.KindScientific, Members: []string{"alice", "bob"}}},
			{Collaboration: &directory.Collaboration{Name: "cern", Kind: directory.KindAdministrative, Members: []string{"alice"}}},
			{Collaboration: &directory.Collaboration{Name: "desy", Kind: directory.KindAdministrative, Members: []string{"bob"}}},
		}}
	}
	a := NewAttributor(base())
	for _, c := range []struct {
		name string
		edit func(*directory.State)
		want bool
	}{
		{"the same", func(*directory.State) {}, true},
		{"equal copies of the lists", func(s *directory.State) { s.Collaborations[1].Members = slices.Clone(s.Collaborations[1].Members) }, true},
		{"a scientific collaboration's members", func(s *directory.State) { s.Collaborations[0].Members = []string{"carol"} }, true},
		{"a status", func(s *directory.State) { s.Collaborations[0].Status = directory.StatusSuspended }, true},
		{"an administrative collaboration's members", func(s *directory.State) { s.Collaborations[2].Members = []string{"bob", "carol"} }, false},
		{"a collaboration made administrative", func(s *directory.State) { s.Collaborations[0].Kind = directory.KindAdministrative }, false},
		{"one no longer administrative", func(s *directory.State) { s.Collaborations[2].Kind = directory.KindScientific }, false},
		{"a name", func(s *directory.State) { s.Collaborations[0].Name = "atlas2" }, false},
		{"a collaboration added", func(s *directory.State) {
			s.Collaborations = append(s.Collaborations, directory.CollaborationState{Collaboration: &directory.Collaboration{Name: "lsst"}})
		}, false},
		{"a collaboration gone", func(s *directory.State) { s.Collaborations = s.Collaborations[:2] }, false},
	} {
		st := base()
		c.edit(st)
		if got := a.Unchanged(st); got != c.want {
			t.Errorf("%s: Unchanged %v, want %v", c.name, got, c.want)
		}
	}
	if NewAttributorFrom([]string{"atlas", "cern", "desy"}, nil).Unchanged(base()) {
		t.Error("an attributor from saved tables knows no state: never unchanged")
	}
	var none *Attributor
	if none.Unchanged(base()) {
		t.Error("no attributor: not unchanged")
	}
}
