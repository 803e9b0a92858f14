package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestFor: every index once, whatever the size of the loop and the runs,
// on one core or several.
func TestFor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, tc := range []struct{ n, run int }{{0, 256}, {1, 256}, {255, 256}, {257, 256}, {10_000, 256}, {7, 1}, {5, 0}} {
		seen := make([]atomic.Int32, tc.n)
		For(tc.n, tc.run, func(i int) { seen[i].Add(1) })
		for i := range seen {
			if c := seen[i].Load(); c != 1 {
				t.Fatalf("n %d, runs of %d: index %d called %d times", tc.n, tc.run, i, c)
			}
		}
	}
}
