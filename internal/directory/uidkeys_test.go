package directory

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// checkUIDKeys sorts users made of uids with SortUsers and requires
// Snapshot.Sort's order, and Search and SearchFrom to answer as a binary
// search of the users does for each probe.
func checkUIDKeys(t *testing.T, uids, probes []string) {
	t.Helper()
	users := make([]*User, len(uids))
	for i, uid := range uids {
		users[i] = &User{UID: uid, DN: "uid=" + uid + ",n=" + string(rune('a'+i%26))}
	}
	want := slices.Clone(users)
	(&Snapshot{Users: want}).Sort()
	keys := SortUsers(users)
	if !slices.Equal(users, want) {
		t.Fatalf("SortUsers(%q): order differs from Snapshot.Sort", uids)
	}
	for i, u := range users {
		if keys.keys[i] != uidKey(u.UID) {
			t.Fatalf("SortUsers(%q): key %d is %x, want %x", uids, i, keys.keys[i], uidKey(u.UID))
		}
		if partial := keys.partial[i/64]&(1<<(i%64)) != 0; partial == wholeKey(u.UID) {
			t.Fatalf("SortUsers(%q): user %d (%q) marked partial: %v", uids, i, u.UID, partial)
		}
	}
	for _, p := range append(slices.Clone(uids), probes...) {
		wi, wok := slices.BinarySearchFunc(users, p, CompareUID)
		if i, ok := keys.Search(users, p); i != wi || ok != wok {
			t.Errorf("uids %q: Search(%q) = %d, %v; want %d, %v", uids, p, i, ok, wi, wok)
		}
		for from := 0; from <= wi; from++ {
			if i, ok := keys.SearchFrom(users, p, from); i != wi || ok != wok {
				t.Errorf("uids %q: SearchFrom(%q, %d) = %d, %v; want %d, %v", uids, p, from, i, ok, wi, wok)
			}
		}
	}
}

// TestUIDKeys: uids sharing their first eight bytes, differing in
// trailing zero bytes, empty, repeated, longer and shorter than a key.
func TestUIDKeys(t *testing.T) {
	for _, tc := range []struct {
		name         string
		uids, probes []string
	}{
		{"none", nil, []string{"", "a"}},
		{"short", []string{"bob", "alice", "carol"}, []string{"", "b", "bo", "bobb", "zz"}},
		{"one key", []string{"external_b", "external_a", "external_", "external_aa", "externa"},
			[]string{"external", "external_ab", "external_b0", "externam", "externa\x00"}},
		{"trailing zeros", []string{"ab", "ab\x00", "ab\x00\x00", "ab\x00\x00\x00\x00\x00\x00\x00", "ab\x01"},
			[]string{"ab\x00\x00\x00", "a", "ab\x00\x00\x00\x00\x00\x00", "ab\x00\x00\x00\x00\x00\x00\x00\x00"}},
		{"repeated", []string{"u1", "u1", "u2", "longer_than_8", "longer_than_8", "longer_than_9"},
			[]string{"u0", "u3", "longer_than_7", "longer_than"}},
		{"empty uid", []string{"", "", "x"}, []string{"\x00", "w"}},
		{"eight bytes", []string{"abcdefghi", "abcdefgh_", "abcdefgi", "abcdefg", "abcdefgi"},
			[]string{"abcdefgh", "abcdefg", "abcdefgi", "abcdefgj", "abcdefgh\x00"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkUIDKeys(t, tc.uids, tc.probes) })
	}
}

// TestUIDKeysRandom: random uids over a small alphabet, so that prefixes
// and keys are often shared.
func TestUIDKeysRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteByte("ab\x00_"[r.IntN(4)])
		}
		return b.String()
	}
	for range 300 {
		// Up to three words of the partial keys' bit set.
		uids := make([]string, r.IntN(150))
		for i := range uids {
			uids[i] = word()
		}
		probes := make([]string, 10)
		for i := range probes {
			probes[i] = word()
		}
		checkUIDKeys(t, uids, probes)
	}
}

// FuzzUIDKeys: uids split from the input at newlines.
func FuzzUIDKeys(f *testing.F) {
	f.Add("bob\nalice\nexternal_a\nexternal_b\nab\x00\nab")
	f.Fuzz(func(t *testing.T, in string) {
		uids := strings.Split(in, "\n")
		if len(uids) > 64 {
			uids = uids[:64]
		}
		checkUIDKeys(t, uids, []string{"", "a", "external_", "ab\x00\x00"})
	})
}
