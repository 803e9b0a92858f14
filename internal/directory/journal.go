package directory

import (
	"slices"
	"sync"
)

// Changed lists the entries of a state that may differ from an earlier
// state's: indexes into its Users, Collaborations and ProductionAccounts,
// ascending. An index names the same subject in both states. An entry
// listed may be the same; an entry not listed is.
type Changed struct {
	Users, Collaborations, ProductionAccounts []int
}

// ChangedSince returns the entries of s that may differ from old's, as
// the runs of the Evaluator between the two changed them: a target that
// provisioned old finds what to do for s from a few entries, not from
// all of them. ok is false unless both are states of one Evaluator since
// its last whole evaluation (the same subjects at the same indexes), old
// not after s, and the runs between them still remembered. It may be
// called from any goroutine, while the Evaluator runs.
func (s *State) ChangedSince(old *State) (ch Changed, ok bool) {
	if s == nil || old == nil || s.journal == nil || s.journal != old.journal || old.seq > s.seq {
		return Changed{}, false
	}
	return s.journal.since(old.seq, s.seq)
}

// Subject kinds in the journal.
const (
	journalUser uint8 = iota
	journalCollaboration
	journalProduction
)

// journal logs, run by run since a whole evaluation, which entries of the
// state each incremental run changed. It is shared by the states of that
// series (a target's worker reads it while the next run writes), and
// forgets its oldest runs past a limit: a state older than what it
// remembers is then compared with no other (ChangedSince is not ok).
type journal struct {
	mu      sync.Mutex
	after   uint64 // the runs logged are those after this one
	entries []journalEntry
	limit   int
}

type journalEntry struct {
	seq  uint64
	kind uint8
	i    int32
}

func newJournal(seq uint64, users int) *journal {
	return &journal{after: seq, limit: 4096 + users/4}
}

// add logs a run's changed entries.
func (j *journal) add(seq uint64, users, collabs, prods []int32) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, l := range []struct {
		kind uint8
		is   []int32
	}{{journalUser, users}, {journalCollaboration, collabs}, {journalProduction, prods}} {
		for _, i := range l.is {
			j.entries = append(j.entries, journalEntry{seq, l.kind, i})
		}
	}
	if len(j.entries) <= j.limit {
		return
	}
	// Forget the older half, whole runs at a time.
	cut := j.entries[len(j.entries)/2].seq
	n := 0
	for n < len(j.entries) && j.entries[n].seq < cut {
		n++
	}
	j.entries = slices.Delete(j.entries, 0, n)
	j.after = cut - 1
	if cap(j.entries) > 2*j.limit {
		j.entries = slices.Clip(j.entries)
	}
}

// since lists what the runs after from up to to changed.
func (j *journal) since(from, to uint64) (Changed, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if from < j.after {
		return Changed{}, false
	}
	var ch Changed
	for _, e := range j.entries {
		if e.seq <= from || e.seq > to {
			continue
		}
		switch e.kind {
		case journalUser:
			ch.Users = append(ch.Users, int(e.i))
		case journalCollaboration:
			ch.Collaborations = append(ch.Collaborations, int(e.i))
		case journalProduction:
			ch.ProductionAccounts = append(ch.ProductionAccounts, int(e.i))
		}
	}
	for _, l := range []*[]int{&ch.Users, &ch.Collaborations, &ch.ProductionAccounts} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return ch, true
}
