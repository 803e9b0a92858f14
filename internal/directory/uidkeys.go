package directory

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sort"
	"strings"

	"github.com/collabsync/collabsync/internal/gallop"
)

// UIDKeys are the keys (uidKey) of users sorted by uid, in their order.
// A search of the users compares numbers in one array and follows one
// user's pointer to its uid at the end, where a search of the users
// themselves follows one at each step: at 1M users the members' searches
// through the users' pointers were a fifth of a restart's CPU, most of it
// waiting for memory. A uid the key holds whole is found without even
// that last step (at 100k users it was a tenth of plan's CPU). Eight
// bytes and a bit a user.
type UIDKeys struct {
	keys []uint64
	// partial has a bit set for each user whose uid its key does not
	// hold whole (wholeKey): a search must compare that uid.
	partial []uint64
}

// uidKey is a uid's first eight bytes as a big-endian number, zero after
// its end: keys order as their uids do, except that uids of one key
// (sharing those bytes, or differing in trailing zero bytes) tie.
func uidKey(uid string) uint64 {
	var b [8]byte
	copy(b[:], uid)
	return binary.BigEndian.Uint64(b[:])
}

// wholeKey reports whether uid's key holds it whole: at most eight bytes,
// none zero. Two such uids are equal if and only if their keys are; and
// a whole uid sorts before every other uid of its key, each of which
// starts with it.
func wholeKey(uid string) bool {
	return len(uid) <= 8 && strings.IndexByte(uid, 0) < 0
}

// KeysOf returns the keys of users sorted by uid.
func KeysOf(users []*User) UIDKeys {
	k := UIDKeys{keys: make([]uint64, len(users)), partial: make([]uint64, (len(users)+63)/64)}
	for i, u := range users {
		k.set(i, u.UID)
	}
	return k
}

func (k UIDKeys) set(i int, uid string) {
	k.keys[i] = uidKey(uid)
	if !wholeKey(uid) {
		k.partial[i/64] |= 1 << (i % 64)
	}
}

// Len is how many users the keys are of (0 for none).
func (k UIDKeys) Len() int { return len(k.keys) }

// Equal reports whether k and o are the keys of the same uids.
func (k UIDKeys) Equal(o UIDKeys) bool {
	return slices.Equal(k.keys, o.keys) && slices.Equal(k.partial, o.partial)
}

// SortUsers sorts users by uid, then DN (Snapshot.Sort's order), and
// returns their keys. Sorting by key first compares numbers where
// sorting the users compared their uids through two pointers each.
func SortUsers(users []*User) UIDKeys {
	type keyed struct {
		key uint64
		u   *User
	}
	byKey := make([]keyed, len(users))
	for i, u := range users {
		byKey[i] = keyed{uidKey(u.UID), u}
	}
	slices.SortFunc(byKey, func(a, b keyed) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		if c := strings.Compare(a.u.UID, b.u.UID); c != 0 {
			return c
		}
		return strings.Compare(a.u.DN, b.u.DN)
	})
	for i, k := range byKey {
		users[i] = k.u
	}
	return KeysOf(users)
}

// Search is slices.BinarySearchFunc(users, uid, CompareUID) for the users
// the keys were made of: where the first user of that uid is or would be,
// and whether it is there.
func (k UIDKeys) Search(users []*User, uid string) (int, bool) {
	key := uidKey(uid)
	i, _ := slices.BinarySearch(k.keys, key)
	return k.settle(users, uid, key, i)
}

// SearchFrom is Search for a uid that every user before from sorts
// below, galloping from there (gallop.Search); the position is where the
// search for a larger uid may start.
func (k UIDKeys) SearchFrom(users []*User, uid string, from int) (int, bool) {
	key := uidKey(uid)
	i, _ := gallop.Search(k.keys, key, from, cmp.Compare[uint64])
	return k.settle(users, uid, key, i)
}

// settle finds uid among the users whose key is key, from i, the first
// position of a key not below it.
func (k UIDKeys) settle(users []*User, uid string, key uint64, i int) (int, bool) {
	if i == len(k.keys) || k.keys[i] != key {
		return i, false
	}
	if wholeKey(uid) {
		// The first user of the key is uid if its key holds it whole;
		// else uid, which it starts with, sorts before it.
		return i, k.partial[i/64]&(1<<(i%64)) == 0
	}
	if i+1 == len(k.keys) || k.keys[i+1] != key {
		// The only user of the key: its uid sorts against uid as the key
		// does not tell.
		c := strings.Compare(users[i].UID, uid)
		if c < 0 {
			return i + 1, false
		}
		return i, c == 0
	}
	// Users of one key: searched by uid.
	n := sort.Search(len(k.keys)-i, func(n int) bool { return k.keys[i+n] != key })
	j, ok := slices.BinarySearchFunc(users[i:i+n], uid, CompareUID)
	return i + j, ok
}
