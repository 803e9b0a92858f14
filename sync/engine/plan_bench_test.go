package engine

import (
	"fmt"
	"testing"
)

// BenchmarkDiffFirstRun: a target's first plan at 1M users, every record
// to add, and a plan against a target in sync. The changes are allocated
// once, at their count: grown by append, the first run's 1.1M changes
// took 244 MB at serve's peak at 1M users (the list and its last copy).
//
//	go test -run '^$' -bench DiffFirstRun -benchmem ./sync/engine/
func BenchmarkDiffFirstRun(b *testing.B) {
	const n = 1_100_000
	desired := passwdRecords(n)
	for _, bm := range []struct {
		name    string
		current []Record
		changes int
	}{{"empty", nil, n}, {"in_sync", desired, 0}} {
		b.Run(bm.name, func(b *testing.B) {
			for range b.N {
				changes, err := Diff(bm.current, desired)
				if err != nil || len(changes) != bm.changes {
					b.Fatalf("%d changes, %v", len(changes), err)
				}
			}
		})
	}
}

// BenchmarkRecordsOf: nss's desired records at 1M users, in order, made
// Records (one pass to see them in order and with no key twice).
//
//	go test -run '^$' -bench RecordsOf -benchmem ./sync/engine/
func BenchmarkRecordsOf(b *testing.B) {
	const n = 1_100_000
	recs := passwdRecords(n)
	for range b.N {
		if r := RecordsOf(recs); r.dups || r.Len() != n {
			b.Fatal("not the records")
		}
	}
}

// passwdRecords are n passwd records in order, as nss desires them.
func passwdRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		key := fmt.Sprintf("u%07d", i)
		recs[i] = Record{Kind: "passwd", Key: key, Value: key + ":x:1000:1000::/home/" + key + ":/bin/bash"}
	}
	return recs
}
