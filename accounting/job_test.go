package accounting

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseElapsed(t *testing.T) {
	for in, want := range map[string]int64{
		"00:00:00": 0, "01:02:03": 3723, "3-00:00:00": 259200, "2-22:03:04": 252184, "05:30": 330,
		"144:00:00": 518400, "00:00:01.250": 1,
	} {
		if got, err := ParseElapsed(in); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "1:60:00", "-1:00:00", "1-2", "1:2:3:4", "1--1:00:00"} {
		if _, err := ParseElapsed(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSlurmState(t *testing.T) {
	for in, want := range map[string]string{"COMPLETED": "COMPLETED", "CANCELLED by 1001": "CANCELLED", "NODE_FAIL": "NODE_FAIL", "cancelled+": "CANCELLED"} {
		if got, err := SlurmState(in); err != nil || got != want {
			t.Errorf("%s: %s %v", in, got, err)
		}
	}
	if _, err := SlurmState("RUNNING"); err != ErrNotEnded {
		t.Errorf("RUNNING: %v", err)
	}
	if _, err := SlurmState("FOO"); err == nil || err == ErrNotEnded {
		t.Errorf("FOO: %v", err)
	}
}

func FuzzParseElapsed(f *testing.F) {
	for _, s := range []string{"3-00:00:00", "05:30", "144:00:00", "1:2:3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseElapsed(s)
		if err == nil && n < 0 {
			t.Errorf("%q → %d", s, n)
		}
		if want, werr := plainParseElapsed(s); n != want || (err == nil) != (werr == nil) {
			t.Errorf("%q → %d, %v; the plain reading gives %d, %v", s, n, err, want, werr)
		}
	})
}

// plainParseElapsed is ParseElapsed written the obvious way (split on ':'),
// the reference the allocation-free version must agree with.
func plainParseElapsed(s string) (int64, error) {
	bad := fmt.Errorf("bad duration %q", s)
	s = strings.TrimSpace(s)
	var days int64
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 || n > 36500 {
			return 0, bad
		}
		days, s = n, rest
	}
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 || (days > 0 && len(parts) != 3) {
		return 0, bad
	}
	var total int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 || n > 1_000_000_000 || (i > 0 && n >= 60) {
			return 0, bad
		}
		total = total*60 + n
	}
	if len(parts) == 1 {
		total *= 60
	}
	return days*86400 + total, nil
}

func TestParseLocalTimeFastPathAgrees(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	for _, s := range []string{"2026-01-01T00:00:00", "2026-07-01T12:30:05", "2026-03-29T02:30:00", "2026-10-25T02:30:00", "2024-02-29T23:59:59"} {
		for _, loc := range []*time.Location{time.UTC, paris} {
			want, err := time.ParseInLocation("2006-01-02T15:04:05", s, loc)
			got, err2 := ParseLocalTime(s, loc)
			if err != nil || err2 != nil || !got.Equal(want) {
				t.Errorf("%s in %s: %v %v, want %v", s, loc, got, err2, want)
			}
		}
	}
	for _, bad := range []string{"2026-02-30T00:00:00", "2026-13-01T00:00:00", "2026-01-01T24:00:00", "2026-01-01 00:00:00", "x026-01-01T00:00:00"} {
		if _, err := ParseLocalTime(bad, time.UTC); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseLocalTime(f *testing.F) {
	f.Add("2026-07-01T12:30:05")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseLocalTime(s, time.UTC)
		want, werr := time.ParseInLocation("2006-01-02T15:04:05", s, time.UTC)
		if err == nil && werr == nil && !got.Equal(want) {
			t.Errorf("%q: fast %v, parser %v", s, got, want)
		}
		if err == nil && werr != nil && s != "" && s != "Unknown" && s != "None" && s != "N/A" {
			t.Errorf("%q accepted by the fast path only", s)
		}
	})
}
