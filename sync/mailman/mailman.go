// Package mailman keeps GNU Mailman 3 lists in step with the directory
// through Mailman core's REST API: a list per active collaboration, a list
// of every active user and a list of every collaboration contact, each
// holding active users' addresses minus their opt-outs. It manages only
// the lists of its domain (and prefix); every other list is never read or
// changed.
package mailman

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/sync/engine"
)

// Record kinds: a list that exists, and an address subscribed to a list
// (its key "<list id> <address>").
const (
	KindList   = "list"
	KindMember = "member"
)

// What becomes of the list of a collaboration that is no longer active.
const (
	InactiveEmpty  = "empty"
	InactiveRemove = "remove"
)

// What becomes of members no directory user has as an address.
const (
	ForeignKeep   = "keep"
	ForeignRemove = "remove"
)

var (
	localPart = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]*$`)
	hostName  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
)

// Settings configure a mailman target instance.
type Settings struct {
	// URL is the REST API's root, e.g. http://127.0.0.1:8001 (without
	// /3.1); https is verified against the system roots or CAFile.
	URL          string            `yaml:"url"`
	User         string            `yaml:"user"`
	PasswordFile string            `yaml:"password_file"`
	CAFile       string            `yaml:"ca_file"`
	Timeout      duration.Duration `yaml:"timeout"`
	// Domain is the mail host of the lists this target manages (created
	// when missing); Prefix, when set, narrows them to names starting
	// with it. No other list is ever touched.
	Domain string `yaml:"domain"`
	Prefix string `yaml:"prefix"`
	// ListName names a collaboration's list when its directory entry
	// names none: "{collaboration}" is replaced, lower-cased.
	ListName string `yaml:"list_name"`
	// AllUsers and Contacts name the lists of every active user and of
	// every collaboration contact; empty for none.
	AllUsers string `yaml:"all_users"`
	Contacts string `yaml:"contacts"`
	// Style is the list style a new list is created with; ListSettings
	// are set on it (PATCH .../config) when it is created.
	Style        string            `yaml:"style"`
	ListSettings map[string]string `yaml:"list_settings"`
	Inactive     string            `yaml:"inactive"`
	Foreign      string            `yaml:"foreign_members"`
}

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	var probs []engine.SettingProblem
	bad := func(key, format string, args ...any) {
		probs = append(probs, engine.SettingProblem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url", "must be an http:// or https:// URL of Mailman's REST API, got %q", s.URL)
	}
	if s.PasswordFile == "" {
		bad("password_file", "is required (the REST API's admin password, in a file)")
	} else if data, err := os.ReadFile(s.PasswordFile); err != nil {
		bad("password_file", "%v", err)
	} else if strings.TrimSpace(string(data)) == "" {
		bad("password_file", "%s is empty", s.PasswordFile)
	}
	if s.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	if !hostName.MatchString(s.Domain) {
		bad("domain", "must be the lists' mail host, e.g. lists.example.org, got %q", s.Domain)
	}
	if !strings.Contains(s.ListName, "{collaboration}") {
		bad("list_name", "must contain {collaboration}, got %q", s.ListName)
	}
	for _, n := range []struct{ key, name string }{{"list_name", strings.ReplaceAll(s.ListName, "{collaboration}", "x")},
		{"all_users", s.AllUsers}, {"contacts", s.Contacts}} {
		if n.name == "" {
			continue
		}
		if !localPart.MatchString(n.name) {
			bad(n.key, "%q is not a list name (lower-case letters, digits, . _ + -)", n.name)
		} else if !strings.HasPrefix(n.name, s.Prefix) {
			bad(n.key, "%q does not start with prefix %q: the target would not manage it", n.name, s.Prefix)
		}
	}
	if s.Inactive != InactiveEmpty && s.Inactive != InactiveRemove {
		bad("inactive", "must be %s or %s, got %q", InactiveEmpty, InactiveRemove, s.Inactive)
	}
	if s.Foreign != ForeignKeep && s.Foreign != ForeignRemove {
		bad("foreign_members", "must be %s or %s, got %q", ForeignKeep, ForeignRemove, s.Foreign)
	}
	return probs
}

// Kind declares the mailman kind of target.
func Kind() engine.Kind {
	return engine.NewKind("mailman", func() *Settings {
		return &Settings{User: "restadmin", Timeout: duration.Duration(10 * time.Second), ListName: "{collaboration}",
			Style: "private-default", Inactive: InactiveEmpty, Foreign: ForeignKeep}
	}, New)
}

// Target is the mailman target.
type Target struct {
	name string
	s    Settings
	log  *slog.Logger
	once engine.Once
	call func(string)

	mu sync.Mutex
	// lists are the managed lists known to exist (read, or created by an
	// apply); rosters the members the last read found, until Desired
	// has taken the foreign ones from them.
	lists   map[string]bool
	rosters map[string][]string
	// foreign are members of managed lists that no directory user had
	// as an address when they were read: kept under foreign_members: keep.
	foreign map[string][]string
	// refused are the lists the last Desired left out, with why.
	refused []string
	// What the last desired state (whole, or by difference) was found
	// for: which lists each collaboration (by index) feeds, and which
	// collaborations feed each list. A collaboration's lists depend on
	// every other's names and lists (who claimed a list first), so they
	// hold for a later state as long as no changed collaboration's name
	// or lists changed.
	assignedFor *directory.State
	feeds       [][]string
	fedBy       map[string][]int
}

var (
	_ engine.Target   = (*Target)(nil)
	_ engine.Patcher  = (*Target)(nil)
	_ engine.Grouper  = (*Target)(nil)
	_ engine.Noter    = (*Target)(nil)
	_ engine.Settings = (*Settings)(nil)
)

// New returns a target for validated settings.
func New(name string, s *Settings, env engine.Env) *Target {
	env = env.Filled()
	return &Target{name: name, s: *s, log: env.Log, call: env.Call, lists: map[string]bool{}, foreign: map[string][]string{}}
}

// Name implements engine.Target.
func (t *Target) Name() string { return t.name }

// Group implements engine.Grouper: a member belongs to its list.
func (t *Target) Group(r engine.Record) string {
	if r.Kind != KindMember {
		return ""
	}
	list, _, _ := strings.Cut(r.Key, " ")
	return list
}

// listID is Mailman's id of a list of the managed domain.
func (t *Target) listID(name string) string { return name + "." + t.s.Domain }

// managed reports whether a list id is one this target manages.
func (t *Target) managed(id string) bool {
	name, ok := strings.CutSuffix(id, "."+t.s.Domain)
	return ok && strings.HasPrefix(name, t.s.Prefix) && localPart.MatchString(name)
}

// templateList is the list a collaboration gets when its entry names none.
func (t *Target) templateList(name string) string {
	return t.listID(strings.ToLower(strings.ReplaceAll(t.s.ListName, "{collaboration}", name)))
}

// collabLists names a collaboration's lists: those its entry names (a
// local part, or an address in the managed domain), else the template.
// One rule decides for both what the target manages (managed, which
// reading uses too); a list it cannot use, or one that is another's (a
// collaboration's by the template, one another entry named first, the
// all-users or contacts list), is left out for this collaboration and
// noted with its DN, never an error of the whole target.
func (t *Target) collabLists(c *directory.CollaborationState, claimed map[string]string) []string {
	own := ownList(c.Name)
	if len(c.Lists) == 0 {
		id := t.templateList(c.Name)
		switch owner := claimed[id]; {
		case !t.managed(id):
			t.refuse(c.DN, id, fmt.Sprintf("list_name makes %q of it, which is no list name this target manages", id))
			return nil
		case owner != own:
			t.refuse(c.DN, id, fmt.Sprintf("list_name makes %q of it, which is %s: its members would join it", id, owner))
			return nil
		}
		return []string{id}
	}
	var ids []string
	for _, l := range c.Lists {
		name, domain, hasDomain := strings.Cut(strings.ToLower(l), "@")
		id := t.listID(name)
		switch owner := claimed[id]; {
		case hasDomain && domain != t.s.Domain || !t.managed(id):
			t.refuse(c.DN, l, fmt.Sprintf("names %q, a list this target does not manage (domain %s, prefix %q)", l, t.s.Domain, t.s.Prefix))
		case owner != "" && owner != own:
			t.refuse(c.DN, l, fmt.Sprintf("names %q, which is %s: its members would join it", l, owner))
		default:
			claimed[id] = own
			ids = append(ids, id)
		}
	}
	return ids
}

// ownList is how a collaboration's claim on a list is named.
func ownList(collaboration string) string { return "collaboration " + collaboration + "'s list" }

// refuse notes a list left out for a collaboration, once per value.
func (t *Target) refuse(dn, list, why string) {
	t.once.Warn(t.log, dn+"\x00"+list, "a collaboration's list is left out", "dn", dn, "why", why)
	t.refused = append(t.refused, dn+": "+why+"; left out")
}

// Desired implements engine.Target.
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	members := map[string]map[string]bool{} // list id → addresses
	want := func(id string) map[string]bool {
		if members[id] == nil {
			members[id] = map[string]bool{}
		}
		return members[id]
	}
	// Lists that are someone's: the all-users and contacts lists, and
	// each collaboration's template list.
	t.refused = nil
	claimed := map[string]string{}
	for _, special := range []struct{ name, what string }{{t.s.AllUsers, "the list of all users"}, {t.s.Contacts, "the list of all contacts"}} {
		if special.name != "" {
			claimed[t.listID(special.name)] = special.what
		}
	}
	for i := range state.Collaborations {
		c := &state.Collaborations[i]
		if id := t.templateList(c.Name); len(c.Lists) == 0 && claimed[id] == "" {
			claimed[id] = ownList(c.Name)
		}
	}
	t.feeds, t.fedBy = make([][]string, len(state.Collaborations)), map[string][]int{}
	for i := range state.Collaborations {
		c := &state.Collaborations[i]
		t.feeds[i] = t.collabLists(c, claimed)
		for _, id := range t.feeds[i] {
			t.fedBy[id] = append(t.fedBy[id], i)
		}
	}
	for id := range t.fedBy {
		if wanted, addrs := t.collabList(state, id); wanted {
			members[id] = addrs
		}
	}
	if t.s.Contacts != "" {
		id := t.listID(t.s.Contacts)
		members[id] = t.contactsList(state, id)
	}
	if t.s.AllUsers != "" {
		id := t.listID(t.s.AllUsers)
		m := want(id)
		for i := range state.Users {
			if a := t.address(&state.Users[i], id); a != "" {
				m[a] = true
			}
		}
	}
	if t.s.Inactive == InactiveEmpty {
		for id := range t.lists {
			want(id) // a managed list no collaboration names any more: emptied, not removed
		}
	}
	t.keepForeign(state)
	if t.s.Foreign == ForeignKeep {
		for id, addrs := range t.foreign {
			if m, ok := members[id]; ok {
				for _, a := range addrs {
					m[a] = true
				}
			}
		}
	}
	t.assignedFor = state
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	recs := make([]engine.Record, 0, len(ids))
	for _, id := range ids {
		recs = append(recs, engine.Record{Kind: KindList, Key: id})
	}
	for _, id := range ids {
		for _, a := range sortedKeys(members[id]) {
			recs = append(recs, engine.Record{Kind: KindMember, Key: id + " " + a})
		}
	}
	return recs, nil
}

// address is the address a user is subscribed to a list with: empty
// unless the user is active, has a valid address and did not opt out.
func (t *Target) address(u *directory.UserState, id string) string {
	if u.Status != directory.StatusActive || !directory.ValidAddress(u.Mail) || optedOut(u.OptOuts, id, t.s.Domain) {
		return ""
	}
	return strings.ToLower(u.Mail)
}

// collabList is a collaboration's list in a state: whether it is desired
// (a collaboration feeding it is provisioned, or it exists and inactive
// lists are emptied), and its members then, foreign ones not included.
func (t *Target) collabList(state *directory.State, id string) (wanted bool, members map[string]bool) {
	members = map[string]bool{}
	for _, i := range t.fedBy[id] {
		c := &state.Collaborations[i]
		if !c.Provisioned {
			continue
		}
		wanted = true
		for _, uid := range c.ActiveMembers {
			if u, ok := state.User(uid); ok {
				if a := t.address(u, id); a != "" {
					members[a] = true
				}
			}
		}
	}
	return wanted || t.s.Inactive == InactiveEmpty && t.lists[id], members
}

// contactsList is the contacts' list's members in a state: the contacts
// of every provisioned collaboration, foreign ones not included.
func (t *Target) contactsList(state *directory.State, id string) map[string]bool {
	members := map[string]bool{}
	eachContact(state, func(uid string) bool {
		if u, ok := state.User(uid); ok {
			if a := t.address(u, id); a != "" {
				members[a] = true
			}
		}
		return true
	})
	return members
}

// eachContact calls fn with the uid of each contact of each provisioned
// collaboration of a state, until fn returns false.
func eachContact(state *directory.State, fn func(uid string) bool) {
	for i := range state.Collaborations {
		if c := &state.Collaborations[i]; c.Provisioned {
			for _, uids := range c.Contacts {
				for _, uid := range uids {
					if !fn(uid) {
						return
					}
				}
			}
		}
	}
}

// DesiredSince implements engine.Patcher: the lists the entries that
// changed between the two states (directory.State.ChangedSince) feed are
// found again whole for both; a member only from's is gone. A change of a
// collaboration's name or lists (which may give a list to another), of
// an active user's address or opt-outs (whose collaborations the state
// does not index), a read not yet taken in (foreign members), or states
// other than those the last desired state was found for, are not known.
func (t *Target) DesiredSince(from, to *directory.State) ([]engine.Desire, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if from == nil || from != t.assignedFor || t.rosters != nil || t.s.AllUsers != "" && t.s.AllUsers == t.s.Contacts {
		return nil, false, nil
	}
	ch, ok := to.ChangedSince(from)
	if !ok {
		return nil, false, nil
	}
	affected, contacts, moved, ok := t.touched(from, to, ch)
	if !ok {
		return nil, false, nil
	}
	var out []engine.Desire
	// emit desires a list as it is for to, and its members, which were
	// and are (foreign ones added) as given.
	emit := func(id string, wanted bool, was, is map[string]bool) {
		out = append(out, engine.Desire{Record: engine.Record{Kind: KindList, Key: id}, Gone: !wanted})
		if t.s.Foreign == ForeignKeep {
			for _, a := range t.foreign[id] {
				was[a], is[a] = true, wanted
			}
		}
		for a, in := range is {
			if in {
				out = append(out, engine.Desire{Record: engine.Record{Kind: KindMember, Key: id + " " + a}})
			}
		}
		for a := range was {
			if !is[a] {
				out = append(out, engine.Desire{Record: engine.Record{Kind: KindMember, Key: id + " " + a}, Gone: true})
			}
		}
	}
	for id := range affected {
		_, was := t.collabList(from, id)
		wanted, is := t.collabList(to, id)
		if !wanted {
			is = map[string]bool{}
		}
		emit(id, wanted, was, is)
	}
	if len(contacts) > 0 && t.s.Contacts != "" {
		id := t.listID(t.s.Contacts)
		was, is := map[string]bool{}, map[string]bool{}
		for _, a := range contacts {
			was[a], is[a] = t.contact(from, id, a), t.contact(to, id, a)
		}
		emit(id, true, was, is)
	}
	if len(moved) > 0 && t.s.AllUsers != "" {
		id := t.listID(t.s.AllUsers)
		was, is := map[string]bool{}, map[string]bool{}
		for _, a := range moved {
			was[a], is[a] = len(t.holders(from, id, a)) > 0, len(t.holders(to, id, a)) > 0
		}
		emit(id, true, was, is)
	}
	t.assignedFor = to
	return out, true, nil
}

// touched finds what the entries changed between two states may change:
// the lists of the changed collaborations, and the addresses whose
// contacts or all-users subscription may change (of contacts of
// collaborations provisioned or not, or whose contacts changed; moved:
// of users who became active or not). ok is false when the difference
// cannot tell (DesiredSince).
func (t *Target) touched(from, to *directory.State, ch directory.Changed) (affected map[string]bool, contacts, moved []string, ok bool) {
	affected = map[string]bool{}
	note := func(list *[]string, u *directory.UserState, ok bool) {
		if ok && directory.ValidAddress(u.Mail) {
			*list = append(*list, strings.ToLower(u.Mail))
		}
	}
	for _, i := range ch.Collaborations {
		a, b := &from.Collaborations[i], &to.Collaborations[i]
		if a.Name != b.Name || !slices.Equal(a.Lists, b.Lists) {
			return nil, nil, nil, false
		}
		for _, id := range t.feeds[i] {
			affected[id] = true
		}
		if a.Provisioned == b.Provisioned && (!a.Provisioned || maps.EqualFunc(a.Contacts, b.Contacts, slices.Equal)) {
			continue
		}
		for _, c := range []struct {
			st *directory.State
			cs *directory.CollaborationState
		}{{from, a}, {to, b}} {
			for _, uids := range c.cs.Contacts {
				for _, uid := range uids {
					u, ok := c.st.User(uid)
					note(&contacts, u, ok)
				}
			}
		}
	}
	for _, i := range ch.Users {
		a, b := &from.Users[i], &to.Users[i]
		switch active, wasActive := b.Status == directory.StatusActive, a.Status == directory.StatusActive; {
		case !active && !wasActive:
		case active && wasActive:
			if a.Mail != b.Mail || !slices.Equal(a.OptOuts, b.OptOuts) {
				return nil, nil, nil, false
			}
		default:
			// Active in one of the two: the active members of the
			// collaborations changed with it, so their lists are among
			// those affected.
			note(&moved, a, true)
			note(&moved, b, true)
		}
	}
	return affected, append(contacts, moved...), moved, true
}

// holders are the uids of a state's users subscribed to a list with an
// address (the users are read through: none is indexed by address).
func (t *Target) holders(state *directory.State, id, addr string) []string {
	var uids []string
	for i := range state.Users {
		u := &state.Users[i]
		if len(u.Mail) == len(addr) && t.address(u, id) == addr {
			uids = append(uids, u.UID)
		}
	}
	return uids
}

// contact reports whether the contacts' list of a state has an address:
// whether a user subscribed with it is a contact of a provisioned
// collaboration.
func (t *Target) contact(state *directory.State, id, addr string) bool {
	uids := t.holders(state, id, addr)
	found := false
	if len(uids) > 0 {
		eachContact(state, func(uid string) bool {
			found = slices.Contains(uids, uid)
			return !found
		})
	}
	return found
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Notes implements engine.Noter: the lists left out for a collaboration,
// and the members kept on managed lists that no directory user has as an
// address.
func (t *Target) Notes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	notes := slices.Clone(t.refused)
	if t.s.Foreign != ForeignKeep {
		return notes
	}
	for id, addrs := range t.foreign {
		shown := addrs
		if len(shown) > 5 {
			shown = shown[:5]
		}
		more := ""
		if len(addrs) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(addrs)-len(shown))
		}
		notes = append(notes, fmt.Sprintf("%s keeps %d member(s) no directory user has (foreign_members: keep): %s%s",
			id, len(addrs), strings.Join(shown, ", "), more))
	}
	slices.Sort(notes)
	return notes
}

// keepForeign takes, from rosters just read, the members no directory
// user has as an address (whatever their status): they came from
// elsewhere. Once: an address that leaves the directory later was the
// directory's, and goes.
func (t *Target) keepForeign(state *directory.State) {
	if t.rosters == nil {
		return
	}
	mails := make(map[string]bool, len(state.Users))
	for i := range state.Users {
		mails[strings.ToLower(state.Users[i].Mail)] = true
	}
	t.foreign = map[string][]string{}
	for id, addrs := range t.rosters {
		for _, a := range addrs {
			if !mails[a] {
				t.foreign[id] = append(t.foreign[id], a)
			}
		}
	}
	t.rosters = nil
}

// optedOut reports whether a user's opt-outs name a list: its name, its
// address or its id.
func optedOut(optOuts []string, id, domain string) bool {
	name := strings.TrimSuffix(id, "."+domain)
	for _, o := range optOuts {
		o = strings.ToLower(strings.TrimSpace(o))
		if o == name || o == id || o == name+"@"+domain {
			return true
		}
	}
	return false
}

// Current implements engine.Target: the managed lists of the domain and
// their members, page by page. A missing domain holds no lists.
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	c, err := newClient(&t.s, t.call)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = c.pages(ctx, "/domains/"+url.PathEscape(t.s.Domain)+"/lists", func(raw json.RawMessage) error {
		var l struct {
			ListID string `json:"list_id"`
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		if t.managed(l.ListID) {
			ids = append(ids, l.ListID)
		}
		return nil
	})
	if status(err) == http.StatusNotFound {
		ids, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	rosters := map[string][]string{}
	recs := make([]engine.Record, 0, len(ids))
	for _, id := range ids {
		recs = append(recs, engine.Record{Kind: KindList, Key: id})
	}
	for _, id := range ids {
		var addrs []string
		err := c.pages(ctx, "/lists/"+url.PathEscape(id)+"/roster/member", func(raw json.RawMessage) error {
			var m struct {
				Email string `json:"email"`
			}
			err := json.Unmarshal(raw, &m)
			addrs = append(addrs, strings.ToLower(m.Email))
			return err
		})
		if err != nil {
			return nil, err
		}
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		rosters[id] = addrs
		for _, a := range addrs {
			recs = append(recs, engine.Record{Kind: KindMember, Key: id + " " + a})
		}
	}
	t.mu.Lock()
	t.lists = map[string]bool{}
	for _, id := range ids {
		t.lists[id] = true
	}
	t.rosters = rosters
	t.mu.Unlock()
	return recs, nil
}

// Apply implements engine.Target: lists are created first, then
// addresses subscribed (without confirmation), unsubscribed (one request
// per list), and lists removed last. Each step is safe to repeat: an
// existing list or subscription, a missing member or list, is no error.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	c, err := newClient(&t.s, t.call)
	if err != nil {
		return err
	}
	var create, remove []string
	var subscribe [][2]string
	unsubscribe := map[string][]string{}
	for _, ch := range p.Changes {
		switch {
		case ch.Kind == KindList && ch.Op == engine.OpAdd:
			create = append(create, ch.Key)
		case ch.Kind == KindList && ch.Op == engine.OpDelete:
			remove = append(remove, ch.Key)
		case ch.Kind == KindMember:
			id, addr, _ := strings.Cut(ch.Key, " ")
			if ch.Op == engine.OpAdd {
				subscribe = append(subscribe, [2]string{id, addr})
			} else if ch.Op == engine.OpDelete {
				unsubscribe[id] = append(unsubscribe[id], addr)
			}
		}
	}
	if len(create) > 0 {
		if err := t.ensureDomain(ctx, c); err != nil {
			return err
		}
	}
	for _, id := range create {
		if err := t.createList(ctx, c, id); err != nil {
			return err
		}
	}
	for _, s := range subscribe {
		err := c.do(ctx, http.MethodPost, "/members", url.Values{"list_id": {s[0]}, "subscriber": {s[1]},
			"pre_verified": {"true"}, "pre_confirmed": {"true"}, "pre_approved": {"true"}}, nil)
		if err != nil && status(err) != http.StatusConflict { // 409: subscribed already
			return fmt.Errorf("subscribe %s to %s: %w", s[1], s[0], err)
		}
	}
	ids := make([]string, 0, len(unsubscribe))
	for id := range unsubscribe {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		addrs := unsubscribe[id]
		for len(addrs) > 0 {
			n := min(len(addrs), 200)
			// Mass unsubscription: one request, a result per address (false:
			// not a member, which is what we want).
			err := c.do(ctx, http.MethodDelete, "/lists/"+url.PathEscape(id)+"/roster/member", url.Values{"emails": addrs[:n]}, nil)
			if err != nil && status(err) != http.StatusNotFound {
				return fmt.Errorf("unsubscribe %d from %s: %w", n, id, err)
			}
			addrs = addrs[n:]
		}
	}
	for _, id := range remove {
		err := c.do(ctx, http.MethodDelete, "/lists/"+url.PathEscape(id), nil, nil)
		if err != nil && status(err) != http.StatusNotFound {
			return fmt.Errorf("remove list %s: %w", id, err)
		}
		t.mu.Lock()
		delete(t.lists, id)
		t.mu.Unlock()
	}
	return nil
}

// ensureDomain creates the managed domain when Mailman does not have it.
func (t *Target) ensureDomain(ctx context.Context, c *client) error {
	err := c.do(ctx, http.MethodGet, "/domains/"+url.PathEscape(t.s.Domain), nil, nil)
	if status(err) == http.StatusNotFound {
		err = c.do(ctx, http.MethodPost, "/domains", url.Values{"mail_host": {t.s.Domain}}, nil)
		if status(err) == http.StatusBadRequest { // created meanwhile
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("domain %s: %w", t.s.Domain, err)
	}
	return nil
}

// createList creates a list with the configured style and settings; a
// list that exists already (made meanwhile, in the managed domain) is
// taken as it is.
func (t *Target) createList(ctx context.Context, c *client, id string) error {
	name := strings.TrimSuffix(id, "."+t.s.Domain)
	err := c.do(ctx, http.MethodPost, "/lists", url.Values{"fqdn_listname": {name + "@" + t.s.Domain}, "style_name": {t.s.Style}}, nil)
	switch {
	case status(err) == http.StatusBadRequest && strings.Contains(err.Error(), "exists"):
	case err != nil:
		return fmt.Errorf("create list %s: %w", id, err)
	default:
		if len(t.s.ListSettings) > 0 {
			form := url.Values{}
			for k, v := range t.s.ListSettings {
				form.Set(k, v)
			}
			if err := c.do(ctx, http.MethodPatch, "/lists/"+url.PathEscape(id)+"/config", form, nil); err != nil {
				return fmt.Errorf("configure list %s: %w", id, err)
			}
		}
	}
	t.mu.Lock()
	t.lists[id] = true
	t.mu.Unlock()
	return nil
}
