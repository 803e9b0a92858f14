//go:build race

package main

// raceEnabled: the tests run with -race, so the binary they drive is built
// with it too (the daemon's goroutines are then race-checked end to end).
const raceEnabled = true
