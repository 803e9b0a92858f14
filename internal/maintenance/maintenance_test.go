package maintenance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

const calendar = `BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//centre//downtimes//EN
BEGIN:VEVENT
UID:q1@centre
DTSTAMP:20261101T000000Z
DTSTART:20261208T070000Z
DTEND:20261208T170000Z
SUMMARY:Quarterly downtime: Slurm upgrade
CATEGORIES:slurm,batch
END:VEVENT
BEGIN:VEVENT
UID:lists@centre
DTSTAMP:20261101T000000Z
DTSTART:20261203T220000Z
DURATION:PT2H
SUMMARY:Mailman database move
END:VEVENT
BEGIN:VEVENT
UID:weekly@centre
DTSTAMP:20261101T000000Z
DTSTART:20261102T060000Z
DTEND:20261102T063000Z
RRULE:FREQ=WEEKLY;BYDAY=MO
SUMMARY:weekly patching of the login nodes
CATEGORIES:nss
END:VEVENT
END:VCALENDAR
`

func writeCalendar(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "downtimes.ics")
	os.WriteFile(p, []byte(strings.ReplaceAll(text, "\n", "\r\n")), 0o644)
	return p
}

func TestSchedule(t *testing.T) {
	cal := writeCalendar(t, calendar)
	for _, tc := range []struct {
		name          string
		cfg           Config
		now           string
		current, next string // "start end", "" for none
	}{
		{"fixed window, inside", Config{Windows: []Window{{Start: at("2026-12-01T08:00:00Z"), End: at("2026-12-01T18:00:00Z")}}},
			"2026-12-01T12:00:00Z", "2026-12-01T08:00:00Z 2026-12-01T18:00:00Z", ""},
		{"fixed window, before", Config{Windows: []Window{{Start: at("2026-12-01T08:00:00Z"), End: at("2026-12-01T18:00:00Z")}}},
			"2026-11-30T12:00:00Z", "", "2026-12-01T08:00:00Z 2026-12-01T18:00:00Z"},
		{"end is not inside", Config{Windows: []Window{{Start: at("2026-12-01T08:00:00Z"), End: at("2026-12-01T18:00:00Z")}}},
			"2026-12-01T18:00:00Z", "", ""},
		{"windows that touch make one", Config{Windows: []Window{{Start: at("2026-12-01T08:00:00Z"), End: at("2026-12-01T12:00:00Z")},
			{Start: at("2026-12-01T12:00:00Z"), End: at("2026-12-01T14:00:00Z")}, {Start: at("2026-12-02T08:00:00Z"), End: at("2026-12-02T09:00:00Z")}}},
			"2026-12-01T09:00:00Z", "2026-12-01T08:00:00Z 2026-12-01T14:00:00Z", "2026-12-02T08:00:00Z 2026-12-02T09:00:00Z"},
		{"calendar, the slurm service", Config{Calendar: cal, Services: []string{"slurm"}},
			"2026-12-05T00:00:00Z", "", "2026-12-08T07:00:00Z 2026-12-08T17:00:00Z"},
		{"calendar, mailman named in the summary, DURATION", Config{Calendar: cal, Services: []string{"mailman"}},
			"2026-12-03T23:00:00Z", "2026-12-03T22:00:00Z 2026-12-04T00:00:00Z", ""},
		{"calendar, the second of an event's categories", Config{Calendar: cal, Services: []string{"batch"}},
			"2026-12-05T00:00:00Z", "", "2026-12-08T07:00:00Z 2026-12-08T17:00:00Z"},
		{"calendar, a weekly event", Config{Calendar: cal, Services: []string{"nss"}},
			"2027-03-10T00:00:00Z", "", "2027-03-15T06:00:00Z 2027-03-15T06:30:00Z"},
		{"calendar, inside the weekly event", Config{Calendar: cal, Services: []string{"nss"}},
			"2027-03-15T06:10:00Z", "2027-03-15T06:00:00Z 2027-03-15T06:30:00Z", "2027-03-22T06:00:00Z 2027-03-22T06:30:00Z"},
		{"calendar, no service: every event", Config{Calendar: cal},
			"2026-12-03T21:00:00Z", "", "2026-12-03T22:00:00Z 2026-12-04T00:00:00Z"},
		{"a service no event names", Config{Calendar: cal, Services: []string{"aliases"}},
			"2026-12-05T00:00:00Z", "", ""},
	} {
		cur, next, err := New(tc.cfg).At(at(tc.now))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		str := func(w *Window) string {
			if w == nil {
				return ""
			}
			return w.Start.UTC().Format(time.RFC3339) + " " + w.End.UTC().Format(time.RFC3339)
		}
		if str(cur) != tc.current || str(next) != tc.next {
			t.Errorf("%s: current %q next %q, want %q and %q", tc.name, str(cur), str(next), tc.current, tc.next)
		}
	}
}

// TestCalendarChanges: an edited file is read again; a broken one is an
// error naming it; a fixed one works again.
func TestCalendarChanges(t *testing.T) {
	cal := writeCalendar(t, calendar)
	s := New(Config{Calendar: cal, Services: []string{"slurm"}})
	if _, next, err := s.At(at("2026-12-05T00:00:00Z")); err != nil || next == nil {
		t.Fatalf("next %v, err %v", next, err)
	}
	os.WriteFile(cal, []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n"), 0o644)
	if _, _, err := s.At(at("2026-12-05T00:00:00Z")); err == nil || !strings.Contains(err.Error(), cal) {
		t.Errorf("a broken calendar: %v", err)
	}
	minutely := strings.Replace(calendar, "RRULE:FREQ=WEEKLY;BYDAY=MO", "RRULE:FREQ=MINUTELY", 1)
	os.WriteFile(cal, []byte(strings.ReplaceAll(minutely, "\n", "\r\n")), 0o644)
	if _, _, err := s.At(at("2026-12-05T00:00:00Z")); err == nil || !strings.Contains(err.Error(), "more often than hourly") {
		t.Errorf("a minutely event: %v", err)
	}
	// BYMINUTE and BYSECOND make a rule of a coarser FREQ more often
	// than hourly: refused as such, at once (before: a million windows
	// expanded at every run, 4-6 s and up to 820 MB each).
	for _, rule := range []string{"FREQ=HOURLY;BYMINUTE=0,10,20,30,40,50", "FREQ=DAILY;BYSECOND=0,30"} {
		os.WriteFile(cal, []byte(strings.ReplaceAll(strings.Replace(calendar, "FREQ=WEEKLY;BYDAY=MO", rule, 1), "\n", "\r\n")), 0o644)
		start := time.Now()
		if _, _, err := s.At(at("2026-12-05T00:00:00Z")); err == nil || !strings.Contains(err.Error(), "more often than hourly") || time.Since(start) > time.Second {
			t.Errorf("%s: %v after %v", rule, err, time.Since(start))
		}
	}
	noEnd := strings.Replace(calendar, "DTEND:20261208T170000Z\n", "", 1)
	os.WriteFile(cal, []byte(strings.ReplaceAll(noEnd, "\n", "\r\n")), 0o644)
	if _, _, err := s.At(at("2026-12-05T00:00:00Z")); err == nil || !strings.Contains(err.Error(), "has neither DTEND nor DURATION") {
		t.Errorf("an event with a start only: %v", err)
	}
	backwards := strings.Replace(calendar, "DTEND:20261208T170000Z", "DTEND:20261207T170000Z", 1)
	os.WriteFile(cal, []byte(strings.ReplaceAll(backwards, "\n", "\r\n")), 0o644)
	if _, _, err := s.At(at("2026-12-05T00:00:00Z")); err == nil || !strings.Contains(err.Error(), "ends") {
		t.Errorf("an event ending before it starts: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(calendar))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "c.ics")
		os.WriteFile(p, data, 0o644)
		cal, err := Parse(p)
		if err != nil {
			return
		}
		for i := range cal.Events {
			if _, err := occurrences(&cal.Events[i], cal.Zone, at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")); err != nil {
				t.Fatalf("an event Parse accepted does not expand: %v", err)
			}
		}
	})
}

// TestFloatingTimes: a start without TZID or Z is in the calendar's
// X-WR-TIMEZONE, else the host's zone (before: always UTC, a window 14 h
// late in Pacific/Kiritimati).
func TestFloatingTimes(t *testing.T) {
	floating := strings.NewReplacer("DTSTART:20261208T070000Z", "DTSTART:20261208T070000", "DTEND:20261208T170000Z", "DTEND:20261208T170000").Replace(calendar)
	for _, c := range []struct {
		name, text string
		zone       *time.Location
	}{
		{"X-WR-TIMEZONE", strings.Replace(floating, "PRODID:-//centre//downtimes//EN\n", "PRODID:-//centre//downtimes//EN\nX-WR-TIMEZONE:Pacific/Kiritimati\n", 1), nil},
		{"the host's zone", floating, time.Local},
	} {
		s := New(Config{Calendar: writeCalendar(t, c.text), Services: []string{"slurm"}})
		ws, err := s.Windows(at("2026-12-01T00:00:00Z"), at("2026-12-31T00:00:00Z"))
		if err != nil || len(ws) != 1 {
			t.Fatalf("%s: %v %v", c.name, ws, err)
		}
		zone := c.zone
		if zone == nil {
			zone, _ = time.LoadLocation("Pacific/Kiritimati")
		}
		if want := time.Date(2026, 12, 8, 7, 0, 0, 0, zone); !ws[0].Start.Equal(want) {
			t.Errorf("%s: starts %v, want %v", c.name, ws[0].Start.UTC(), want.UTC())
		}
	}
}
