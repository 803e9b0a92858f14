// Package enginetest helps the target kinds' tests.
package enginetest

import (
	"context"
	"fmt"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/sync/engine"
)

// Plan diffs a target's real current records against its desired state
// for state, as a run that knows nothing of the target does.
func Plan(ctx context.Context, t engine.Target, state *directory.State) (*engine.Plan, error) {
	current, err := t.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("read current state: %w", err)
	}
	desired, err := t.Desired(state)
	if err != nil {
		return nil, fmt.Errorf("desired state: %w", err)
	}
	p, err := engine.NewPlan(t.Name(), current, desired)
	if n, ok := t.(engine.Noter); ok && err == nil {
		p.Notes = n.Notes()
	}
	return p, err
}
