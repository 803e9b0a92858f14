package daemon

import (
	"context"
	"time"

	"github.com/collabsync/collabsync/internal/store"
)

// backoff doubles from lo with each attempt, up to hi.
func backoff(attempts int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempts && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// retryQueue adapts the store's outbox to engine.Queue.
type retryQueue struct {
	store    *store.Store
	min, max time.Duration
}

func (q *retryQueue) Waiting(ctx context.Context) (map[string]time.Time, error) {
	queued, err := q.store.Queue(ctx)
	out := make(map[string]time.Time, len(queued))
	for _, e := range queued {
		out[e.Target] = e.NextAttempt
	}
	return out, err
}

func (q *retryQueue) Fail(ctx context.Context, target string, changes int, cause error) error {
	_, err := q.store.Enqueue(ctx, target, changes, cause, func(n int) time.Duration { return backoff(n, q.min, q.max) }, time.Now())
	return err
}

func (q *retryQueue) Succeed(ctx context.Context, target string) error {
	return q.store.Dequeue(ctx, target)
}
