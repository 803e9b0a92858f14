// Package maintenance knows when a target is down for maintenance: fixed
// windows from the configuration and events of an iCalendar file
// (recurring ones included), e.g. the downtimes a centre announces. A
// target's changes are held during a window and applied when it ends.
package maintenance

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-ical"
)

// Window is one maintenance period, [Start, End).
type Window struct {
	Start   time.Time `yaml:"start" json:"start"`
	End     time.Time `yaml:"end" json:"end"`
	Summary string    `yaml:"summary" json:"summary,omitempty"`
	// Services are what the window affects: a calendar event's
	// CATEGORIES, a fixed window's own list.
	Services []string `yaml:"services" json:"services,omitempty"`
}

// Contains reports whether t falls in the window.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// Config is a target's maintenance section.
type Config struct {
	// Windows are fixed windows.
	Windows []Window `yaml:"windows"`
	// Calendar is an iCalendar file, read again whenever it changes.
	Calendar string `yaml:"calendar"`
	// Services select the calendar's events that concern the target: an
	// event counts when one of its CATEGORIES is a service, or its
	// SUMMARY names one as a word. Empty: every event counts.
	Services []string `yaml:"services"`
}

// Empty reports whether nothing is configured.
func (c Config) Empty() bool { return len(c.Windows) == 0 && c.Calendar == "" }

// horizon is how far ahead (and back, for long events) occurrences are
// expanded.
const horizon = 400 * 24 * time.Hour

// Schedule answers for one target's configuration.
type Schedule struct {
	cfg Config

	mu sync.Mutex
	// cal is the calendar as last read, and the file's identity then.
	cal     *Calendar
	modTime time.Time
	size    int64
}

// Calendar is a parsed calendar: its events, and the zone of its floating
// times (X-WR-TIMEZONE, else the host's).
type Calendar struct {
	Events []ical.Event
	Zone   *time.Location
}

// New returns the schedule of a configuration.
func New(cfg Config) *Schedule { return &Schedule{cfg: cfg} }

// At returns the window covering now (nil when none) and the next window
// to start after now within a year (nil when none).
func (s *Schedule) At(now time.Time) (current, next *Window, err error) {
	ws, err := s.Windows(now.Add(-horizon), now.Add(horizon))
	if err != nil {
		return nil, nil, err
	}
	for _, w := range merge(ws) {
		switch {
		case w.Contains(now):
			current = &w
		case w.Start.After(now):
			return current, &w, nil // the first after now: they are sorted
		}
	}
	return current, nil, nil
}

// merge makes windows sorted by start that overlap or touch into one
// (the first one's summary).
func merge(ws []Window) []Window {
	var out []Window
	for _, w := range ws {
		if n := len(out); n > 0 && !w.Start.After(out[n-1].End) {
			if w.End.After(out[n-1].End) {
				out[n-1].End = w.End
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

// Windows returns every window overlapping [from, to), sorted by start.
func (s *Schedule) Windows(from, to time.Time) ([]Window, error) {
	var out []Window
	for _, w := range s.cfg.Windows {
		if w.End.After(from) && w.Start.Before(to) {
			out = append(out, w)
		}
	}
	if s.cfg.Calendar != "" {
		cal, err := s.calendar()
		if err != nil {
			return nil, err
		}
		for i := range cal.Events {
			ws, err := occurrences(&cal.Events[i], cal.Zone, from, to)
			if err != nil {
				return nil, fmt.Errorf("calendar %s: %w", s.cfg.Calendar, err)
			}
			for _, w := range ws {
				if s.concerns(&cal.Events[i]) {
					out = append(out, w)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Window) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// concerns reports whether an event names one of the target's services.
func (s *Schedule) concerns(e *ical.Event) bool {
	if len(s.cfg.Services) == 0 {
		return true
	}
	cats := categories(e)
	summary, _ := e.Props.Text(ical.PropSummary)
	words := strings.FieldsFunc(strings.ToLower(summary), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})
	for _, svc := range s.cfg.Services {
		svc = strings.ToLower(svc)
		for _, c := range cats {
			if strings.EqualFold(c, svc) {
				return true
			}
		}
		if slices.Contains(words, svc) {
			return true
		}
	}
	return false
}

// categories are an event's CATEGORIES, every value of every such
// property (a list: Props.Text gave only the first, so "slurm,batch" did
// not concern batch).
func categories(e *ical.Event) []string {
	var out []string
	for _, p := range e.Props.Values(ical.PropCategories) {
		l, err := p.TextList()
		if err != nil {
			continue
		}
		for _, c := range l {
			if c = strings.TrimSpace(c); c != "" {
				out = append(out, c)
			}
		}
	}
	return out
}

// calendar returns the calendar's events, parsing the file again only
// when it changed.
func (s *Schedule) calendar() (*Calendar, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.cfg.Calendar)
	if err != nil {
		return nil, fmt.Errorf("calendar: %w", err)
	}
	if s.cal != nil && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return s.cal, nil
	}
	cal, err := Parse(s.cfg.Calendar)
	if err != nil {
		return nil, err
	}
	s.cal, s.modTime, s.size = cal, fi.ModTime(), fi.Size()
	return cal, nil
}

// Parse reads an iCalendar file's events, each checked to have a start
// and an end (DTEND or DURATION) after it, and to recur no more often
// than hourly. Floating times (no TZID, no Z) are in the calendar's
// X-WR-TIMEZONE, else the host's zone.
func Parse(path string) (_ *Calendar, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("calendar: %w", err)
	}
	defer f.Close()
	// The decoder panics on some malformed lines (fuzzing found "0;0="):
	// a broken file is an error naming it, never a crash of the daemon.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("calendar %s: not an iCalendar file (%v)", path, r)
		}
	}()
	cal, err := ical.NewDecoder(f).Decode()
	if err != nil {
		return nil, fmt.Errorf("calendar %s: %w", path, err)
	}
	zone := time.Local
	if name, err := cal.Props.Text("X-WR-TIMEZONE"); err == nil && name != "" {
		if zone, err = time.LoadLocation(name); err != nil {
			return nil, fmt.Errorf("calendar %s: X-WR-TIMEZONE %q: %w", path, name, err)
		}
	}
	events := cal.Events()
	for i := range events {
		if _, err := occurrences(&events[i], zone, time.Time{}, time.Time{}); err != nil {
			return nil, fmt.Errorf("calendar %s: %w", path, err)
		}
	}
	return &Calendar{Events: events, Zone: zone}, nil
}

// Bounds on an event's recurrence: occurrences at least an hour apart
// (a downtime, not a heartbeat), and at most maxIterations of them
// generated from its start to the end of a window asked for (each run
// expands them: BYMINUTE or BYSECOND parts made millions).
const (
	minGap        = time.Hour
	maxIterations = 200_000
)

// occurrences expands an event into the windows overlapping [from, to);
// with zero bounds it only checks the event.
func occurrences(e *ical.Event, zone *time.Location, from, to time.Time) ([]Window, error) {
	uid, _ := e.Props.Text(ical.PropUID)
	summary, _ := e.Props.Text(ical.PropSummary)
	services := categories(e)
	name := summary
	if name == "" {
		name = uid
	}
	start, err := e.DateTimeStart(zone)
	if err != nil {
		return nil, fmt.Errorf("event %q: start: %w", name, err)
	}
	if sp := e.Props.Get(ical.PropDateTimeStart); e.Props.Get(ical.PropDateTimeEnd) == nil && e.Props.Get(ical.PropDuration) == nil &&
		(sp == nil || sp.ValueType() != ical.ValueDate) {
		// (A whole day, DTSTART;VALUE=DATE alone, lasts the day.)
		return nil, fmt.Errorf("event %q: has neither DTEND nor DURATION: a downtime needs an end", name)
	}
	end, err := e.DateTimeEnd(zone)
	if err != nil {
		return nil, fmt.Errorf("event %q: end: %w", name, err)
	}
	length := end.Sub(start)
	if length <= 0 {
		return nil, fmt.Errorf("event %q: ends (%s) before it starts (%s)", name, end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	set, err := e.RecurrenceSet(zone)
	if err != nil {
		return nil, fmt.Errorf("event %q: recurrence: %w", name, err)
	}
	if set == nil {
		if end.After(from) && start.Before(to) {
			return []Window{{Start: start, End: end, Summary: summary, Services: services}}, nil
		}
		return nil, nil
	}
	// Walk the occurrences one at a time (never a list of them all): the
	// first ones say whether they come more often than hourly, and the
	// walk stops at the end of the range or at maxIterations.
	next := set.Iterator()
	var out []Window
	var last time.Time
	for n := 0; ; n++ {
		at, ok := next()
		if !ok || (!to.IsZero() && !at.Before(to)) || (to.IsZero() && n >= 64) {
			return out, nil
		}
		if n > 0 && at.Sub(last) < minGap {
			return nil, fmt.Errorf("event %q: recurs more often than hourly (%s, then %s)", name, last.Format(time.RFC3339), at.Format(time.RFC3339))
		}
		if n >= maxIterations {
			return nil, fmt.Errorf("event %q: more than %d occurrences from its start (%s) to %s: give it a later DTSTART",
				name, maxIterations, start.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		last = at
		if w := (Window{Start: at, End: at.Add(length), Summary: summary, Services: services}); w.End.After(from) && w.Start.Before(to) {
			out = append(out, w)
		}
	}
}
