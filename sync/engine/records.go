package engine

import (
	"encoding/json"
	"fmt"
	"iter"
	"slices"
)

// Records is a target's records in (kind, key) order: a sorted list and
// the records changed since, merged as they are read. A change to a few
// of a million records (Patch) costs those few, not a copy of the
// million; past a share of the list the changes are merged into a new
// one. A Records is never modified.
type Records struct {
	base []Record  // sorted, shared, never written
	over []patched // sorted by (kind, key), no key twice
	n    int
	// dups: base holds a key twice (a file read with a line twice); such
	// a Records is never patched.
	dups bool
}

// patched replaces, adds or (gone) removes base's record of its key.
type patched struct {
	Record
	gone bool
}

// RecordsOf makes Records of a list, in any order (a sorted list is
// used as it is, never copied).
func RecordsOf(recs []Record) Records {
	inOrder, dups := scan(recs)
	if !inOrder {
		recs = sorted(recs)
		_, dups = scan(recs)
	}
	return Records{base: recs, n: len(recs), dups: dups}
}

// scan reports, in one pass, whether recs are in (kind, key) order, and
// whether one key comes twice in a row (in order, twice at all). At 1M
// users a pass over nss's 1.1M records is ≈50 ms, each record's key a
// cache miss.
func scan(recs []Record) (inOrder, dups bool) {
	for i := 1; i < len(recs); i++ {
		switch c := compareRecords(recs[i-1], recs[i]); {
		case c > 0:
			return false, dups
		case c == 0:
			dups = true
		}
	}
	return true, dups
}

// Len is the number of records.
func (r Records) Len() int { return r.n }

// All yields the records in (kind, key) order.
func (r Records) All() iter.Seq[Record] {
	return func(yield func(Record) bool) {
		base, over := r.base, r.over
		for len(base) > 0 || len(over) > 0 {
			c := 1
			switch {
			case len(over) == 0:
				c = -1
			case len(base) > 0:
				c = compareRecords(base[0], over[0].Record)
			}
			if c < 0 {
				if !yield(base[0]) {
					return
				}
				base = base[1:]
				continue
			}
			if c == 0 {
				base = base[1:]
			}
			if !over[0].gone && !yield(over[0].Record) {
				return
			}
			over = over[1:]
		}
	}
}

// Slice returns the records as a list, in order: the list they were made
// of while nothing was patched, else a new one.
func (r Records) Slice() []Record {
	if len(r.over) == 0 {
		return r.base
	}
	out := make([]Record, 0, r.n)
	for rec := range r.All() {
		out = append(out, rec)
	}
	return out
}

// are reports whether recs is r's own sorted list, holding no key twice
// (r made by RecordsOf(recs) and not patched).
func (r Records) are(recs []Record) bool {
	return len(recs) > 0 && len(r.over) == 0 && !r.dups && len(r.base) == len(recs) && &r.base[0] == &recs[0]
}

// MarshalJSON writes the records as a list.
func (r Records) MarshalJSON() ([]byte, error) { return json.Marshal(r.Slice()) }

// find returns the record of a key.
func (r Records) find(kind, key string) (Record, bool) {
	k := Record{Kind: kind, Key: key}
	if i, ok := slices.BinarySearchFunc(r.over, k, func(p patched, k Record) int { return compareRecords(p.Record, k) }); ok {
		return r.over[i].Record, !r.over[i].gone
	}
	if i, ok := slices.BinarySearchFunc(r.base, k, compareRecords); ok {
		return r.base[i], true
	}
	return Record{}, false
}

// Patch returns the records with changes made, which are in (kind, key)
// order, no key twice, each against these records (an add of a key they
// do not hold, a modify or delete of one they do).
func (r Records) Patch(changes []Change) Records {
	over := make([]patched, 0, len(r.over)+len(changes))
	n := r.n
	old := r.over
	for _, c := range changes {
		p := patched{Record: Record{Kind: c.Kind, Key: c.Key, Value: c.New}, gone: c.Op == OpDelete}
		for len(old) > 0 && compareRecords(old[0].Record, p.Record) < 0 {
			over = append(over, old[0])
			old = old[1:]
		}
		if len(old) > 0 && compareRecords(old[0].Record, p.Record) == 0 {
			old = old[1:]
		}
		over = append(over, p)
		switch c.Op {
		case OpAdd:
			n++
		case OpDelete:
			n--
		}
	}
	over = append(over, old...)
	out := Records{base: r.base, over: over, n: n}
	if len(over) > 1024+len(r.base)/32 {
		// Merged into a new list, which the next patches share.
		out = Records{base: out.Slice(), n: n}
	}
	return out
}

// Desire is a record a target wants, or (Gone) the key of one it wants no
// longer.
type Desire struct {
	Record
	Gone bool
	// New: the record is made by what made none of this key before (a
	// subject that changed), so a record of this key the target holds is
	// another's, which still wants it: the key is desired twice.
	New bool
}

// ChangesTo returns the changes that take these records to the desires
// (keys not desired stay as they are), in (kind, key) order. A key
// desired twice is an error.
func (r Records) ChangesTo(desires []Desire) ([]Change, error) {
	byKey := func(a, b Desire) int { return compareRecords(a.Record, b.Record) }
	if !slices.IsSortedFunc(desires, byKey) {
		desires = slices.Clone(desires)
		slices.SortStableFunc(desires, byKey)
	}
	changes := []Change{}
	for i, d := range desires {
		if i > 0 && byKey(desires[i-1], d) == 0 {
			return nil, fmt.Errorf("desired state has %s %q twice", d.Kind, d.Key)
		}
		cur, held := r.find(d.Kind, d.Key)
		switch {
		case d.New && held && !d.Gone:
			return nil, fmt.Errorf("desired state has %s %q twice", d.Kind, d.Key)
		case d.Gone && held:
			changes = append(changes, Change{Op: OpDelete, Kind: d.Kind, Key: d.Key, Old: cur.Value})
		case d.Gone:
		case !held:
			changes = append(changes, Change{Op: OpAdd, Kind: d.Kind, Key: d.Key, New: d.Value})
		case cur.Value != d.Value:
			changes = append(changes, Change{Op: OpModify, Kind: d.Kind, Key: d.Key, Old: cur.Value, New: d.Value})
		}
	}
	return changes, nil
}
