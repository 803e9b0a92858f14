// Package directory is collabsync's model of the centre: users,
// collaborations and production accounts as read from LDAP, and the account
// rules that decide their effective state.
package directory

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// User is a person's account as the directory holds it.
type User struct {
	DN        string
	UID       string
	UIDNumber uint32
	GIDNumber uint32
	Name      string
	Mail      string
	Home      string
	Shell     string
}

// Collaboration is an experiment, project or scientific group; it becomes a
// Unix group.
type Collaboration struct {
	DN        string
	Name      string
	GIDNumber uint32
	// Members are uids, sorted and unique.
	Members []string
}

// Problem is an entry the directory holds that collabsync cannot use as it
// is: a malformed attribute, a duplicate name. It names the DN so an admin
// can fix it; the entry is left out, never half-used.
type Problem struct {
	DN     string `json:"dn"`
	Reason string `json:"reason"`
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s", p.DN, p.Reason) }

// Snapshot is one consistent read of the directory.
type Snapshot struct {
	Users          []User
	Collaborations []Collaboration
	Problems       []Problem
}

// Sort puts every list in a stable order so that plans and files do not
// depend on the order the server returned entries in.
func (s *Snapshot) Sort() {
	sort.Slice(s.Users, func(i, j int) bool { return s.Users[i].UID < s.Users[j].UID })
	sort.Slice(s.Collaborations, func(i, j int) bool { return s.Collaborations[i].Name < s.Collaborations[j].Name })
	sort.Slice(s.Problems, func(i, j int) bool {
		if s.Problems[i].DN != s.Problems[j].DN {
			return s.Problems[i].DN < s.Problems[j].DN
		}
		return s.Problems[i].Reason < s.Problems[j].Reason
	})
}

// Finish sorts the snapshot and leaves out every user that shares its uid
// with another entry, and every collaboration that shares its name: which of
// two conflicting entries is "right" is for an admin to decide, so neither
// is provisioned and both are reported.
func (s *Snapshot) Finish() {
	s.Users = dropDuplicates(s, s.Users, func(u User) (string, string) { return u.UID, u.DN }, "uid")
	s.Collaborations = dropDuplicates(s, s.Collaborations, func(c Collaboration) (string, string) { return c.Name, c.DN }, "collaboration name")
	// A member whose user entry was just left out must not linger in groups.
	users := make(map[string]bool, len(s.Users))
	for _, u := range s.Users {
		users[u.UID] = true
	}
	for i := range s.Collaborations {
		c := &s.Collaborations[i]
		c.Members = slices.DeleteFunc(c.Members, func(uid string) bool { return !users[uid] })
	}
	s.Sort()
}

func dropDuplicates[T any](s *Snapshot, items []T, key func(T) (name, dn string), what string) []T {
	byName := make(map[string][]string, len(items))
	for _, it := range items {
		name, dn := key(it)
		byName[name] = append(byName[name], dn)
	}
	kept := items[:0]
	for _, it := range items {
		name, dn := key(it)
		dns := byName[name]
		if len(dns) == 1 {
			kept = append(kept, it)
			continue
		}
		var others []string
		for _, o := range dns {
			if o != dn {
				others = append(others, o)
			}
		}
		sort.Strings(others)
		s.Problems = append(s.Problems, Problem{DN: dn,
			Reason: fmt.Sprintf("duplicate %s %q, also used by %s; neither is provisioned", what, name, strings.Join(others, "; "))})
	}
	return kept
}
