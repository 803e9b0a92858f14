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

// Run plans as Plan does and applies the plan when it changes anything,
// as a run of the engine does; the error is the plan's or the apply's.
func Run(ctx context.Context, t engine.Target, state *directory.State) (*engine.Plan, error) {
	p, err := Plan(ctx, t, state)
	if err != nil || len(p.Changes) == 0 {
		return p, err
	}
	return p, t.Apply(ctx, p)
}
