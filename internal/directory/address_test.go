package directory

import (
	"strings"
	"testing"
)

func TestValidAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"alice@example.org", true},
		{"Alice.Martin+hpc@sub.example-lab.org", true},
		{"root@localhost", true},
		{"o'hara@example.org", false},
		{"|/bin/sh@example.org", false},
		{"/etc/passwd@example.org", false},
		{":include:/etc/x@example.org", false},
		{"a@b, |/bin/sh", false},
		{"a@b,c@d", false},
		{"a b@example.org", false},
		{"a@example.org\n|/bin/sh", false},
		{`"a"@example.org`, false},
		{"-oProxyCommand=x@example.org", false},
		{".a@example.org", false},
		{"a.@example.org", false},
		{"a..b@example.org", false},
		{"a@-example.org", false},
		{"a@example..org", false},
		{"a@.example.org", false},
		{"a@example.org-", false},
		{"a@example.org.", false},
		{"a@", false},
		{"spy%evil.org@lpnhe.example.org", false}, // the %-hack: relayed to evil.org
		{"@example.org", false},
		{"example.org", false},
		{"a@b@c", false},
		{"a@ex_ample.org", false},
		{strings.Repeat("a", 65) + "@example.org", false},
		{"a@" + strings.Repeat("b", 64) + ".org", false},
		{"", false},
	} {
		if got := ValidAddress(tc.addr); got != tc.ok {
			t.Errorf("ValidAddress(%q) = %v, want %v", tc.addr, got, tc.ok)
		}
	}
}

func FuzzValidAddress(f *testing.F) {
	f.Add("alice@example.org")
	f.Add("|x@y")
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidAddress(s) {
			return
		}
		// What passes can be written unquoted into every downstream format.
		if strings.ContainsAny(s, " \t\r\n,:|/\"\\#;<>()[]") || strings.HasPrefix(s, "-") || strings.Count(s, "@") != 1 {
			t.Fatalf("ValidAddress(%q) accepted a dangerous address", s)
		}
	})
}
