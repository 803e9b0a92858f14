package gendir

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestHeavyTail: the sizes fall steeply from a fifth of the users, users
// join four collaborations on average, and no collaboration names a
// member twice or one that does not exist.
func TestHeavyTail(t *testing.T) {
	const users, collabs = 20000, 2000
	var out bytes.Buffer
	if err := Write(&out, Params{Users: users, Collaborations: collabs, MembersPerUser: 4, HeavyTail: true}); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var seen map[string]bool
	known := map[string]bool{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "uid: "):
			known[line[5:]] = true
		case strings.HasPrefix(line, "dn: cn="):
			sizes, seen = append(sizes, 0), map[string]bool{}
		case strings.HasPrefix(line, "memberUid: "):
			uid := line[len("memberUid: "):]
			if seen[uid] || !known[uid] {
				t.Fatalf("collaboration %d: member %s twice or unknown", len(sizes)-1, uid)
			}
			seen[uid] = true
			sizes[len(sizes)-1]++
		}
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	if len(sizes) != collabs || sizes[0] != users/5 || sizes[len(sizes)-1] > 10 || total < 3*users || total > 5*users {
		t.Fatalf("%d collaborations, largest %d, smallest %d, %d memberships", len(sizes), sizes[0], sizes[len(sizes)-1], total)
	}
}
