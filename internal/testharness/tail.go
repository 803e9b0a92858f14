package testharness

import "strings"

// Tail is the last 15 lines of a server's output, for an error message.
func Tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
