// Package gallop searches an ascending list from a known position:
// members of a sorted list looked up one after another among many more
// users cost O(m log(n/m)) compares instead of O(m log n).
package gallop

import "slices"

// Search is slices.BinarySearchFunc for a target that every element of
// s before from sorts below: it doubles its step from from until it
// passes the target, then searches that window. It returns where the
// target is or would be inserted, and whether it is there; that position
// is where the search for a larger target may start.
func Search[S ~[]E, E, T any](s S, target T, from int, cmp func(E, T) int) (int, bool) {
	n, bound := len(s), 1
	for from+bound < n && cmp(s[from+bound], target) < 0 {
		bound <<= 1
	}
	lo := min(from+bound/2, n)
	i, ok := slices.BinarySearchFunc(s[lo:min(from+bound+1, n)], target, cmp)
	return lo + i, ok
}
