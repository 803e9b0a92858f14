// Package engine reconciles downstream targets with the directory: it asks a
// Source for a snapshot, each Target for its desired and current records,
// diffs them into a Plan, checks the guards, and applies.
package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Record is one thing a target manages: a passwd line, a list member, a
// Slurm association. Key identifies it within its Kind; Value is compared to
// decide whether it must change.
type Record struct {
	Kind  string `json:"kind"`
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Op is what a change does.
type Op string

// The change operations.
const (
	OpAdd    Op = "add"
	OpModify Op = "modify"
	OpDelete Op = "delete"
)

// Change is one difference between current and desired state.
type Change struct {
	Op   Op     `json:"op"`
	Kind string `json:"kind"`
	Key  string `json:"key"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// Plan is what applying would do to one target.
type Plan struct {
	Target  string   `json:"target"`
	Changes []Change `json:"changes"`
	// Current is how many records the target holds now.
	Current int `json:"current"`
	// Digest identifies the changes (not the reason or time): an approval
	// names it, so it can approve this plan and no later, different one.
	Digest string `json:"digest"`
	// Refused says why a guard stopped this plan; a refused plan is not applied.
	Refused string `json:"refused,omitempty"`
	// Desired is the full desired state, for targets that rewrite whole files.
	Desired Records `json:"-"`
	// Notes are what the target says of its state that is no change
	// (members it keeps that are not its own); not part of the digest.
	Notes []string `json:"notes,omitempty"`
	// counted holds the counts of a Summary's changes, let go.
	counted *[3]int
}

// digest is the first 16 hex digits of the SHA-256 of the target's name
// and its changes in order.
func digest(target string, changes []Change) string {
	h := sha256.New()
	h.Write([]byte(target))
	var buf []byte
	for _, c := range changes {
		// Lengths first, so no field's content can pass for a boundary:
		// "\x00<length>:<field>", appended without formatting (a first
		// plan has 110k changes at 100k users).
		for _, f := range [...]string{string(c.Op), c.Kind, c.Key, c.Old, c.New} {
			buf = append(strconv.AppendInt(append(buf[:0], 0), int64(len(f)), 10), ':')
			buf = append(buf, f...)
			h.Write(buf)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Counts returns the number of adds, modifies and deletes.
func (p *Plan) Counts() (add, modify, del int) {
	if p.counted != nil {
		return p.counted[0], p.counted[1], p.counted[2]
	}
	for _, c := range p.Changes {
		switch c.Op {
		case OpAdd:
			add++
		case OpModify:
			modify++
		case OpDelete:
			del++
		}
	}
	return add, modify, del
}

// Summary is the plan without its changes, their counts kept: what the
// report of an applied plan needs, without every change (a first run's
// at 1M users: 1.1M changes, 83 MB).
func (p *Plan) Summary() *Plan {
	s := *p
	add, modify, del := p.Counts()
	s.Changes, s.counted = nil, &[3]int{add, modify, del}
	return &s
}

// Diff compares current with desired records. It is pure: the same inputs
// always give the same changes, in (kind, key) order. Duplicate keys in
// desired are an error, since one of them would silently win; of duplicate
// current records the first counts (the rewrite drops the others).
//
// It merges the two lists in (kind, key) order: records that come sorted,
// as targets produce them and as a target's known state is kept, cost no
// sort and no index.
func Diff(current, desired []Record) ([]Change, error) {
	inOrder, dups := scan(desired)
	if !inOrder {
		desired = sorted(desired)
		_, dups = scan(desired)
	}
	for i := 1; dups && i < len(desired); i++ {
		if compareRecords(desired[i-1], desired[i]) == 0 {
			return nil, fmt.Errorf("desired state has %s %q twice", desired[i].Kind, desired[i].Key)
		}
	}
	current = sorted(current)
	// Counted first, then made at that size: a first run's plan of every
	// record grown by append held 244 MB of serve's peak at 1M users (the
	// list and the copy it grew from). BenchmarkDiffFirstRun, 1.1M
	// records: every one new 310 ms and 522 MB allocated before, 75 ms
	// and 88 MB after; in sync (one merge, nothing allocated) 55-60 ms
	// both ways.
	n := 0
	merge(current, desired, func(Op, Record, Record) { n++ })
	if n == 0 {
		return nil, nil
	}
	changes := make([]Change, 0, n)
	merge(current, desired, func(op Op, cur, des Record) {
		r := cur // the record an add has no current one of
		if op == OpAdd {
			r = des
		}
		changes = append(changes, Change{Op: op, Kind: r.Kind, Key: r.Key, Old: cur.Value, New: des.Value})
	})
	return changes, nil
}

// merge walks two sorted lists of records in (kind, key) order and calls
// fn with each difference: a current record deleted (des empty), a
// desired one added (cur empty), or one whose value is modified. Of
// duplicate current records the first counts.
func merge(current, desired []Record, fn func(op Op, cur, des Record)) {
	i, j := 0, 0
	for i < len(current) || j < len(desired) {
		if i > 0 && i < len(current) && compareRecords(current[i-1], current[i]) == 0 {
			i++ // a duplicate line downstream
			continue
		}
		var c int
		switch {
		case i == len(current):
			c = 1
		case j == len(desired):
			c = -1
		default:
			c = compareRecords(current[i], desired[j])
		}
		switch {
		case c < 0:
			fn(OpDelete, current[i], Record{})
			i++
		case c > 0:
			fn(OpAdd, Record{}, desired[j])
			j++
		default:
			if current[i].Value != desired[j].Value {
				fn(OpModify, current[i], desired[j])
			}
			i++
			j++
		}
	}
}

// firstOfEach is recs in (kind, key) order with the first record of each
// key only, as Diff counts a current state; a list without a key twice is
// returned as it is.
func firstOfEach(recs []Record) []Record {
	recs = sorted(recs)
	for i := 1; i < len(recs); i++ {
		if compareRecords(recs[i-1], recs[i]) == 0 {
			out := slices.Clone(recs[:i])
			for _, r := range recs[i:] {
				if compareRecords(out[len(out)-1], r) != 0 {
					out = append(out, r)
				}
			}
			return out
		}
	}
	return recs
}

// compareRecords orders records by kind, then key.
func compareRecords(a, b Record) int {
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return strings.Compare(a.Key, b.Key)
}

// sorted returns recs in (kind, key) order, stable, copying only when
// they are not in order already.
func sorted(recs []Record) []Record {
	if slices.IsSortedFunc(recs, compareRecords) {
		return recs
	}
	out := slices.Clone(recs)
	slices.SortStableFunc(out, compareRecords)
	return out
}

// Guard holds the limits on what one apply may remove.
type Guard struct {
	MaxDeleteRatio float64
	// MinDeletes: below this many deletions the ratio is not checked, so a
	// small directory can still lose a user without approval.
	MinDeletes int
}

// Check sets p.Refused when the plan would empty the target, or delete more
// than the allowed share of it without approval.
func (g Guard) Check(p *Plan, approved bool) {
	_, _, del := p.Counts()
	switch {
	case p.Current > 0 && p.Desired.Len() == 0:
		// An empty desired state is far more often a broken source (a wrong
		// base DN, an ACL change) than a centre with no users left.
		p.Refused = fmt.Sprintf("desired state is empty but the target holds %d records; refusing to empty it", p.Current)
	case approved:
	case del >= g.MinDeletes && float64(del) > g.MaxDeleteRatio*float64(p.Current):
		p.Refused = fmt.Sprintf("would delete %d of %d records (more than %.0f%%)", del, p.Current, 100*g.MaxDeleteRatio)
	}
}

// CheckGroups sets p.Refused when, without approval, the plan would
// delete more than the allowed share of one group of current records (a
// list's members), so a group cannot be emptied behind a target-wide
// ratio that a large target never reaches.
func (g Guard) CheckGroups(p *Plan, current []Record, group func(Record) string, approved bool) {
	if approved {
		return
	}
	deletes := map[string]int{}
	for _, c := range p.Changes {
		if c.Op == OpDelete {
			if name := group(Record{Kind: c.Kind, Key: c.Key, Value: c.Old}); name != "" {
				deletes[name]++
			}
		}
	}
	if len(deletes) == 0 {
		return
	}
	held := map[string]int{}
	for _, r := range current {
		if name := group(r); deletes[name] > 0 {
			held[name]++
		}
	}
	names := make([]string, 0, len(deletes))
	for name := range deletes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if del := deletes[name]; del >= g.MinDeletes && float64(del) > g.MaxDeleteRatio*float64(held[name]) {
			p.Refused = fmt.Sprintf("would delete %d of %d records of %s (more than %.0f%%)", del, held[name], name, 100*g.MaxDeleteRatio)
			return
		}
	}
}
