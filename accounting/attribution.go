package accounting

import (
	"slices"
	"sort"
	"strings"

	"github.com/collabsync/collabsync/internal/directory"
)

// Unattributed is the collaboration of jobs no rule could attribute.
const Unattributed = "unattributed"

// Attributor charges jobs to collaborations: to the job's account when it
// names a collaboration, else to the user's administrative collaboration,
// else to Unattributed.
type Attributor struct {
	collab  map[string]string // lower-cased name → name (schedulers lower-case accounts)
	adminOf map[string]string // uid → administrative collaboration
	// accountOnly: nothing is known of the directory; a job's account is
	// taken for its collaboration.
	accountOnly bool
	// names and admins are what NewAttributor made it from: the state's
	// collaboration names in order, and its administrative
	// collaborations' member lists (Unchanged compares them).
	names  []string
	admins [][]string
}

// NewAttributor builds an attributor from the directory's state.
func NewAttributor(st *directory.State) *Attributor {
	if st == nil {
		return NewAttributorFrom(nil, nil)
	}
	names := make([]string, 0, len(st.Collaborations))
	admins := map[string][]string{}
	var members [][]string
	for _, c := range st.Collaborations {
		names = append(names, c.Name)
		if c.Kind == directory.KindAdministrative {
			members = append(members, c.Members)
			for _, uid := range c.Members {
				admins[uid] = append(admins[uid], c.Name)
			}
		}
	}
	adminOf := make(map[string]string, len(admins))
	for uid, names := range admins {
		// Several is a rule 1 violation; the first by name keeps it stable.
		sort.Strings(names)
		adminOf[uid] = names[0]
	}
	a := NewAttributorFrom(names, adminOf)
	a.names, a.admins = names, members
	return a
}

// Unchanged reports whether NewAttributor would make the same attributor
// of st: the same collaboration names, and the same members of the same
// administrative collaborations. Names and lists a state shares with the
// last compare by their address: at 1M users an attributor a change was
// 100k names in a map and sorted again.
func (a *Attributor) Unchanged(st *directory.State) bool {
	if a == nil || a.names == nil || st == nil || len(st.Collaborations) != len(a.names) {
		return false
	}
	k := 0
	for i := range st.Collaborations {
		c := &st.Collaborations[i]
		if c.Name != a.names[i] {
			return false
		}
		if c.Kind == directory.KindAdministrative {
			if k == len(a.admins) || !sameList(c.Members, a.admins[k]) {
				return false
			}
			k++
		}
	}
	return k == len(a.admins)
}

// NewAttributorFrom builds an attributor from collaboration names and each
// user's administrative collaboration (as saved by the last sync).
func NewAttributorFrom(collaborations []string, adminOf map[string]string) *Attributor {
	a := &Attributor{collab: make(map[string]string, len(collaborations)), adminOf: adminOf}
	if a.adminOf == nil {
		a.adminOf = map[string]string{}
	}
	for _, c := range collaborations {
		a.collab[strings.ToLower(c)] = c
	}
	return a
}

// AccountOnly is the attributor of last resort, when the directory cannot
// be read and no sync has saved its state: a job is charged to the account
// it ran under, as written, or to Unattributed when it names none.
func AccountOnly() *Attributor { return &Attributor{accountOnly: true} }

// Tables returns what the attributor knows: the collaborations' names,
// sorted, and each user's administrative collaboration.
func (a *Attributor) Tables() (collaborations []string, adminOf map[string]string) {
	for _, name := range a.collab {
		collaborations = append(collaborations, name)
	}
	sort.Strings(collaborations)
	return collaborations, a.adminOf
}

func sameList(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || slices.Equal(a, b))
}

// Attribute returns the collaboration a job is charged to.
func (a *Attributor) Attribute(j *Job) string {
	if a.accountOnly {
		if j.Account != "" {
			return j.Account
		}
		return Unattributed
	}
	if name, ok := a.collab[strings.ToLower(j.Account)]; ok && j.Account != "" {
		return name
	}
	if name, ok := a.adminOf[j.User]; ok {
		return name
	}
	return Unattributed
}
