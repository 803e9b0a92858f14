package accounting

import (
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
}

// NewAttributor builds an attributor from the directory's state.
func NewAttributor(st *directory.State) *Attributor {
	a := &Attributor{collab: map[string]string{}, adminOf: map[string]string{}}
	if st == nil {
		return a
	}
	admins := map[string][]string{}
	for _, c := range st.Collaborations {
		a.collab[strings.ToLower(c.Name)] = c.Name
		if c.Kind == directory.KindAdministrative {
			for _, uid := range c.Members {
				admins[uid] = append(admins[uid], c.Name)
			}
		}
	}
	for uid, names := range admins {
		// Several is a rule 1 violation; the first by name keeps it stable.
		sort.Strings(names)
		a.adminOf[uid] = names[0]
	}
	return a
}

// Attribute returns the collaboration a job is charged to.
func (a *Attributor) Attribute(j *Job) string {
	if name, ok := a.collab[strings.ToLower(j.Account)]; ok && j.Account != "" {
		return name
	}
	if name, ok := a.adminOf[j.User]; ok {
		return name
	}
	return Unattributed
}
