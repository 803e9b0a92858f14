// Package parallel runs the iterations of a loop on every core.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls fn(i) for every i in [0, n), on as many goroutines as
// GOMAXPROCS (one when n is a single run), each taking the next run of
// indexes in turn: a long iteration (a collaboration of 200k members)
// does not hold the others up. fn must be safe to call concurrently;
// For returns when every call has.
func For(n, run int, fn func(i int)) {
	run = max(run, 1)
	var next atomic.Int64
	work := func() {
		for {
			lo := int(next.Add(int64(run))) - run
			if lo >= n {
				return
			}
			for i := lo; i < min(lo+run, n); i++ {
				fn(i)
			}
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), (n+run-1)/run) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
