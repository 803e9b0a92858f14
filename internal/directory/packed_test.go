package directory

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestPackedHistory: a packed history answers as the map of the same
// subjects: every key found with its record, absent keys not found, All
// and Len the same; of a key added twice the first is kept.
func TestPackedHistory(t *testing.T) {
	statuses := []Status{StatusActive, StatusSuspended, StatusPending, StatusExpired, ""}
	for _, n := range []int{0, 1, 3, 1000, 50_000} {
		rng := rand.New(rand.NewPCG(uint64(n), 1))
		want := Previous{}
		var b HistoryBuilder
		b.Grow(n/2, n*20)
		for i := range n {
			key := fmt.Sprintf("user:u%d", rng.IntN(n+n/3+1)) // some added twice
			p := Provisioned{Status: statuses[rng.IntN(len(statuses))], ID: int64(rng.IntN(3)) - 1}
			if i%3 != 0 {
				p.DN = fmt.Sprintf("uid=u%d,ou=people,dc=example,dc=org", i)
			}
			if _, ok := want[key]; !ok {
				want[key] = p
			}
			b.Add([]byte(key), p.Status, []byte(p.DN), p.ID)
		}
		if !b.Complete() {
			t.Fatalf("%d subjects: not complete", n)
		}
		h := b.History()
		if h.Len() != len(want) {
			t.Errorf("%d subjects: Len %d, want %d", n, h.Len(), len(want))
		}
		got := Previous{}
		h.All(func(key string, p Provisioned) {
			if _, ok := got[key]; ok {
				t.Errorf("%d subjects: All gave %s twice", n, key)
			}
			got[key] = p
		})
		if !maps.Equal(got, want) {
			t.Errorf("%d subjects: All differs from the map", n)
		}
		for key, p := range want {
			if q, ok := h.Provisioned(key); !ok || q != p {
				t.Fatalf("%d subjects: %s = %+v, %v; want %+v", n, key, q, ok, p)
			}
		}
		for i := range 1000 {
			key := fmt.Sprintf("user:absent%d", i)
			if _, ok := h.Provisioned(key); ok {
				t.Fatalf("%d subjects: absent %s found", n, key)
			}
		}
	}
	var b HistoryBuilder
	for i := range 300 {
		b.Add([]byte(fmt.Sprint(i)), Status(fmt.Sprint("s", i)), nil, 0)
	}
	if b.Complete() {
		t.Error("300 distinct statuses: complete")
	}
}

// BenchmarkPackedHistory: looking up every subject of 1M.
func BenchmarkPackedHistory(b *testing.B) {
	const n = 1_000_000
	var hb HistoryBuilder
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("user:u%07d", i)
		hb.Add([]byte(keys[i]), StatusActive, []byte("uid=u,ou=people,dc=example,dc=org"), int64(i))
	}
	h := hb.History()
	b.ResetTimer()
	for range b.N {
		for _, k := range keys {
			if _, ok := h.Provisioned(k); !ok {
				b.Fatal(k)
			}
		}
	}
}
