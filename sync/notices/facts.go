package notices

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/maintenance"
	"github.com/collabsync/collabsync/sync/engine"
)

// Fact is what a notice tells of: one kind of thing that became true.
type Fact string

// The facts collabsync tells people of.
const (
	// AccountActive: to the user, when their account becomes active.
	AccountActive Fact = "account-active"
	// AccountSuspended: to the user, when their account is suspended.
	AccountSuspended Fact = "account-suspended"
	// ReviewDue: to a collaboration's contacts, once per threshold (30,
	// 14 and 7 days by default) before its review date.
	ReviewDue Fact = "review-due"
	// ReviewExpired: to a collaboration's contacts, when its review
	// lapsed.
	ReviewExpired Fact = "review-expired"
	// AwaitingValidation: to the validators of an external user's
	// collaborations, while the user waits for one of them.
	AwaitingValidation Fact = "awaiting-validation"
	// PendingValidation: to the external user, while their account waits
	// for a validator (what they can act on: ask one).
	PendingValidation Fact = "pending-validation"
	// ProductionCreated: to a production account's managers (or its
	// collaboration's contacts), when it is provisioned.
	ProductionCreated Fact = "production-created"
	// ProductionRemoved is sent when a ProductionCreated fact ends.
	ProductionRemoved Fact = "production-removed"
	// MaintenanceAhead: to the announcement address, a maintenance window
	// announce.days_ahead days before it starts.
	MaintenanceAhead Fact = "maintenance-ahead"
	// MaintenanceReminder: to the announcement address, the day before.
	MaintenanceReminder Fact = "maintenance-reminder"
	// AllocationUsed: to a collaboration's computing contacts, when its
	// use of an allocation in the period reaches a threshold (once per
	// threshold, resource and period).
	AllocationUsed Fact = "allocation-used"
	// UsageReport: to a collaboration's reporting contacts, its usage of
	// the last month by member (CSV) and its last twelve months (chart),
	// once a month, for collaborations that used anything.
	UsageReport Fact = "usage-report"
)

// Use is a collaboration's use of one allocated resource in a period.
type Use struct {
	Collaboration string
	Resource      string // core-hours, gpu-hours
	// The period, YYYY-MM-DD: Start inclusive, End exclusive.
	PeriodStart, PeriodEnd string
	Used, Allocated        float64
}

// kind is the record kind of every notice.
const kind = "notice"

// Notice is one fact told to one recipient: the record a notices target
// holds, once sent, in its ledger.
type Notice struct {
	Fact    Fact   `json:"fact"`
	Subject string `json:"subject"` // a uid, a collaboration's or a production account's name
	// Period tells one occurrence of a fact from the next (a review date
	// and its threshold); empty for facts that are true or not.
	Period string `json:"period,omitempty"`
	To     string `json:"to"` // the recipient's uid
	Mail   string `json:"mail"`
	// Name is the recipient's name, for the greeting.
	Name string `json:"name,omitempty"`
	// What the template shows besides.
	Collaborations []string `json:"collaborations,omitempty"`
	User           string   `json:"user,omitempty"`       // the user a notice to others is about
	Validators     []string `json:"validators,omitempty"` // who can validate the user ("Name <mail>")
	UserName       string   `json:"user_name,omitempty"`  // their name
	Date           string   `json:"date,omitempty"`       // a review's date, YYYY-MM-DD
	Days           int      `json:"days,omitempty"`       // days until it
	// A maintenance window's start and end (in the calendar's zone),
	// summary and services.
	Start    string   `json:"start,omitempty"`
	End      string   `json:"end,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	Services []string `json:"services,omitempty"`
	// An allocation's use: the resource, the threshold reached (percent),
	// hours used and allocated, the period's end.
	Resource  string `json:"resource,omitempty"`
	Percent   int    `json:"percent,omitempty"`
	Used      int64  `json:"used,omitempty"`
	Allocated int64  `json:"allocated,omitempty"`
}

// Key is the notice's record key: fact, subject, period, recipient. The
// ledger holds one record per key, so a notice is sent once per period.
func (n Notice) Key() string {
	return string(n.Fact) + "/" + n.Subject + "/" + n.Period + "/" + n.To
}

// light reports whether a notice's record holds its key alone: the facts
// every user has (100k records at 100k users) are told again from the
// state when they are sent, so a run neither encodes nor keeps their
// content.
func (n Notice) light() bool { return n.Fact == AccountActive || n.Fact == AccountSuspended }

func (n Notice) record() engine.Record {
	if n.light() {
		return engine.Record{Kind: kind, Key: n.Key()}
	}
	data, _ := json.Marshal(n) // a plain struct: cannot fail
	return engine.Record{Kind: kind, Key: n.Key(), Value: string(data)}
}

// lightNotice makes a light notice whole from its key and the state it
// was planned from: the user's address, name and active collaborations.
func lightNotice(state *directory.State, key string) (Notice, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || state == nil {
		return Notice{}, false
	}
	n := Notice{Fact: Fact(parts[0]), Subject: parts[1], Period: parts[2], To: parts[3]}
	u, ok := state.User(n.To)
	if !ok || !n.light() {
		return Notice{}, false
	}
	n.Mail, n.Name = u.Mail, u.Name
	if n.Fact == AccountActive {
		for i := range state.Collaborations {
			c := &state.Collaborations[i]
			if _, found := slices.BinarySearch(c.ActiveMembers, n.To); c.Provisioned && found {
				n.Collaborations = append(n.Collaborations, c.Name)
			}
		}
	}
	return n, true
}

// facts emits what the state makes true, a notice per recipient (one per
// user at least: emitted, not collected, as each is 300 bytes and most
// are kept as their key alone). today is the day (UTC midnight) the
// reviews are counted from.
func facts(state *directory.State, today time.Time, reviewDays []int, optOut string, emit func(Notice)) {
	to := func(n Notice, uid string) {
		u, ok := state.User(uid)
		if !ok || u.Mail == "" || slices.Contains(u.OptOuts, optOut) {
			return
		}
		n.To, n.Mail, n.Name = u.UID, u.Mail, u.Name
		emit(n)
	}
	contacts := func(c *directory.CollaborationState) []string {
		var uids []string
		for _, r := range []directory.Role{directory.RoleCollaboration, directory.RoleComputing} {
			uids = append(uids, c.Contacts[r]...)
		}
		slices.Sort(uids)
		return slices.Compact(uids)
	}
	// External users waiting for a validator (few), the collaborations
	// they asked to join and those collaborations' validators.
	waiting := map[string]bool{}
	for _, u := range state.Users {
		if u.Status == directory.StatusPending && !u.Internal && u.ValidatedBy == "" {
			waiting[u.UID] = true
		}
	}
	validators, asked := map[string][]string{}, map[string][]string{}
	for i := range state.Collaborations {
		c := &state.Collaborations[i]
		if len(waiting) > 0 {
			for _, m := range c.Members {
				if waiting[m] {
					asked[m] = append(asked[m], c.Name)
					validators[m] = append(validators[m], c.Contacts[directory.RoleValidator]...)
				}
			}
		}
		switch {
		case c.Status == directory.StatusExpired:
			for _, uid := range contacts(c) {
				to(Notice{Fact: ReviewExpired, Subject: c.Name, Period: day(c.ReviewedUntil), Date: day(c.ReviewedUntil)}, uid)
			}
		case c.Status == directory.StatusActive && !c.ReviewedUntil.IsZero():
			days := int(c.ReviewedUntil.UTC().Truncate(24*time.Hour).Sub(today).Hours()) / 24 // whole days
			if threshold, ok := dueAt(days, reviewDays); ok {
				for _, uid := range contacts(c) {
					to(Notice{Fact: ReviewDue, Subject: c.Name, Period: strconv.Itoa(threshold) + "d:" + day(c.ReviewedUntil),
						Date: day(c.ReviewedUntil), Days: days}, uid)
				}
			}
		}
	}
	for _, u := range state.Users {
		switch {
		case u.Status == directory.StatusActive:
			// Its collaborations are looked up when it is sent (light).
			to(Notice{Fact: AccountActive, Subject: u.UID}, u.UID)
		case u.Status == directory.StatusSuspended:
			to(Notice{Fact: AccountSuspended, Subject: u.UID}, u.UID)
		case waiting[u.UID]:
			vs := validators[u.UID]
			slices.Sort(vs)
			vs = slices.Compact(vs)
			var names []string
			for _, v := range vs {
				to(Notice{Fact: AwaitingValidation, Subject: u.UID, User: u.UID, UserName: u.Name}, v)
				if p, ok := state.User(v); ok {
					names = append(names, p.Name+" <"+p.Mail+">")
				}
			}
			to(Notice{Fact: PendingValidation, Subject: u.UID, Collaborations: asked[u.UID], Validators: names}, u.UID)
		}
	}
	for _, p := range state.ProductionAccounts {
		if !p.Active {
			continue
		}
		managers := p.Managers
		if len(managers) == 0 {
			if c, ok := state.Collaboration(p.Collaboration); ok {
				managers = contacts(c)
			}
		}
		for _, uid := range managers {
			to(Notice{Fact: ProductionCreated, Subject: p.Name, Collaborations: nonEmpty(p.Collaboration)}, uid)
		}
	}
}

// announcements are the notices of the maintenance windows: one
// daysAhead days before a window starts (or when it is first seen within
// that), a reminder on the day before.
func announcements(windows []maintenance.Window, now time.Time, daysAhead int, to string) []Notice {
	var out []Notice
	today := now.UTC().Truncate(24 * time.Hour)
	for _, w := range windows {
		if !w.Start.After(now) {
			continue // begun: nothing to announce
		}
		days := int(w.Start.UTC().Truncate(24*time.Hour).Sub(today).Hours()) / 24
		n := Notice{Subject: w.Start.UTC().Format(time.RFC3339), To: to, Mail: to, Name: "users",
			Start: w.Start.Format(stamp), End: w.End.Format(stamp), Summary: w.Summary, Services: w.Services, Days: days}
		n.Period = n.Subject
		switch {
		case days <= 1:
			n.Fact = MaintenanceReminder
		case days <= daysAhead:
			n.Fact = MaintenanceAhead
		default:
			continue
		}
		out = append(out, n)
	}
	return out
}

// allocationNotices tell each collaboration's computing contacts (its
// collaboration contacts when it has none) the highest threshold its use
// of an allocation has reached in the period.
func allocationNotices(state *directory.State, uses []Use, thresholds []int, optOut string) []Notice {
	var out []Notice
	for _, u := range uses {
		if u.Allocated <= 0 {
			continue
		}
		c, ok := state.Collaboration(u.Collaboration)
		if !ok {
			continue
		}
		reached := 0
		for _, th := range thresholds {
			if u.Used*100 >= float64(th)*u.Allocated && th > reached {
				reached = th
			}
		}
		if reached == 0 {
			continue
		}
		to := c.Contacts[directory.RoleComputing]
		if len(to) == 0 {
			to = c.Contacts[directory.RoleCollaboration]
		}
		for _, uid := range to {
			p, ok := state.User(uid)
			if !ok || p.Mail == "" || slices.Contains(p.OptOuts, optOut) {
				continue
			}
			out = append(out, Notice{Fact: AllocationUsed, Subject: u.Collaboration, Period: u.Resource + ":" + u.PeriodStart + ":" + strconv.Itoa(reached),
				To: p.UID, Mail: p.Mail, Name: p.Name, Resource: u.Resource, Percent: reached, Used: int64(u.Used), Allocated: int64(u.Allocated),
				Start: u.PeriodStart, End: u.PeriodEnd})
		}
	}
	return out
}

// reportNotices tell the reporting contacts of each collaboration that
// used anything in month (YYYY-MM) of its report.
func reportNotices(state *directory.State, used []string, month, optOut string) []Notice {
	var out []Notice
	for _, name := range used {
		c, ok := state.Collaboration(name)
		if !ok {
			continue
		}
		for _, uid := range c.Contacts[directory.RoleReporting] {
			p, ok := state.User(uid)
			if !ok || p.Mail == "" || slices.Contains(p.OptOuts, optOut) {
				continue
			}
			out = append(out, Notice{Fact: UsageReport, Subject: name, Period: month, To: p.UID, Mail: p.Mail, Name: p.Name, Date: month})
		}
	}
	return out
}

// lastMonth is the month before now's, YYYY-MM.
func lastMonth(now time.Time) string {
	y, m, _ := now.UTC().Date()
	return time.Date(y, m-1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01")
}

// stamp is how a window's times are shown.
const stamp = "Monday 2 January 2006 15:04 MST"

// dueAt returns the smallest threshold that days is within.
func dueAt(days int, thresholds []int) (int, bool) {
	best, ok := 0, false
	for _, t := range thresholds {
		if days >= 0 && days <= t && (!ok || t < best) {
			best, ok = t, true
		}
	}
	return best, ok
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
