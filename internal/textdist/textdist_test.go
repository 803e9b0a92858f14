package textdist

import "testing"

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"atlas", "atlas", 0}, {"atlsa", "atlas", 2}, {"", "abc", 3}, {"kitten", "sitting", 3}} {
		if got := Levenshtein(c.a, c.b); got != c.want {
			t.Errorf("%q %q: %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
