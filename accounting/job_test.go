package accounting

import "testing"

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
		if n, err := ParseElapsed(s); err == nil && n < 0 {
			t.Errorf("%q → %d", s, n)
		}
	})
}
