// Package targets is the one list of target kinds. Adding a kind is its
// package under sync/ and one line here; nothing else names a kind.
package targets

import (
	"github.com/collabsync/collabsync/sync/aliases"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/exec"
	"github.com/collabsync/collabsync/sync/ldappub"
	"github.com/collabsync/collabsync/sync/mailman"
	"github.com/collabsync/collabsync/sync/notices"
	"github.com/collabsync/collabsync/sync/nss"
	"github.com/collabsync/collabsync/sync/slurm"
)

// Kinds returns every kind of target collabsync can drive.
func Kinds() engine.Registry {
	return engine.Registry{
		aliases.Kind(),
		exec.Kind(),
		ldappub.Kind(),
		mailman.Kind(),
		notices.Kind(),
		nss.Kind(),
		slurm.Kind(),
	}.Check()
}
